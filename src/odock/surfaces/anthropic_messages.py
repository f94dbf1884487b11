"""The Anthropic Messages surface: what an ``anthropic`` SDK caller sends the gateway, and its answers.

Flow for ``POST /v1/messages``::

    check_request(body)                400 invalid_request_body naming the field: required model,
                                       messages, max_tokens; known fields' types; integer ranges;
                                       messages are objects with role user | assistant
    estimate_input_tokens(body)        system + message texts + tool definitions, before the call
    same dialect upstream              the body passes through untouched
    translated upstream                ANTHROPIC_CLIENT.decode_request → GenerationRequest …
                                       encode_response / stream_encoder → Anthropic's shapes
    errors                             error_payload(error): Anthropic's error shape

Translation keeps every field it can express and refuses the rest with 400
``unsupported_parameter`` naming it (document and search_result blocks, citations, server tools,
container, mcp_servers, service_tier, …). One deliberate drop: ``cache_control`` markers are
prompt-caching hints for Anthropic's own cache; no other vendor takes them, and leaving them out
changes cost, never content.

Streams are encoded as Anthropic's exact event sequence: message_start (with the usage known so
far) and ping, then content_block_start / content_block_delta / content_block_stop per block, and
from ``finish()`` — because an upstream's final usage may arrive after its finish event — any
block left open is stopped, then message_delta (stop reason, final usage) and message_stop.
Each payload's ``type`` is its SSE event name (:func:`sse_event`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from odock import estimate
from odock.errors import InvalidRequestBody, OdockError, UnsupportedParameter, UpstreamError
from odock.llm.codec import Payload
from odock.llm.types import (
    BlockStop,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
    Image,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningStart,
    ResponseFormat,
    Role,
    StreamEvent,
    StreamFinish,
    StreamStart,
    Text,
    TextDelta,
    TextStart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolChoiceMode,
    ToolResult,
    UsageUpdate,
)
from odock.llm.upstream import Usage
from odock.providers.adapters.anthropic_codec import tool_input
from odock.surfaces.openai_chat import MAX_TOKEN_COUNT, check_fields

_NUMBER = (int, float)
# field → accepted Python types (None is accepted for optional fields)
MESSAGES_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "messages": (list,),
    "max_tokens": (int,),
    "system": (str, list),
    "stop_sequences": (list,),
    "stream": (bool,),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "top_k": (int,),
    "tools": (list,),
    "tool_choice": (dict,),
    "thinking": (dict,),
    "metadata": (dict,),
    "cache_control": (dict,),
    "output_config": (dict,),
    "container": (str, dict),
    "mcp_servers": (list,),
    "service_tier": (str,),
    "context_management": (dict,),
    "inference_geo": (str,),
    "speed": (str,),
}
COUNT_TOKENS_FIELDS = {
    name: types
    for name, types in MESSAGES_FIELDS.items()
    if name not in ("max_tokens", "stop_sequences", "stream", "temperature", "top_p", "top_k", "metadata")
}
# field → inclusive bounds (thinking's budget is Anthropic's documented minimum upwards)
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "max_tokens": (1, MAX_TOKEN_COUNT),
    "top_k": (0, MAX_TOKEN_COUNT),
    "thinking.budget_tokens": (1024, MAX_TOKEN_COUNT),
}
# Odock's status → Anthropic's error type (other 4xx: invalid_request_error, other 5xx: api_error)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
STOP_REASONS = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.CONTENT_FILTER: "refusal",
}
_ANTHROPIC_STOP_REASONS = frozenset({*STOP_REASONS.values(), "pause_turn", "model_context_window_exceeded"})
_TRANSLATED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "cache_control",
        "output_config",
    }
)
_CHOICE_MODES: dict[str, ToolChoiceMode] = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
_TOOL_FIELDS = frozenset({"name", "description", "input_schema", "type", "strict", "cache_control"})


# --- validation and estimates ------------------------------------------------------------------


def check_request(data: Mapping[str, Any]) -> None:
    """Refuse a ``/v1/messages`` body Anthropic would refuse as malformed (400 naming the field)."""
    _check(data, MESSAGES_FIELDS, ("model", "messages", "max_tokens"))


def check_count_tokens_request(data: Mapping[str, Any]) -> None:
    """Refuse a malformed ``/v1/messages/count_tokens`` body (no max_tokens needed)."""
    _check(data, COUNT_TOKENS_FIELDS, ("model", "messages"))


def estimate_input_tokens(data: Mapping[str, Any]) -> int:
    """Estimated input tokens: system, message texts, tool definitions (as JSON text)."""
    chars = _chars(data.get("system"))
    tools = data.get("tools")
    if tools:
        chars += len(orjson.dumps(tools))
    messages = data.get("messages") or []
    chars += sum(_chars(m.get("content")) for m in messages if isinstance(m, dict))
    return estimate.tokens_for_text(chars) + estimate.TOKENS_PER_MESSAGE * len(messages)


def asked_max_tokens(data: Mapping[str, Any]) -> int | None:
    """The output tokens the request asks for, when it says."""
    value = data.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check(
    data: Mapping[str, Any], fields: Mapping[str, tuple[type, ...]], required: tuple[str, ...]
) -> None:
    for name in required:
        if data.get(name) is None:
            raise InvalidRequestBody(f"missing required field '{name}'", param=name)
    check_fields(data, fields)
    if not data["model"].strip():
        raise InvalidRequestBody("field 'model' must not be empty", param="model")
    thinking = data.get("thinking")
    if thinking is not None:
        check_fields(
            thinking, {"type": (str,), "budget_tokens": (int,), "display": (str,)}, prefix="thinking."
        )
    for name, (low, high) in INTEGER_RANGES.items():
        value = _dotted(data, name)
        if isinstance(value, int) and not low <= value <= high:
            raise InvalidRequestBody(f"field '{name}' must be between {low} and {high}", param=name)
    stops = data.get("stop_sequences") or []
    if not all(isinstance(stop, str) for stop in stops):
        raise InvalidRequestBody("field 'stop_sequences' must be an array of strings", param="stop_sequences")
    _check_messages(data["messages"])


def _check_messages(messages: list[Any]) -> None:
    if not messages:
        raise InvalidRequestBody("field 'messages' must not be empty", param="messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequestBody(
                f"{param} must be an object with role 'user' or 'assistant'", param=param
            )
        if not isinstance(message.get("content"), str | list):
            raise InvalidRequestBody(
                f"{param}.content must be a string or an array", param=param + ".content"
            )


def _dotted(data: Mapping[str, Any], name: str) -> Any:
    head, _, tail = name.partition(".")
    value = data.get(head)
    if tail:
        return value.get(tail) if isinstance(value, dict) else None
    return value


def _chars(content: Any) -> int:
    """Characters of text in a string, a block, or a list of blocks (tool inputs as JSON)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(_chars(block) for block in content)
    if not isinstance(content, dict):
        return 0
    if "input" in content:
        return len(orjson.dumps(content["input"]))
    return sum(_chars(content.get(key)) for key in ("text", "thinking", "content"))


