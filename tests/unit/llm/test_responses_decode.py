"""The Responses dialect's request side: checks, estimates, and decoding into a GenerationRequest."""

from __future__ import annotations

from typing import Any

import pytest

from odock import estimate
from odock.errors import InvalidRequestBody, UnsupportedParameter
from odock.llm.types import (
    Image,
    Message,
    Reasoning,
    ReasoningConfig,
    ResponseFormat,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from odock.surfaces.openai_responses import (
    RESPONSES_CLIENT,
    asked_max_tokens,
    check_request,
    estimate_input_tokens,
    stream_requested,
)

PNG = "iVBORw0KGgo="


def _decode(**fields: Any) -> Any:
    return RESPONSES_CLIENT.decode_request({"model": "m", "input": "hi", **fields})


# --- check_request -------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["model", "input"])
def test_model_and_input_are_required(missing: str) -> None:
    """A request without model or input is a 400 naming the field."""
    data = {"model": "m", "input": "hi"}
    del data[missing]
    with pytest.raises(InvalidRequestBody) as caught:
        check_request(data)
    assert caught.value.param == missing


@pytest.mark.parametrize(
    ("field", "value"),
    [("stream", "yes"), ("max_output_tokens", 1.5), ("temperature", True), ("tools", {}), ("input", 3)],
)
def test_mistyped_field_is_named(field: str, value: Any) -> None:
    """A known field of the wrong type is a 400 naming it (booleans are never numbers)."""
    with pytest.raises(InvalidRequestBody) as caught:
        check_request({"model": "m", "input": "hi", field: value})
    assert caught.value.param == field


@pytest.mark.parametrize(
    ("field", "value"), [("max_output_tokens", 0), ("max_output_tokens", 2**31), ("top_logprobs", 21)]
)
def test_integers_out_of_range_are_refused(field: str, value: int) -> None:
    """max_output_tokens is 1..2^31-1 and top_logprobs 0..20."""
    with pytest.raises(InvalidRequestBody, match="between") as caught:
        check_request({"model": "m", "input": "hi", field: value})
    assert caught.value.param == field


def test_input_items_must_be_objects() -> None:
    """Each input item is an object; another value is named by its position."""
    with pytest.raises(InvalidRequestBody) as caught:
        check_request({"model": "m", "input": [{"role": "user", "content": "a"}, "b"]})
    assert caught.value.param == "input[1]"


def test_a_valid_request_passes_with_unknown_fields() -> None:
    """Unknown fields are not check_request's business (pass-through keeps them)."""
    check_request({"model": "m", "input": "hi", "max_output_tokens": 5, "future_field": {"x": 1}})


# --- estimates -----------------------------------------------------------------------------------


def test_estimate_counts_instructions_and_every_input_text() -> None:
    """Instructions, message texts, call arguments and tool outputs all count."""
    data = {
        "model": "m",
        "instructions": "x" * 40,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "y" * 80}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "z" * 8},
            {"type": "function_call_output", "call_id": "c", "output": "w" * 4},
        ],
    }
    expected = 10 + 3 * estimate.TOKENS_PER_MESSAGE + 20 + 2 + 1
    assert estimate_input_tokens(data) == expected


def test_estimate_of_a_string_input() -> None:
    """A string input is one user message."""
    assert estimate_input_tokens({"model": "m", "input": "abcdefgh"}) == estimate.TOKENS_PER_MESSAGE + 2


def test_asked_max_tokens_and_stream() -> None:
    """max_output_tokens is the asked limit; stream only when true."""
    assert asked_max_tokens({"max_output_tokens": 77}) == 77
    assert asked_max_tokens({}) is None
    assert stream_requested({"stream": True})
    assert not stream_requested({"stream": False})


# --- decoding: input items -----------------------------------------------------------------------


def test_string_input_is_one_user_message() -> None:
    """input "hi" is a user message with one text part."""
    assert _decode().messages == [Message("user", [Text("hi")])]


def test_instructions_and_system_messages_become_the_system_prompt() -> None:
    """instructions first, then system and developer messages, in order."""
    request = _decode(
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Use French."},
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "No emoji."}]},
            {"role": "user", "content": "hi"},
        ],
    )
    assert request.system == [Text("Be brief."), Text("Use French."), Text("No emoji.")]
    assert request.messages == [Message("user", [Text("hi")])]


def test_images_by_data_url_and_by_url() -> None:
    """A data URL becomes inline image data; an http URL stays a URL; detail is kept."""
    content = [
        {"type": "input_text", "text": "what?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "high"},
        {"type": "input_image", "image_url": "https://img.example/a.jpg", "detail": "auto"},
    ]
    request = _decode(input=[{"role": "user", "content": content}])
    assert request.messages[0].parts == [
        Text("what?"),
        Image(data=PNG, media_type="image/png", detail="high"),
        Image(url="https://img.example/a.jpg", detail="auto"),
    ]


def test_assistant_turn_items_merge_into_one_message() -> None:
    """One turn's reasoning, text and calls make one assistant message; its outputs one tool message."""
    request = _decode(
        input=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Two calls."}],
                "encrypted_content": "sig-1",
            },
            {
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "rain"}],
            },
        ]
    )
    assert request.messages[1:] == [
        Message(
            "assistant",
            [
                Reasoning("Two calls.", signature="sig-1"),
                Text("Checking."),
                ToolCall("c1", "weather", '{"city":"Paris"}'),
                ToolCall("c2", "weather", '{"city":"Rome"}'),
            ],
        ),
        Message(
            "tool",
            [
                ToolResult("c1", [Text("sunny")], name="weather"),
                ToolResult("c2", [Text("rain")], name="weather"),
            ],
        ),
    ]


