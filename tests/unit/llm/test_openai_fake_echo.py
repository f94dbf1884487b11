"""The fake OpenAI server's ``fake-echo`` model, and the chat codecs against it, through the OpenAI SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall

from odock.llm.types import (
    GenerationRequest,
    Image,
    Message,
    ReasoningConfig,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)
from odock.providers.adapters.openai_codec import OPENAI_CHAT_UPSTREAM
from odock.surfaces.openai_chat_codec import OPENAI_CHAT_CLIENT
from tests.fakes import script
from tests.fakes.openai_server import FakeOpenAI, running_fake_openai

KEY = "sk-fake-upstream"
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """One fake OpenAI server for the module."""
    with running_fake_openai(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the fake."""
    with openai.OpenAI(api_key=KEY, base_url=fake.base_url + "/v1", max_retries=0) as sdk:
        yield sdk


def _raw_stream(fake: FakeOpenAI, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``data:`` payloads of a streamed answer, read off the wire."""
    headers = {"authorization": f"Bearer {KEY}"}
    response = httpx.post(fake.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
    frames = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    return [json.loads(frame) for frame in frames[:-1]]


def test_echo_answers_the_last_user_text_with_script_usage(client: openai.OpenAI) -> None:
    """Plain text is echoed; usage is the script's, with cached tokens in their details."""
    reply = client.chat.completions.create(
        model=script.ECHO_MODEL, messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == "Echo: hello"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (script.PROMPT_TOKENS, 2)
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == script.CACHED_TOKENS


def test_echo_counts_images_and_reads_tool_results(client: openai.OpenAI) -> None:
    """Images of the last user turn are counted; a tool message's text is quoted back."""
    content: Any = [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": PNG}}]
    seen = client.chat.completions.create(
        model=script.ECHO_MODEL, messages=[{"role": "user", "content": content}]
    )
    assert seen.choices[0].message.content == "Echo: see [1 image(s)]"
    history: Any = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
    ]
    answered = client.chat.completions.create(model=script.ECHO_MODEL, messages=history, tools=TOOLS)
    assert answered.choices[0].message.content == "Tool said: 18C"


def test_echo_calls_the_first_tool_with_reasoning(client: openai.OpenAI) -> None:
    """Tools declared: one call with the script's arguments; reasoning_effort adds reasoning and tokens."""
    messages: Any = [{"role": "user", "content": "weather?"}]
    reply = client.chat.completions.create(
        model=script.ECHO_MODEL, messages=messages, tools=TOOLS, reasoning_effort="low"
    )
    raw = reply.model_dump()
    ChatCompletion.model_validate(raw)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id == script.TOOL_CALL_ID
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == script.TOOL_ARGUMENTS
    assert raw["choices"][0]["message"]["reasoning_content"] == script.REASONING_TEXT
    assert reply.usage is not None
    assert reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens == script.REASONING_TOKENS
    assert reply.usage.completion_tokens == script.TOOL_CALL_TOKENS + script.REASONING_TOKENS


def test_echo_stream_sends_valid_chunks_and_arguments_in_pieces(fake: FakeOpenAI) -> None:
    """A streamed tool call comes in two or more argument pieces, finish tool_calls, then usage."""
    body = {
        "model": script.ECHO_MODEL,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": TOOLS,
        "reasoning_effort": "high",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = _raw_stream(fake, body)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    pieces = [call["function"]["arguments"] for d in deltas for call in d.get("tool_calls") or []]
    assert len([piece for piece in pieces if piece]) >= 2
    assert json.loads("".join(pieces)) == script.TOOL_ARGUMENTS
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == script.REASONING_TEXT
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == script.CACHED_TOKENS


def _conversation() -> GenerationRequest:
    """A conversation in the gateway's form, as another dialect's client would have sent it."""
    return GenerationRequest(
        model="odock-model",
        system=[Text("Be brief.")],
        messages=[
            Message("user", [Text("Weather in Paris?"), Image(data="iVBORw0KGgo=", media_type="image/png")]),
            Message("assistant", [ToolCall("c1", "get_weather", '{"city":"Paris"}')]),
            Message("user", [ToolResult("c1", [Text("18C and sunny")])]),
        ],
        tools=[Tool("get_weather", parameters={"type": "object"})],
        max_tokens=100,
        reasoning=ReasoningConfig(budget_tokens=2048),
    )


def test_translated_request_round_trips_through_the_fake(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    """Gateway request → chat payload → fake → decoded answer → chat.completion for the client."""
    payload = OPENAI_CHAT_UPSTREAM.encode_request(_conversation(), script.ECHO_MODEL, stream=False)
    reply = client.chat.completions.create(**payload)
    response = OPENAI_CHAT_UPSTREAM.decode_response(reply.model_dump())
    assert fake.last_request().body["reasoning_effort"] == "medium"
    assert [part for part in response.parts if isinstance(part, Text)] == [Text("Tool said: 18C and sunny")]
    assert response.usage.reasoning_tokens == script.REASONING_TOKENS
    encoded = OPENAI_CHAT_CLIENT.encode_response(response)
    completion = ChatCompletion.model_validate(encoded)
    assert completion.choices[0].message.content == "Tool said: 18C and sunny"
    assert encoded["choices"][0]["message"]["reasoning_content"] == script.REASONING_TEXT


def test_translated_stream_round_trips_through_the_fake(fake: FakeOpenAI) -> None:
    """The fake's chunks → gateway events → client chunks keep the tool call and the usage."""
    request = _conversation()
    request.messages = request.messages[:1]  # no result yet: the fake calls the tool
    payload = OPENAI_CHAT_UPSTREAM.encode_request(request, script.ECHO_MODEL, stream=True)
    decoder = OPENAI_CHAT_UPSTREAM.stream_decoder()
    encoder = OPENAI_CHAT_CLIENT.stream_encoder(request)
    events = [
        event for chunk in _raw_stream(fake, payload) for event in decoder.decode(chunk)
    ] + decoder.finish()
    chunks = [chunk for event in events for chunk in encoder.encode(event)] + encoder.finish()
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    calls = [
        call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert calls[0]["id"] == script.TOOL_CALL_ID
    assert json.loads("".join(call["function"]["arguments"] for call in calls)) == script.TOOL_ARGUMENTS
    assert chunks[-1]["usage"]["prompt_tokens"] == script.PROMPT_TOKENS
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == script.REASONING_TOKENS