# --- decode: Anthropic request → GenerationRequest ---------------------------------------------


class AnthropicClientCodec:
    """The client side of the Anthropic Messages dialect (a ClientCodec)."""

    def decode_request(self, payload: Payload) -> GenerationRequest:
        """The request in the gateway's form; a field it cannot carry is refused (unsupported_parameter)."""
        for name in payload:
            if name not in _TRANSLATED_FIELDS:
                raise _unsupported(name)
        tools = [_tool(index, tool) for index, tool in enumerate(payload.get("tools") or [])]
        choice, parallel = _tool_choice(payload.get("tool_choice"))
        return GenerationRequest(
            model=payload["model"],
            messages=[m for i, raw in enumerate(payload["messages"]) for m in _messages(i, raw)],
            system=_system(payload.get("system")),
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            max_tokens=payload.get("max_tokens"),
            temperature=payload.get("temperature"),
            top_p=payload.get("top_p"),
            top_k=payload.get("top_k"),
            stop=list(payload.get("stop_sequences") or []),
            response_format=_response_format(payload.get("output_config")),
            reasoning=_reasoning(payload.get("thinking")),
            stream=payload.get("stream") is True,
            user=_user(payload.get("metadata")),
        )

    def encode_response(self, response: GenerationResponse) -> Payload:
        """An Anthropic ``Message``."""
        return {
            "id": message_id(response.id),
            "type": "message",
            "role": "assistant",
            "model": response.model,
            "content": [_content_block(part) for part in response.parts],
            "stop_reason": stop_reason(response.finish_reason, response.raw_finish_reason),
            "stop_sequence": response.stop_sequence,
            "usage": anthropic_usage(response.usage),
        }

    def stream_encoder(self, request: GenerationRequest) -> AnthropicStreamEncoder:
        """A fresh encoder for one stream answering ``request``."""
        return AnthropicStreamEncoder(request.model)


