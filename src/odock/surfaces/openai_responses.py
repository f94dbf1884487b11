"""The OpenAI Responses dialect, client side: ``POST /v1/responses`` checked, decoded and answered.

Flow of a request::

    check_request(data)            400 invalid_request_body naming a missing or mistyped field
    estimate_input_tokens(data)    instructions + input texts, for limits and reservations
    asked_max_tokens(data)         max_output_tokens
    stream_requested(data)         stream
    an OpenAI upstream with the Responses API: the body passes through unchanged (every field,
        previous_response_id and conversation included)
    any other upstream: translated —
        RESPONSES_CLIENT.decode_request(data)       → GenerationRequest
        RESPONSES_CLIENT.encode_answer(req, resp)   → a Response object (encode_response without
                                                      the request echoes defaults)
        RESPONSES_CLIENT.stream_encoder(req)        → the typed ``response.*`` events
    (the answers are written by odock.surfaces.openai_responses_answer)

Decisions for translated upstreams: the gateway stores no conversation, so
``previous_response_id`` and ``conversation`` are refused (400 unsupported_parameter);
``store`` is accepted and ignored (nothing is stored, and the answer says ``store: false``);
``stream_options`` (obfuscation padding) is accepted and ignored; every other field the
gateway's representation cannot carry is refused, naming it. A reasoning item's
``encrypted_content`` carries the upstream's reasoning signature (Anthropic's) both ways, so a
client that sends the output back as input keeps the reasoning valid.

Errors: an HTTP error has the OpenAI shape (``OdockError.payload()``) on this route too; an error
after a stream started is the Responses ``error`` event (:meth:`ResponsesStreamEncoder.fail`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from odock import estimate
from odock.errors import InvalidRequestBody, OdockError, UnsupportedParameter
from odock.llm.codec import Payload
from odock.llm.types import (
    GenerationRequest,
    GenerationResponse,
    Image,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    ResponseFormat,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolResult,
)
from odock.surfaces.openai_chat import MAX_TOKEN_COUNT, check_fields
from odock.surfaces.openai_responses_answer import ResponsesStreamEncoder, response_object

_NUMBER = (int, float)
# field → accepted Python types, after the OpenAI API reference (None is accepted for each).
RESPONSES_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "input": (str, list),
    "instructions": (str,),
    "max_output_tokens": (int,),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "tools": (list,),
    "tool_choice": (str, dict),
    "parallel_tool_calls": (bool,),
    "text": (dict,),
    "reasoning": (dict,),
    "user": (str,),
    "safety_identifier": (str,),
    "stream": (bool,),
    "stream_options": (dict,),
    "store": (bool,),
    "previous_response_id": (str,),
    "conversation": (str, dict),
    "background": (bool,),
    "include": (list,),
    "prompt": (dict,),
    "truncation": (str,),
    "metadata": (dict,),
    "top_logprobs": (int,),
    "max_tool_calls": (int,),
    "service_tier": (str,),
    "prompt_cache_key": (str,),
    "prompt_cache_retention": (str,),
}
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "max_output_tokens": (1, MAX_TOKEN_COUNT),
    "top_logprobs": (0, 20),
    "max_tool_calls": (1, MAX_TOKEN_COUNT),
}
# Fields decode_request maps (or, for store and stream_options, knowingly ignores).
_TRANSLATED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "user",
        "safety_identifier",
        "stream",
        "stream_options",
        "store",
    }
)
# Fields whose "off" value asks for nothing and so translates (any other value is refused).
_HARMLESS = {"truncation": "disabled", "background": False, "include": []}
_CHOICE_MODES: dict[str, ToolChoiceMode] = {"auto": "auto", "none": "none", "required": "required"}
_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
_FORMAT_KEYS = frozenset({"type", "name", "schema", "strict"})


# --- the checks of every request -----------------------------------------------------------------


def check_request(data: Mapping[str, Any]) -> None:
    """Refuse a missing, mistyped or out-of-range field with 400 invalid_request_body naming it."""
    for name in ("model", "input"):
        if data.get(name) is None:
            raise InvalidRequestBody(f"missing required field '{name}'", param=name)
    check_fields(data, RESPONSES_FIELDS)
    for name, (low, high) in INTEGER_RANGES.items():
        value = data.get(name)
        if value is not None and not low <= value <= high:
            raise InvalidRequestBody(f"field '{name}' must be between {low} and {high}", param=name)
    if not data["model"].strip():
        raise InvalidRequestBody("field 'model' must not be empty", param="model")
    items = data["input"]
    if isinstance(items, list):
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidRequestBody(f"input[{index}] must be an object", param=f"input[{index}]")


def estimate_input_tokens(data: Mapping[str, Any]) -> int:
    """Estimated input tokens: the instructions and every text of the input."""
    instructions = data.get("instructions")
    total = estimate.tokens_for_text(len(instructions)) if isinstance(instructions, str) else 0
    items = data.get("input")
    if isinstance(items, str):
        return total + estimate.TOKENS_PER_MESSAGE + estimate.tokens_for_text(len(items))
    for item in items if isinstance(items, list) else []:
        total += estimate.TOKENS_PER_MESSAGE + estimate.tokens_for_text(_item_chars(item))
    return total


def _item_chars(item: Any) -> int:
    if not isinstance(item, dict):
        return 0
    chars = 0
    for key in ("content", "output", "arguments"):
        value = item.get(key)
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, list):
            chars += sum(
                len(p["text"]) for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    for summary in item.get("summary") or []:
        if isinstance(summary, dict) and isinstance(summary.get("text"), str):
            chars += len(summary["text"])
    return chars


def asked_max_tokens(data: Mapping[str, Any]) -> int | None:
    """The output limit the client asked for (``max_output_tokens``), if any."""
    value = data.get("max_output_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stream_requested(data: Mapping[str, Any]) -> bool:
    """Whether the client asked for a stream."""
    return data.get("stream") is True


# --- decoding: a Responses request → GenerationRequest --------------------------------------------


def _refuse_untranslatable(data: Mapping[str, Any]) -> None:
    for name, value in data.items():
        if name in _TRANSLATED or value is None:
            continue
        if name in _HARMLESS and value == _HARMLESS[name]:
            continue
        raise UnsupportedParameter(f"field '{name}' cannot be sent to this model's provider", param=name)


@dataclass
class _Conversation:
    """The messages being built from the input items, merging an assistant turn's items."""

    system: list[Text] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    tool_names: dict[str, str] = field(default_factory=dict)  # call_id → the called tool's name

    def add(self, role: Any, parts: list[Part]) -> None:
        """Append to the last message when it has the same assistant or tool role, else start one."""
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == role and role in ("assistant", "tool"):
            last.parts.extend(parts)
        else:
            self.messages.append(Message(role=role, parts=parts))