def test_refusal_in_history_is_kept_as_text() -> None:
    """An assistant refusal part is the text of that turn."""
    content = [{"type": "refusal", "refusal": "I can't."}]
    request = _decode(input=[{"role": "assistant", "content": content}, {"role": "user", "content": "ok"}])
    assert request.messages[0] == Message("assistant", [Text("I can't.")])


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "item_reference", "id": "msg_1"}, "input[0]"),
        ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[0]"),
        ({"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}, "input[0].content[0]"),
        (
            {"role": "user", "content": [{"type": "input_image", "file_id": "f", "detail": "auto"}]},
            "input[0].content[0].file_id",
        ),
    ],
)
def test_untranslatable_items_are_refused_by_position(item: dict[str, Any], param: str) -> None:
    """Stored-item references, hosted-tool items, files and images by file id are unsupported_parameter."""
    with pytest.raises(UnsupportedParameter) as caught:
        _decode(input=[item])
    assert caught.value.param == param


def test_malformed_data_url_is_invalid() -> None:
    """A data URL that is not base64 is a 400 invalid_request_body naming it."""
    content = [{"type": "input_image", "image_url": "data:image/png,abc", "detail": "auto"}]
    with pytest.raises(InvalidRequestBody) as caught:
        _decode(input=[{"role": "user", "content": content}])
    assert caught.value.param == "input[0].content[0].image_url"


# --- decoding: settings --------------------------------------------------------------------------


def test_function_tools_and_named_tool_choice() -> None:
    """Function tools keep name, description, schema and strictness; a named choice is mode tool."""
    tool = {
        "type": "function",
        "name": "f",
        "description": "d",
        "parameters": {"type": "object"},
        "strict": True,
    }
    request = _decode(tools=[tool], tool_choice={"type": "function", "name": "f"}, parallel_tool_calls=False)
    assert request.tools == [Tool("f", "d", {"type": "object"}, True)]
    assert request.tool_choice == ToolChoice("tool", "f")
    assert request.parallel_tool_calls is False


@pytest.mark.parametrize("mode", ["auto", "none", "required"])
def test_tool_choice_modes(mode: str) -> None:
    """auto, none and required map one to one."""
    assert _decode(tool_choice=mode).tool_choice == ToolChoice(mode)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tools": [{"type": "mcp", "server_label": "x"}]}, "tools"),
        (
            {
                "tools": [
                    {"type": "function", "name": "f", "parameters": {}, "strict": None, "defer_loading": True}
                ]
            },
            "tools[0].defer_loading",
        ),
        ({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}, "tool_choice"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"truncation": "auto"}, "truncation"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"metadata": {"a": "b"}}, "metadata"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"reasoning": {"effort": "low", "mode": "pro"}}, "reasoning.mode"),
        ({"some_future_field": 1}, "some_future_field"),
    ],
)
def test_fields_a_translation_cannot_carry_are_refused(fields: dict[str, Any], param: str) -> None:
    """Each field the gateway's representation cannot carry is unsupported_parameter naming it."""
    with pytest.raises(UnsupportedParameter) as caught:
        _decode(**fields)
    assert caught.value.param == param
    assert caught.value.status == 400


def test_store_stream_options_and_off_values_are_accepted() -> None:
    """store is ignored (nothing is stored); disabled truncation, no background, include [] ask nothing."""
    request = _decode(
        store=True,
        stream_options={"include_obfuscation": False},
        truncation="disabled",
        background=False,
        include=[],
    )
    assert request.messages == [Message("user", [Text("hi")])]


def test_sampling_limits_user_and_stream() -> None:
    """Sampling settings, the output limit, the end-user id and stream are carried."""
    request = _decode(max_output_tokens=64, temperature=0.2, top_p=0.9, safety_identifier="u-1", stream=True)
    assert (request.max_tokens, request.temperature, request.top_p) == (64, 0.2, 0.9)
    assert request.user == "u-1"
    assert request.stream is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "text"}}, ResponseFormat("text")),
        ({"format": {"type": "json_object"}}, ResponseFormat("json_object")),
        (
            {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
            ResponseFormat("json_schema", {"type": "object"}, "w", True),
        ),
    ],
)
def test_text_format(text: dict[str, Any], expected: ResponseFormat) -> None:
    """text.format maps to the response format, schema and strictness included."""
    assert _decode(text=text).response_format == expected


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        ({"effort": "high", "summary": "auto"}, ReasoningConfig(effort="high")),
        ({"effort": "none"}, ReasoningConfig(enabled=False)),
        ({"summary": "auto"}, None),
    ],
)
def test_reasoning_effort(reasoning: dict[str, Any], expected: ReasoningConfig | None) -> None:
    """reasoning.effort is the effort ("none" turns reasoning off); a summary request alone asks nothing."""
    assert _decode(reasoning=reasoning).reasoning == expected