def _unsupported(param: str, what: str | None = None) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"{what or f'field {param!r}'} cannot be sent to this model's provider", param=param
    )


def _system(system: Any) -> list[Text]:
    if system is None:
        return []
    if isinstance(system, str):
        return [Text(system)]
    return [Text(_text_of(block, f"system[{i}]")) for i, block in enumerate(system)]


def _text_of(block: Any, param: str) -> str:
    """The text of a text block (cache_control dropped; citations refused)."""
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise InvalidRequestBody(f"{param} must be a text block", param=param)
    if block.get("citations"):
        raise _unsupported(f"{param}.citations", "citations")
    return str(block["text"])


def _messages(index: int, message: Mapping[str, Any]) -> list[Message]:
    """One Anthropic turn as gateway messages: a user turn's tool_result runs become tool messages."""
    role: Role = "assistant" if message["role"] == "assistant" else "user"
    content = message["content"]
    if isinstance(content, str):
        return [Message(role, [Text(content)])]
    out: list[Message] = []
    for j, block in enumerate(content):
        part = _part(role, block, f"messages[{index}].content[{j}]")
        kind: Role = "tool" if isinstance(part, ToolResult) else role
        if out and out[-1].role == kind:
            out[-1].parts.append(part)
        else:
            out.append(Message(kind, [part]))
    return out


def _part(role: str, block: Any, param: str) -> Part:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return Text(_text_of(block, param))
    if kind == "image" and role == "user":
        return _image(block.get("source"), param)
    if kind == "tool_result" and role == "user":
        return _tool_result(block, param)
    if kind == "tool_use" and role == "assistant":
        arguments = json.dumps(block.get("input") or {})
        return ToolCall(id=str(block.get("id") or ""), name=str(block.get("name") or ""), arguments=arguments)
    if kind == "thinking" and role == "assistant":
        return Reasoning(str(block.get("thinking") or ""), signature=block.get("signature") or None)
    if kind == "redacted_thinking" and role == "assistant":
        return Reasoning("", redacted=str(block.get("data") or ""))
    if not isinstance(kind, str):
        raise InvalidRequestBody(f"{param} must be a content block with a 'type'", param=param)
    raise _unsupported(param, f"a '{kind}' block in a {role} message")


def _image(source: Any, param: str) -> Image:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        return Image(data=str(source.get("data") or ""), media_type=source.get("media_type"))
    if kind == "url" and isinstance(source, dict):
        return Image(url=str(source.get("url") or ""))
    raise _unsupported(f"{param}.source", f"an image source of type '{kind}'")


def _tool_result(block: Mapping[str, Any], param: str) -> ToolResult:
    content = block.get("content")
    parts: list[Text | Image]
    if content is None:
        parts = []
    elif isinstance(content, str):
        parts = [Text(content)]
    else:
        parts = [_result_part(item, f"{param}.content[{k}]") for k, item in enumerate(content)]
    return ToolResult(
        tool_call_id=str(block.get("tool_use_id") or ""),
        content=parts,
        is_error=block.get("is_error") is True,
    )


def _result_part(item: Any, param: str) -> Text | Image:
    if isinstance(item, dict) and item.get("type") == "image":
        return _image(item.get("source"), param)
    if isinstance(item, dict) and item.get("type") != "text":
        raise _unsupported(param, f"a '{item.get('type')}' block in a tool result")
    return Text(_text_of(item, param))