def _decode_input(items: str | list[Any], conversation: _Conversation) -> None:
    if isinstance(items, str):
        conversation.add("user", [Text(items)])
        return
    for index, item in enumerate(items):
        _decode_item(item, f"input[{index}]", conversation)


def _decode_item(item: dict[str, Any], where: str, conversation: _Conversation) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        _decode_message(item, where, conversation)
    elif kind == "function_call":
        call = ToolCall(
            id=_text_field(item, "call_id", where),
            name=_text_field(item, "name", where),
            arguments=_text_field(item, "arguments", where),
        )
        conversation.tool_names[call.id] = call.name
        conversation.add("assistant", [call])
    elif kind == "function_call_output":
        call_id = _text_field(item, "call_id", where)
        content = _tool_output(item.get("output"), f"{where}.output")
        result = ToolResult(call_id, content, name=conversation.tool_names.get(call_id))
        conversation.add("tool", [result])
    elif kind == "reasoning":
        conversation.add("assistant", [_decode_reasoning(item)])
    else:
        raise UnsupportedParameter(f"{where}: items of type '{kind}' cannot be translated", param=where)


def _decode_message(item: dict[str, Any], where: str, conversation: _Conversation) -> None:
    role = item.get("role")
    content = item.get("content")
    parts = [Text(content)] if isinstance(content, str) else _content_parts(content, f"{where}.content")
    if role in ("system", "developer"):
        conversation.system.extend(p for p in parts if isinstance(p, Text))
        if any(not isinstance(p, Text) for p in parts):
            raise UnsupportedParameter(f"{where}: a {role} message holds only text", param=f"{where}.content")
    elif role in ("user", "assistant"):
        conversation.add(role, list(parts))
    else:
        raise InvalidRequestBody(
            f"{where}.role must be user, assistant, system or developer", param=f"{where}.role"
        )


