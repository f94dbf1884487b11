"""The upstream side of the Anthropic Messages dialect: gateway requests to Anthropic, and back.

``encode_request`` (GenerationRequest → Messages body)::

    system                 text blocks
    messages               user / assistant turns of content blocks; a ``tool`` message becomes a
                           user turn of tool_result blocks, and consecutive turns of one role are
                           merged (Anthropic requires alternation)
    images                 base64 source (inline data, data: URLs included) or url source; OpenAI's
                           ``detail`` hint has no Anthropic equivalent and is not sent
    reasoning history      signed thinking and redacted_thinking blocks go back unchanged;
                           reasoning without a signature (another vendor's) cannot be verified by
                           Anthropic and is left out of the history
    tools, tool_choice     auto | any (required) | tool | none; parallel_tool_calls=False →
                           ``disable_parallel_tool_use``
    stop                   stop_sequences
    max_tokens             the request's, else DEFAULT_MAX_TOKENS (Anthropic requires one); with a
                           thinking budget and no max_tokens, budget + DEFAULT_MAX_TOKENS
    reasoning              a budget → thinking enabled; an effort → a budget from EFFORT_BUDGETS;
                           neither → thinking adaptive; disabled → thinking disabled
    response_format        json_schema → output_config.format (structured outputs)
    user                   metadata.user_id
    refused (400 unsupported_parameter): seed, presence_penalty, frequency_penalty,
                           response_format json_object (Anthropic has no schemaless JSON mode)

``decode_response`` and ``stream_decoder`` read Anthropic's answers: content blocks become parts
(and block events stream events, indices kept), ``stop_reason`` a FinishReason, usage is read by
:func:`odock.providers.adapters.anthropic.usage_from_anthropic`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from odock.errors import InvalidRequestBody, UnsupportedParameter, UpstreamError
from odock.llm.codec import Payload
from odock.llm.types import (
    BlockStop,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
    Image,
    Part,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningStart,
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
    ToolResult,
    UsageUpdate,
)
from odock.providers.adapters.anthropic import event_error, usage_from_anthropic

DEFAULT_MAX_TOKENS = 4096
# OpenAI-style reasoning efforts as Anthropic thinking budgets (1024 is Anthropic's minimum).
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}
_REFUSED_FIELDS = ("seed", "presence_penalty", "frequency_penalty")


class AnthropicUpstreamCodec:
    """Encodes gateway requests for Anthropic and decodes its answers (an UpstreamCodec)."""

    def encode_request(self, request: GenerationRequest, model: str, *, stream: bool) -> Payload:
        """The Messages body for ``request`` sent to the upstream model id ``model``."""
        for name in _REFUSED_FIELDS:
            if getattr(request, name) is not None:
                raise UnsupportedParameter(f"Anthropic models do not support '{name}'", param=name)
        body: Payload = {"model": model, "max_tokens": _max_tokens(request), "messages": _turns(request)}
        if request.system:
            body["system"] = [{"type": "text", "text": part.text} for part in request.system]
        body.update(_sampling(request))
        body.update(_tooling(request))
        if request.reasoning is not None:
            body["thinking"] = _thinking(request.reasoning)
        if request.response_format is not None and request.response_format.type != "text":
            body["output_config"] = {"format": _output_format(request)}
        if request.user is not None:
            body["metadata"] = {"user_id": request.user}
        if stream:
            body["stream"] = True
        return body

    def decode_response(self, payload: Payload) -> GenerationResponse:
        """An Anthropic ``Message`` in the gateway's form."""
        blocks = payload.get("content")
        if not isinstance(blocks, list):
            raise UpstreamError("upstream answered a message without content")
        raw = payload.get("stop_reason")
        return GenerationResponse(
            id=str(payload.get("id") or ""),
            model=str(payload.get("model") or ""),
            parts=[_part_of(block) for block in blocks],
            finish_reason=finish_reason(raw),
            usage=usage_from_anthropic(payload.get("usage") or {}),
            stop_sequence=payload.get("stop_sequence"),
            raw_finish_reason=raw if isinstance(raw, str) else None,
        )

    def stream_decoder(self) -> AnthropicStreamDecoder:
        """A fresh decoder for one Anthropic event stream."""
        return AnthropicStreamDecoder()