def _tool(index: int, tool: Any) -> Tool:
    param = f"tools[{index}]"
    if not isinstance(tool, dict):
        raise InvalidRequestBody(f"{param} must be an object", param=param)
    if tool.get("type") not in (None, "custom"):
        raise _unsupported("tools", f"the server tool '{tool.get('type')}'")
    for name in tool:
        if name not in _TOOL_FIELDS:
            raise _unsupported(f"{param}.{name}")
    if not isinstance(tool.get("name"), str):
        raise InvalidRequestBody(f"{param}.name must be a string", param=f"{param}.name")
    return Tool(
        name=tool["name"],
        description=tool.get("description"),
        parameters=tool.get("input_schema"),
        strict=tool.get("strict"),
    )


def _tool_choice(choice: Mapping[str, Any] | None) -> tuple[ToolChoice | None, bool | None]:
    if choice is None:
        return None, None
    mode = _CHOICE_MODES.get(str(choice.get("type")))
    if mode is None:
        raise InvalidRequestBody("tool_choice.type must be auto, any, tool or none", param="tool_choice.type")
    name = choice.get("name") if mode == "tool" else None
    if mode == "tool" and not isinstance(name, str):
        raise InvalidRequestBody("tool_choice.name must name a tool", param="tool_choice.name")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    return ToolChoice(mode, name), parallel


def _reasoning(thinking: Mapping[str, Any] | None) -> ReasoningConfig | None:
    if thinking is None:
        return None
    if thinking.get("display") is not None:
        raise _unsupported("thinking.display")
    kind = thinking.get("type")
    if kind == "enabled":
        if thinking.get("budget_tokens") is None:
            raise InvalidRequestBody("thinking.budget_tokens is required", param="thinking.budget_tokens")
        return ReasoningConfig(budget_tokens=thinking["budget_tokens"])
    if kind == "adaptive":
        return ReasoningConfig()
    if kind == "disabled":
        return ReasoningConfig(enabled=False)
    raise _unsupported("thinking.type", f"thinking of type '{kind}'")


def _response_format(config: Mapping[str, Any] | None) -> ResponseFormat | None:
    if not config:
        return None
    for name in config:
        if name != "format":
            raise _unsupported(f"output_config.{name}")
    output = config.get("format")
    if output is None:
        return None
    if (
        not isinstance(output, dict)
        or output.get("type") != "json_schema"
        or not isinstance(output.get("schema"), dict)
    ):
        raise InvalidRequestBody(
            "output_config.format must be a json_schema format", param="output_config.format"
        )
    return ResponseFormat(type="json_schema", schema=output["schema"])


def _user(metadata: Mapping[str, Any] | None) -> str | None:
    if not metadata:
        return None
    for name in metadata:
        if name != "user_id":
            raise _unsupported(f"metadata.{name}")
    user = metadata.get("user_id")
    return str(user) if user is not None else None


# --- encode: GenerationResponse → Anthropic message --------------------------------------------


def message_id(upstream_id: str) -> str:
    """An Anthropic-style message id (``msg_…``) for an upstream answer's id."""
    if upstream_id.startswith("msg_"):
        return upstream_id
    return "msg_" + (upstream_id or uuid.uuid4().hex)


def stop_reason(finish: FinishReason, raw: str | None) -> str:
    """The Anthropic ``stop_reason`` for a finish reason (an Anthropic upstream's own value kept)."""
    if finish is FinishReason.OTHER:
        return raw if raw in _ANTHROPIC_STOP_REASONS else "end_turn"
    if raw in _ANTHROPIC_STOP_REASONS and finish is FinishReason.LENGTH:
        return raw  # model_context_window_exceeded stays itself
    return STOP_REASONS[finish]


def anthropic_usage(usage: Usage) -> dict[str, int]:
    """Usage in Anthropic's fields: input_tokens excludes cache reads and writes."""
    uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    return {
        "input_tokens": max(uncached, 0),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    }


def _content_block(part: Part) -> Payload:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": _tool_input(part.arguments)}
    if isinstance(part, Reasoning):
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": part.redacted}
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
    raise UpstreamError(f"upstream answered a {type(part).__name__} part, which is not an answer's content")


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        return tool_input(arguments, "tool_use.input")
    except InvalidRequestBody as exc:  # the upstream's answer, not the client's request, is at fault
        raise UpstreamError("upstream answered a tool call whose arguments are not a JSON object") from exc


# --- stream encoder ----------------------------------------------------------------------------