def _content_parts(content: Any, where: str) -> list[Text | Image]:
    if not isinstance(content, list):
        raise InvalidRequestBody(f"{where} must be a string or an array", param=where)
    parts: list[Text | Image] = []
    for index, part in enumerate(content):
        parts.append(_content_part(part, f"{where}[{index}]"))
    return parts


def _content_part(part: Any, where: str) -> Text | Image:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        return Text(_text_field(part, "text", where))
    if kind == "refusal":
        return Text(_text_field(part, "refusal", where))
    if kind == "input_image":
        return _decode_image(part, where)
    raise UnsupportedParameter(f"{where}: content of type '{kind}' cannot be translated", param=where)


def _decode_image(part: dict[str, Any], where: str) -> Image:
    if part.get("file_id") is not None:
        raise UnsupportedParameter(
            f"{where}.file_id: images by file id cannot be translated", param=f"{where}.file_id"
        )
    url = _text_field(part, "image_url", where)
    detail = part.get("detail") if isinstance(part.get("detail"), str) else None
    if not url.startswith("data:"):
        return Image(url=url, detail=detail)
    header, _, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if encoding != "base64" or not media_type:
        raise InvalidRequestBody(f"{where}.image_url must be a base64 data URL", param=f"{where}.image_url")
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise InvalidRequestBody(
            f"{where}.image_url is not valid base64", param=f"{where}.image_url"
        ) from exc
    return Image(data=data, media_type=media_type, detail=detail)


def _tool_output(output: Any, where: str) -> list[Text | Image]:
    if isinstance(output, str):
        return [Text(output)]
    return _content_parts(output, where)


def _decode_reasoning(item: dict[str, Any]) -> Reasoning:
    summary = item.get("summary") or []
    texts = [s["text"] for s in summary if isinstance(s, dict) and isinstance(s.get("text"), str)]
    signature = item.get("encrypted_content")
    return Reasoning(text="\n\n".join(texts), signature=signature if isinstance(signature, str) else None)