class AnthropicStreamDecoder:
    """Anthropic stream events → gateway stream events (one per stream)."""

    def __init__(self) -> None:
        self._usage: dict[str, Any] = {}  # cumulative: message_start's counts, updated by message_delta
        self._open: set[int] = set()

    def decode(self, event: Payload) -> list[StreamEvent]:
        """The gateway events carried by one Anthropic event (an ``error`` event raises)."""
        kind = event.get("type")
        if kind == "message_start":
            return self._start(event.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(_index(event), event.get("content_block") or {})
        if kind == "content_block_delta":
            return _block_delta(_index(event), event.get("delta") or {})
        if kind == "content_block_stop":
            self._open.discard(_index(event))
            return [BlockStop(_index(event))]
        if kind == "message_delta":
            return self._finish(event)
        if kind == "error":
            raise event_error(event)
        return []  # ping, message_stop, and event types added later

    def finish(self) -> list[StreamEvent]:
        """Stop the blocks the upstream left open."""
        stops: list[StreamEvent] = [BlockStop(index) for index in sorted(self._open)]
        self._open.clear()
        return stops

    def _start(self, message: Mapping[str, Any]) -> list[StreamEvent]:
        self._usage.update(message.get("usage") or {})
        start = StreamStart(id=str(message.get("id") or ""), model=str(message.get("model") or ""))
        return [start, UsageUpdate(usage_from_anthropic(self._usage))]

    def _block_start(self, index: int, block: Mapping[str, Any]) -> list[StreamEvent]:
        self._open.add(index)
        kind = block.get("type")
        if kind == "text":
            text = block.get("text") or ""
            return [TextStart(index), *([TextDelta(index, text)] if text else [])]
        if kind == "thinking":
            thinking = block.get("thinking") or ""
            return [ReasoningStart(index), *([ReasoningDelta(index, thinking)] if thinking else [])]
        if kind == "redacted_thinking":
            return [ReasoningStart(index, redacted=str(block.get("data") or ""))]
        if kind == "tool_use":
            start = ToolCallStart(index, id=str(block.get("id") or ""), name=str(block.get("name") or ""))
            given = block.get("input")
            return [start, *([ToolCallDelta(index, json.dumps(given))] if given else [])]
        raise UpstreamError(f"upstream streamed a '{kind}' content block the gateway cannot translate")

    def _finish(self, event: Mapping[str, Any]) -> list[StreamEvent]:
        delta = event.get("delta") or {}
        self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        raw = delta.get("stop_reason")
        finish = StreamFinish(
            finish_reason=finish_reason(raw),
            stop_sequence=delta.get("stop_sequence"),
            raw_finish_reason=raw if isinstance(raw, str) else None,
        )
        return [finish, UsageUpdate(usage_from_anthropic(self._usage))]


def finish_reason(stop_reason: object) -> FinishReason:
    """Anthropic's ``stop_reason`` as a FinishReason (pause_turn and unknown values: OTHER)."""
    return (
        STOP_REASONS.get(stop_reason, FinishReason.OTHER)
        if isinstance(stop_reason, str)
        else FinishReason.OTHER
    )


def tool_input(arguments: str, param: str) -> dict[str, Any]:
    """A tool call's JSON arguments as Anthropic's ``input`` object ("" is no arguments)."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequestBody("tool call arguments must be a JSON object", param=param)
    return value


# --- request -----------------------------------------------------------------------------------


def _max_tokens(request: GenerationRequest) -> int:
    if request.max_tokens is not None:
        return request.max_tokens
    budget = _budget(request.reasoning) if request.reasoning is not None else None
    # Thinking counts toward max_tokens, which must exceed the budget.
    return DEFAULT_MAX_TOKENS + budget if budget is not None else DEFAULT_MAX_TOKENS


def _sampling(request: GenerationRequest) -> Payload:
    values = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "stop_sequences": request.stop or None,
    }
    return {name: value for name, value in values.items() if value is not None}


def _tooling(request: GenerationRequest) -> Payload:
    body: Payload = {}
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
    choice = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is False and request.tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None and (request.tools or choice["type"] != "none"):
        body["tool_choice"] = choice
    return body


def _tool(tool: Tool) -> Payload:
    encoded: Payload = {"name": tool.name, "input_schema": tool.parameters or {"type": "object"}}
    if tool.description is not None:
        encoded["description"] = tool.description
    if tool.strict is not None:
        encoded["strict"] = tool.strict
    return encoded


def _tool_choice(choice: ToolChoice | None) -> Payload | None:
    if choice is None:
        return None
    if choice.mode == "tool":
        return {"type": "tool", "name": choice.name}
    return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice.mode]}


def _budget(reasoning: ReasoningConfig) -> int | None:
    if not reasoning.enabled:
        return None
    if reasoning.budget_tokens is not None:
        return reasoning.budget_tokens
    if reasoning.effort is None:
        return None
    if reasoning.effort not in EFFORT_BUDGETS:
        raise UnsupportedParameter(
            f"reasoning effort '{reasoning.effort}' has no Anthropic thinking budget",
            param="reasoning_effort",
        )
    return EFFORT_BUDGETS[reasoning.effort]


def _thinking(reasoning: ReasoningConfig) -> Payload:
    if not reasoning.enabled:
        return {"type": "disabled"}
    budget = _budget(reasoning)
    return {"type": "adaptive"} if budget is None else {"type": "enabled", "budget_tokens": budget}


def _output_format(request: GenerationRequest) -> Payload:
    response_format = request.response_format
    assert response_format is not None
    if response_format.type != "json_schema" or response_format.schema is None:
        raise UnsupportedParameter(
            "Anthropic models support JSON output only with a schema (json_schema)", param="response_format"
        )
    return {"type": "json_schema", "schema": response_format.schema}


def _turns(request: GenerationRequest) -> list[Payload]:
    """The conversation as Anthropic turns: tool results as user turns, same-role turns merged."""
    turns: list[Payload] = []
    for message in request.messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [block for part in message.parts if (block := _block(part)) is not None]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _block(part: Part) -> Payload | None:
    """One part as a content block (None for reasoning Anthropic could not verify)."""
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        return _image(part)
    if isinstance(part, ToolCall):
        return {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": tool_input(part.arguments, "messages"),
        }
    if isinstance(part, ToolResult):
        return _tool_result(part)
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def _image(image: Image) -> Payload:
    if image.data is not None:
        source = {"type": "base64", "media_type": image.media_type, "data": image.data}
    elif image.url is not None and image.url.startswith("data:"):
        header, _, data = image.url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise InvalidRequestBody("an image data URL must be base64-encoded", param="messages")
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif image.url is not None:
        source = {"type": "url", "url": image.url}
    else:
        raise InvalidRequestBody("an image needs a URL or inline data", param="messages")
    return {"type": "image", "source": source}


def _tool_result(result: ToolResult) -> Payload:
    content = [
        _image(part) if isinstance(part, Image) else {"type": "text", "text": part.text}
        for part in result.content
    ]
    block: Payload = {"type": "tool_result", "tool_use_id": result.tool_call_id}
    if content:
        block["content"] = content
    if result.is_error:
        block["is_error"] = True
    return block


# --- response ----------------------------------------------------------------------------------


def _part_of(block: Any) -> Part:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return Text(str(block.get("text") or ""))
    if kind == "thinking":
        return Reasoning(str(block.get("thinking") or ""), signature=block.get("signature") or None)
    if kind == "redacted_thinking":
        return Reasoning("", redacted=str(block.get("data") or ""))
    if kind == "tool_use":
        arguments = json.dumps(block.get("input") or {})
        return ToolCall(id=str(block.get("id") or ""), name=str(block.get("name") or ""), arguments=arguments)
    raise UpstreamError(f"upstream answered a '{kind}' content block the gateway cannot translate")


def _index(event: Mapping[str, Any]) -> int:
    index = event.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise UpstreamError("upstream sent a content block event without an index")
    return index


def _block_delta(index: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
    kind = delta.get("type")
    if kind == "text_delta":
        return [TextDelta(index, str(delta.get("text") or ""))]
    if kind == "input_json_delta":
        partial = str(delta.get("partial_json") or "")
        return [ToolCallDelta(index, partial)] if partial else []
    if kind == "thinking_delta":
        return [ReasoningDelta(index, text=str(delta.get("thinking") or ""))]
    if kind == "signature_delta":
        return [ReasoningDelta(index, signature=str(delta.get("signature") or ""))]
    return []  # citations_delta: citations are never asked for (document blocks are refused)


ANTHROPIC_UPSTREAM = AnthropicUpstreamCodec()

__all__ = [
    "ANTHROPIC_UPSTREAM",
    "DEFAULT_MAX_TOKENS",
    "EFFORT_BUDGETS",
    "AnthropicStreamDecoder",
    "AnthropicUpstreamCodec",
    "finish_reason",
    "tool_input",
]