class AnthropicStreamEncoder:
    """Gateway stream events → Anthropic's stream events (one per stream).

    message_start waits for the first content (or the end), so the usage an upstream reports right
    after its start (Anthropic's input counts) is in it; message_delta and message_stop are owed
    until ``finish()``, when the final usage is known.
    """

    def __init__(self, model: str) -> None:
        self._id = ""
        self._model = model
        self._started = False
        self._open: list[int] = []
        self._usage = Usage()
        self._finish: StreamFinish | None = None

    def encode(self, event: StreamEvent) -> list[Payload]:
        """The Anthropic events for ``event``."""
        if isinstance(event, StreamStart):
            self._id, self._model = event.id, event.model or self._model
            return []
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return []
        if isinstance(event, StreamFinish):
            self._finish = event
            return []
        return [*self._start(), *self._content(event)]

    def finish(self) -> list[Payload]:
        """Stop open blocks, then message_delta with the final usage, then message_stop."""
        events = [*self._start(), *({"type": "content_block_stop", "index": i} for i in self._open)]
        self._open.clear()
        finish = self._finish or StreamFinish(FinishReason.STOP)
        usage = anthropic_usage(self._usage)
        events.append(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason(finish.finish_reason, finish.raw_finish_reason),
                    "stop_sequence": finish.stop_sequence,
                },
                "usage": usage,
            }
        )
        events.append({"type": "message_stop"})
        return events

    def _start(self) -> list[Payload]:
        if self._started:
            return []
        self._started = True
        message: Payload = {
            "id": message_id(self._id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(self._usage),
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _content(self, event: StreamEvent) -> list[Payload]:
        if isinstance(event, TextStart | ReasoningStart | ToolCallStart):
            self._open.append(event.index)
            return [{"type": "content_block_start", "index": event.index, "content_block": _opening(event)}]
        if isinstance(event, BlockStop):
            if event.index not in self._open:
                return []
            self._open.remove(event.index)
            return [{"type": "content_block_stop", "index": event.index}]
        if isinstance(event, TextDelta | ToolCallDelta | ReasoningDelta):
            return [{"type": "content_block_delta", "index": event.index, "delta": d} for d in _deltas(event)]
        return []


def _opening(event: TextStart | ReasoningStart | ToolCallStart) -> Payload:
    if isinstance(event, TextStart):
        return {"type": "text", "text": ""}
    if isinstance(event, ToolCallStart):
        return {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
    if event.redacted is not None:
        return {"type": "redacted_thinking", "data": event.redacted}
    return {"type": "thinking", "thinking": "", "signature": ""}


def _deltas(event: TextDelta | ToolCallDelta | ReasoningDelta) -> list[Payload]:
    if isinstance(event, TextDelta):
        return [{"type": "text_delta", "text": event.text}]
    if isinstance(event, ToolCallDelta):
        return [{"type": "input_json_delta", "partial_json": event.arguments}]
    deltas: list[Payload] = []
    if event.text:
        deltas.append({"type": "thinking_delta", "thinking": event.text})
    if event.signature:
        deltas.append({"type": "signature_delta", "signature": event.signature})
    return deltas


def sse_event(payload: Payload) -> bytes:
    """One event framed for the wire: ``event: <type>`` and its JSON ``data``."""
    return b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


# --- errors, models, count_tokens --------------------------------------------------------------


def error_payload(error: OdockError) -> dict[str, Any]:
    """Anthropic's error shape; Odock's stable ``code`` (and ``param``) ride inside the error object."""
    status = error.http_status
    kind = ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    body: dict[str, Any] = {"type": kind, "message": error.message, "code": error.code}
    if error.param is not None:
        body["param"] = error.param
    return {"type": "error", "error": body}


def models_page(models: list[tuple[str, int]]) -> dict[str, Any]:
    """``GET /v1/models`` in Anthropic's shape, from (model name, created Unix seconds) pairs."""
    data = [
        {
            "type": "model",
            "id": name,
            "display_name": name,
            "created_at": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lifecycle": "active",
        }
        for name, created in models
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def count_tokens_payload(n: int) -> dict[str, int]:
    """The answer of ``/v1/messages/count_tokens``."""
    return {"input_tokens": n}


ANTHROPIC_CLIENT = AnthropicClientCodec()