def _text_field(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise InvalidRequestBody(f"{where}.{name} must be a string", param=f"{where}.{name}")
    return value


def _decode_tools(tools: list[Any]) -> list[Tool]:
    decoded = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise UnsupportedParameter(f"{where}: tools of type '{kind}' cannot be translated", param="tools")
        extra = sorted(k for k, v in tool.items() if k not in _TOOL_KEYS and v is not None)
        if extra:
            raise UnsupportedParameter(
                f"{where}.{extra[0]} cannot be translated", param=f"{where}.{extra[0]}"
            )
        parameters = tool.get("parameters")
        strict = tool.get("strict")
        decoded.append(
            Tool(
                name=_text_field(tool, "name", where),
                description=tool.get("description") if isinstance(tool.get("description"), str) else None,
                parameters=parameters if isinstance(parameters, dict) else None,
                strict=strict if isinstance(strict, bool) else None,
            )
        )
    return decoded


def _decode_tool_choice(choice: str | dict[str, Any] | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _CHOICE_MODES:
        return ToolChoice(mode=_CHOICE_MODES[choice])
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return ToolChoice(mode="tool", name=choice["name"])
    raise UnsupportedParameter("this tool_choice cannot be translated", param="tool_choice")


def _decode_text(text: Mapping[str, Any] | None) -> ResponseFormat | None:
    if not text:
        return None
    extra = sorted(k for k, v in text.items() if k != "format" and v is not None)
    if extra:
        raise UnsupportedParameter(f"text.{extra[0]} cannot be translated", param=f"text.{extra[0]}")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise InvalidRequestBody(
            "text.format.type must be text, json_object or json_schema", param="text.format.type"
        )
    assert isinstance(fmt, dict)
    extra = sorted(k for k, v in fmt.items() if k not in _FORMAT_KEYS and v is not None)
    if extra:
        raise UnsupportedParameter(
            f"text.format.{extra[0]} cannot be translated", param=f"text.format.{extra[0]}"
        )
    if kind != "json_schema":
        return ResponseFormat(type=kind)
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequestBody("text.format.schema must be an object", param="text.format.schema")
    strict = fmt.get("strict")
    return ResponseFormat(
        type="json_schema",
        schema=schema,
        name=_text_field(fmt, "name", "text.format"),
        strict=strict if isinstance(strict, bool) else None,
    )


def _decode_reasoning_config(reasoning: Mapping[str, Any] | None) -> ReasoningConfig | None:
    if not reasoning:
        return None
    # summary asks to see the reasoning's summary: the translated answer shows what the upstream gives.
    extra = sorted(
        k
        for k, v in reasoning.items()
        if k not in ("effort", "summary", "generate_summary") and v is not None
    )
    if extra:
        raise UnsupportedParameter(
            f"reasoning.{extra[0]} cannot be translated", param=f"reasoning.{extra[0]}"
        )
    effort = reasoning.get("effort")
    if effort is None:
        return None
    if not isinstance(effort, str):
        raise InvalidRequestBody("reasoning.effort must be a string", param="reasoning.effort")
    if effort == "none":
        return ReasoningConfig(enabled=False)
    return ReasoningConfig(effort=effort)


class ResponsesClientCodec:
    """The client side of the Responses dialect (see the module docstring)."""

    def decode_request(self, payload: Payload) -> GenerationRequest:
        """The request in the gateway's form (of a body check_request accepted); refuse the rest."""
        _refuse_untranslatable(payload)
        conversation = _Conversation()
        instructions = payload.get("instructions")
        if instructions:
            conversation.system.append(Text(instructions))
        _decode_input(payload["input"], conversation)
        user = payload.get("safety_identifier") or payload.get("user")
        return GenerationRequest(
            model=payload["model"],
            messages=conversation.messages,
            system=conversation.system,
            tools=_decode_tools(payload.get("tools") or []),
            tool_choice=_decode_tool_choice(payload.get("tool_choice")),
            parallel_tool_calls=payload.get("parallel_tool_calls"),
            max_tokens=payload.get("max_output_tokens"),
            temperature=payload.get("temperature"),
            top_p=payload.get("top_p"),
            response_format=_decode_text(payload.get("text")),
            reasoning=_decode_reasoning_config(payload.get("reasoning")),
            stream=payload.get("stream") is True,
            user=user,
        )

    def encode_response(self, response: GenerationResponse) -> Payload:
        """The answer as a Response object, echoing default settings (no request at hand)."""
        return self.encode_answer(None, response)

    def encode_answer(self, request: GenerationRequest | None, response: GenerationResponse) -> Payload:
        """The answer as a Response object echoing ``request``'s settings, as OpenAI does."""
        return response_object(request, response)

    def stream_encoder(self, request: GenerationRequest) -> ResponsesStreamEncoder:
        """A fresh encoder for one stream answering ``request``."""
        return ResponsesStreamEncoder(request)


RESPONSES_CLIENT = ResponsesClientCodec()


def error_payload(error: OdockError) -> dict[str, object]:
    """The body of an HTTP error on this route: the OpenAI shape, as the Responses API uses it too."""
    return error.payload()
