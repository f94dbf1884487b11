"""The Gemini dialect, upstream side: the gateway's generation in ``generateContent`` shape and back.

Request (:meth:`GeminiUpstreamCodec.encode_request`)::

    system                  → systemInstruction {parts: [{text}]}
    user / assistant turns  → contents, role "user" / "model"
    text, image             → {text}, {inlineData {mimeType, data}} (a data: URL too) or
                              {fileData {mimeType?, fileUri}}; OpenAI's image ``detail`` is a
                              rendering hint Gemini has no per-image field for: not sent
    reasoning               → {text, thought: true, thoughtSignature?}; a reasoning part with a
                              signature and no text (how Gemini's signatures on calls are
                              decoded) puts the signature back on the part that follows it
    tool call               → {functionCall {name, args}} (ids are not sent: Gemini pairs a
                              response with its call by name and order)
    tool messages           → one "user" turn of {functionResponse {name, response}}: the
                              result's JSON object, else {"output": text}; an error result is
                              {"error": …} (Google's documented keys); the name is the result's,
                              else that of the earlier call with the same id
    tools, tool_choice      → functionDeclarations (parametersJsonSchema), functionCallingConfig
                              AUTO / NONE / ANY (+ allowedFunctionNames for one named tool)
    sampling, limits        → generationConfig (temperature, topP, topK, maxOutputTokens,
                              stopSequences, seed, presencePenalty, frequencyPenalty)
    response_format         → responseMimeType application/json (+ responseJsonSchema)
    reasoning config        → thinkingConfig: thinkingBudget (off = 0; effort minimal / low /
                              medium / high = 128 / 1024 / 4096 / 16384) and includeThoughts

Refused (:class:`~odock.errors.UnsupportedParameter`): ``parallel_tool_calls`` false (Gemini
cannot be held to one call), a ``strict`` tool (no schema-adherence switch), ``user`` (no end-user
field), images inside tool results, and a tool result whose call cannot be named.

Answers: the first candidate's parts become Text / Reasoning / ToolCall; ``finishReason`` maps
through :data:`FINISH_REASONS` (a STOP that carries function calls is TOOL_CALLS); a prompt
blocked before any candidate (``promptFeedback.blockReason``) is a CONTENT_FILTER answer.
Usage is read by :func:`usage_from_gemini`. Streams are decoded chunk by chunk the same way
(:class:`GeminiStreamDecoder`): Gemini sends text in pieces but each function call whole.
"""

from __future__ import annotations

import json
from typing import Any

from odock.errors import UnsupportedParameter, UpstreamError
from odock.ids import fresh_hex_id
from odock.llm.codec import Payload
from odock.llm.types import (
    BlockStop,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
    Image,
    Message,
    Part,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningStart,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    Text,
    TextDelta,
    TextStart,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    UsageUpdate,
)
from odock.llm.types import Reasoning as ReasoningPart
from odock.llm.upstream import MAX_REPORTED_TOKENS, Usage

# Gemini's finishReason → the gateway's (anything else is OTHER, its raw value kept).
FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "MODEL_ARMOR": FinishReason.CONTENT_FILTER,
}
# reasoning effort → thinkingBudget (Gemini budgets are tokens; these follow its docs' examples)
EFFORT_BUDGETS = {"minimal": 128, "low": 1024, "medium": 4096, "high": 16384}
_JSON_MIME = "application/json"


def usage_from_gemini(meta: Any) -> Usage:
    """Read a ``usageMetadata`` object: thoughts count as completion, tool-use prompts as prompt."""
    if not isinstance(meta, dict):
        return Usage()
    thoughts = _count(meta.get("thoughtsTokenCount"))
    prompt = _count(meta.get("promptTokenCount")) + _count(meta.get("toolUsePromptTokenCount"))
    completion = _count(meta.get("candidatesTokenCount")) + thoughts
    return Usage(
        prompt_tokens=min(prompt, MAX_REPORTED_TOKENS),
        completion_tokens=min(completion, MAX_REPORTED_TOKENS),
        total_tokens=_count(meta.get("totalTokenCount")) or min(prompt + completion, MAX_REPORTED_TOKENS),
        cached_tokens=_count(meta.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
        raw=meta,
    )


def _count(value: object) -> int:
    """A reported token count: a non-negative integer (clamped), else 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return min(value, MAX_REPORTED_TOKENS)


def finish_reason_of(raw: str | None, *, called: bool) -> FinishReason:
    """The gateway's finish reason for Gemini's ``raw`` one (``called``: the answer holds calls)."""
    reason = FINISH_REASONS.get(raw or "STOP", FinishReason.OTHER)
    return FinishReason.TOOL_CALLS if called and reason is FinishReason.STOP else reason


def json_schema_of(schema: Any) -> Any:
    """A Gemini ``Schema`` (OpenAPI subset: upper-case types, ``nullable``) as JSON Schema."""
    if isinstance(schema, list):
        return [json_schema_of(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "propertyOrdering":
            continue  # an ordering hint with no JSON Schema keyword
        if key == "type" and isinstance(value, str):
            converted[key] = value.lower()
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            converted[key] = {name: json_schema_of(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties", "not"):
            converted[key] = json_schema_of(value)
        elif key != "nullable":
            converted[key] = value
    if schema.get("nullable") is True and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


# --- request -----------------------------------------------------------------------------------


class GeminiUpstreamCodec:
    """The upstream side of the Gemini dialect (see the module docstring)."""

    def encode_request(self, request: GenerationRequest, model: str, *, stream: bool) -> Payload:
        """The ``generateContent`` body for ``request`` (the model and streaming live in the URL)."""
        _refuse_unexpressible(request)
        payload: Payload = {"contents": _contents(request.messages)}
        if request.system:
            payload["systemInstruction"] = {"parts": [{"text": part.text} for part in request.system]}
        if request.tools:
            declarations = [
                _declaration(tool.name, tool.description, tool.parameters) for tool in request.tools
            ]
            payload["tools"] = [{"functionDeclarations": declarations}]
        if request.tool_choice is not None:
            payload["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
        config = _generation_config(request)
        if config:
            payload["generationConfig"] = config
        return payload

    def decode_response(self, payload: Payload) -> GenerationResponse:
        """A ``GenerateContentResponse`` in the gateway's form (first candidate only)."""
        candidate = _first_candidate(payload)
        parts = _answer_parts(candidate, payload)
        called = any(isinstance(part, ToolCall) for part in parts)
        raw = _raw_finish(candidate, payload)
        return GenerationResponse(
            id=_response_id(payload),
            model=str(payload.get("modelVersion") or ""),
            parts=parts,
            finish_reason=_finish_of(raw, payload, called=called),
            usage=usage_from_gemini(payload.get("usageMetadata")),
            raw_finish_reason=raw,
        )

    def stream_decoder(self) -> GeminiStreamDecoder:
        """A fresh decoder for one ``streamGenerateContent`` stream."""
        return GeminiStreamDecoder()


def _refuse_unexpressible(request: GenerationRequest) -> None:
    if request.parallel_tool_calls is False:
        raise UnsupportedParameter(
            "Gemini cannot be limited to one tool call per turn", param="parallel_tool_calls"
        )
    if any(tool.strict for tool in request.tools):
        raise UnsupportedParameter("Gemini has no strict mode for function declarations", param="tools")
    if request.user is not None:
        raise UnsupportedParameter("Gemini has no end-user identifier field", param="user")


def _contents(messages: list[Message]) -> list[Payload]:
    """The conversation as Gemini contents; consecutive tool messages share one user turn."""
    contents: list[Payload] = []
    call_names: dict[str, str] = {}
    after_tool = False
    for message in messages:
        call_names.update({part.id: part.name for part in message.parts if isinstance(part, ToolCall)})
        if message.role == "tool":
            parts = [_function_response(part, call_names) for part in message.parts]
            if after_tool:
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": "user", "parts": parts})
        elif parts := _parts(message.parts):  # a turn of only redacted reasoning has nothing to send
            contents.append({"role": "model" if message.role == "assistant" else "user", "parts": parts})
        after_tool = message.role == "tool"
    return contents


def _parts(parts: list[Part]) -> list[Payload]:
    """Gemini parts for a user or model turn (a bare signature rides on the next part)."""
    encoded: list[Payload] = []
    signature: str | None = None
    for part in parts:
        if isinstance(part, ReasoningPart) and not part.text and part.signature:
            signature = part.signature
            continue
        item = _part(part)
        if item is None:
            continue
        if signature is not None:
            item["thoughtSignature"] = signature
            signature = None
        encoded.append(item)
    if signature is not None:
        encoded.append({"text": "", "thoughtSignature": signature})
    return encoded


def _part(part: Part) -> Payload | None:
    if isinstance(part, Text):
        return {"text": part.text}
    if isinstance(part, Image):
        return image_part(part)
    if isinstance(part, ToolCall):
        return {"functionCall": {"name": part.name, "args": _arguments(part.arguments)}}
    if isinstance(part, ReasoningPart):
        if part.redacted is not None:
            return None  # Anthropic's encrypted reasoning means nothing to Gemini
        item: Payload = {"text": part.text, "thought": True}
        if part.signature:
            item["thoughtSignature"] = part.signature
        return item
    raise UnsupportedParameter("a tool result can only be sent in a tool message", param="messages")


def image_part(image: Image) -> Payload:
    """An image as ``inlineData`` (base64 or a data: URL) or ``fileData`` (any other URL)."""
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    url = image.url or ""
    if url.startswith("data:") and ";base64," in url:
        head, _, data = url.partition(";base64,")
        return {"inlineData": {"mimeType": head.removeprefix("data:") or "image/png", "data": data}}
    file_data: Payload = {"fileUri": url}
    if image.media_type:
        file_data["mimeType"] = image.media_type
    return {"fileData": file_data}


def _arguments(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as the object Gemini's ``args`` is ("" counts as no arguments)."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError as exc:
        raise UnsupportedParameter("tool-call arguments must be a JSON object", param="messages") from exc
    if not isinstance(value, dict):
        raise UnsupportedParameter("tool-call arguments must be a JSON object", param="messages")
    return value


def _function_response(part: Part, call_names: dict[str, str]) -> Payload:
    if not isinstance(part, ToolResult):
        raise UnsupportedParameter("a tool message holds only tool results", param="messages")
    name = part.name or call_names.get(part.tool_call_id)
    if not name:
        raise UnsupportedParameter(
            f"tool result '{part.tool_call_id}' answers no earlier tool call, and Gemini needs its name",
            param="messages",
        )
    if any(isinstance(item, Image) for item in part.content):
        raise UnsupportedParameter("Gemini tool results cannot hold images", param="messages")
    text = "".join(item.text for item in part.content if isinstance(item, Text))
    return {"functionResponse": {"name": name, "response": _response_object(text, is_error=part.is_error)}}


def _response_object(text: str, *, is_error: bool) -> dict[str, Any]:
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = None
    if is_error:
        return {"error": value if isinstance(value, dict) else text}
    return value if isinstance(value, dict) else {"output": text}


def _declaration(name: str, description: str | None, parameters: dict[str, Any] | None) -> Payload:
    declaration: Payload = {"name": name}
    if description:
        declaration["description"] = description
    if parameters:
        declaration["parametersJsonSchema"] = parameters
    return declaration


def _calling_config(choice: ToolChoice) -> Payload:
    if choice.mode == "tool":
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice.mode]}


def _generation_config(request: GenerationRequest) -> Payload:
    config: Payload = {}
    for key, value in (
        ("temperature", request.temperature),
        ("topP", request.top_p),
        ("topK", request.top_k),
        ("maxOutputTokens", request.max_tokens),
        ("seed", request.seed),
        ("presencePenalty", request.presence_penalty),
        ("frequencyPenalty", request.frequency_penalty),
    ):
        if value is not None:
            config[key] = value
    if request.stop:
        config["stopSequences"] = list(request.stop)
    config.update(_format_config(request.response_format))
    if request.reasoning is not None:
        config["thinkingConfig"] = thinking_config(request.reasoning)
    return config


def _format_config(response_format: ResponseFormat | None) -> Payload:
    if response_format is None or response_format.type == "text":
        return {}
    if response_format.type == "json_schema" and response_format.schema is not None:
        return {"responseMimeType": _JSON_MIME, "responseJsonSchema": response_format.schema}
    return {"responseMimeType": _JSON_MIME}


def thinking_config(reasoning: ReasoningConfig) -> Payload:
    """``thinkingConfig`` for a reasoning request: a budget (0 = off), thoughts shown when on."""
    if not reasoning.enabled:
        return {"thinkingBudget": 0}
    config: Payload = {"includeThoughts": True}
    if reasoning.budget_tokens is not None:
        config["thinkingBudget"] = reasoning.budget_tokens
    elif reasoning.effort is not None:
        if reasoning.effort not in EFFORT_BUDGETS:
            raise UnsupportedParameter(
                f"unknown reasoning effort '{reasoning.effort}'", param="reasoning_effort"
            )
        config["thinkingBudget"] = EFFORT_BUDGETS[reasoning.effort]
    return config


# --- response ----------------------------------------------------------------------------------


def _first_candidate(payload: Payload) -> dict[str, Any]:
    candidates = payload.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return {}


def _raw_finish(candidate: dict[str, Any], payload: Payload) -> str | None:
    """The candidate's finishReason, else the prompt's blockReason (None: not finished yet)."""
    reason = candidate.get("finishReason")
    if isinstance(reason, str):
        return reason
    return _block_reason(payload)


def _block_reason(payload: Payload) -> str | None:
    feedback = payload.get("promptFeedback")
    blocked = feedback.get("blockReason") if isinstance(feedback, dict) else None
    return blocked if isinstance(blocked, str) else None


def _finish_of(raw: str | None, payload: Payload, *, called: bool) -> FinishReason:
    """A blocked prompt is a content filter whatever its reason; otherwise :func:`finish_reason_of`."""
    if not _first_candidate(payload) and _block_reason(payload) is not None:
        return FinishReason.CONTENT_FILTER
    return finish_reason_of(raw, called=called)


def _response_id(payload: Payload) -> str:
    value = payload.get("responseId")
    return value if isinstance(value, str) and value else "gemini-" + fresh_hex_id()


def _answer_parts(candidate: dict[str, Any], payload: Payload) -> list[Part]:
    content = candidate.get("content")
    raw_parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(raw_parts, list):
        if payload.get("promptFeedback") or candidate:
            return []
        raise UpstreamError("upstream answered without candidates")
    parts: list[Part] = []
    prefix = _response_id(payload) if payload.get("responseId") else fresh_hex_id()[:12]
    calls = 0
    for raw in raw_parts:
        if not isinstance(raw, dict):
            continue
        for part in _answer_part(raw):
            if isinstance(part, ToolCall) and not part.id:
                calls += 1
                part.id = f"call_{prefix}_{calls}"
            parts.append(part)
    return parts


def _answer_part(raw: dict[str, Any]) -> list[Part]:
    """One Gemini part as gateway parts (a signature on a non-thought part precedes it)."""
    signature = raw.get("thoughtSignature") if isinstance(raw.get("thoughtSignature"), str) else None
    if raw.get("thought") is True:
        return [ReasoningPart(text=str(raw.get("text") or ""), signature=signature)]
    parts: list[Part] = [ReasoningPart(text="", signature=signature)] if signature else []
    call = raw.get("functionCall")
    if isinstance(call, dict):
        args = call.get("args")
        arguments = json.dumps(args if isinstance(args, dict) else {}, ensure_ascii=False)
        call_id = call["id"] if isinstance(call.get("id"), str) else ""
        parts.append(ToolCall(id=call_id, name=str(call.get("name") or ""), arguments=arguments))
    elif isinstance(raw.get("text"), str) and raw["text"]:
        parts.append(Text(raw["text"]))
    return parts


# --- stream ------------------------------------------------------------------------------------


class GeminiStreamDecoder:
    """Gemini stream chunks (partial GenerateContentResponses) → gateway stream events.

    Text and thought parts open a block once and add deltas while consecutive; a function call
    is a whole block (start, one delta with its JSON, stop). The chunk with ``finishReason``
    closes the open block and yields StreamFinish, then the latest usage.
    """

    def __init__(self) -> None:
        self._started = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # ("text" | "reasoning", index)
        self._calls = 0  # calls given an id here
        self._called = False
        self._prefix = ""
        self._usage: Usage | None = None
        self._finished = False

    def decode(self, event: Payload) -> list[StreamEvent]:
        """The gateway events carried by one chunk (an ``error`` chunk raises UpstreamError)."""
        error = event.get("error")
        if isinstance(error, dict):
            raise UpstreamError(str(error.get("message") or "upstream reported an error mid-stream"))
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            response_id = _response_id(event)
            self._prefix = response_id
            events.append(StreamStart(id=response_id, model=str(event.get("modelVersion") or "")))
        candidate = _first_candidate(event)
        content = candidate.get("content")
        for raw in content.get("parts") or [] if isinstance(content, dict) else []:
            if isinstance(raw, dict):
                events.extend(self._part(raw))
        if isinstance(event.get("usageMetadata"), dict):
            self._usage = usage_from_gemini(event["usageMetadata"])
        raw_finish = _raw_finish(candidate, event)
        if raw_finish is not None and not self._finished:
            events.extend(self._finish(raw_finish, event))
        return events

    def finish(self) -> list[StreamEvent]:
        """Close a block left open (the adapter has already refused a stream cut short)."""
        return self._close()

    def _part(self, raw: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for part in _answer_part(raw):
            if isinstance(part, ReasoningPart):
                events.extend(self._reasoning(part))
            elif isinstance(part, Text):
                events.extend(self._continue("text"))
                events.append(TextDelta(self._index(), part.text))
            elif isinstance(part, ToolCall):
                events.extend(self._tool_call(part))
        return events

    def _reasoning(self, part: ReasoningPart) -> list[StreamEvent]:
        if not part.text:  # a bare signature (on a call or text part): a block of its own
            events = self._close()
            index = self._start()
            events += [
                ReasoningStart(index),
                ReasoningDelta(index, signature=part.signature),
                BlockStop(index),
            ]
            return events
        events = self._continue("reasoning")
        events.append(ReasoningDelta(self._index(), text=part.text, signature=part.signature))
        return events

    def _tool_call(self, call: ToolCall) -> list[StreamEvent]:
        events = self._close()
        self._called = True
        if not call.id:
            self._calls += 1
            call.id = f"call_{self._prefix}_{self._calls}"
        index = self._start()
        events += [
            ToolCallStart(index, call.id, call.name),
            ToolCallDelta(index, call.arguments),
            BlockStop(index),
        ]
        return events

    def _continue(self, kind: str) -> list[StreamEvent]:
        """Keep the open block of ``kind``, or close the open one and start one of ``kind``."""
        if self._open is not None and self._open[0] == kind:
            return []
        events = self._close()
        index = self._start()
        self._open = (kind, index)
        events.append(TextStart(index) if kind == "text" else ReasoningStart(index))
        return events

    def _start(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _index(self) -> int:
        assert self._open is not None
        return self._open[1]

    def _close(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        index = self._open[1]
        self._open = None
        return [BlockStop(index)]

    def _finish(self, raw: str, event: Payload) -> list[StreamEvent]:
        self._finished = True
        events = self._close()
        reason = _finish_of(raw, event, called=self._called)
        events.append(StreamFinish(reason, raw_finish_reason=raw))
        if self._usage is not None:
            events.append(UsageUpdate(self._usage))
        return events


# --- embeddings --------------------------------------------------------------------------------


class GeminiEmbeddingsUpstreamCodec:
    """Embeddings: one input → ``embedContent``, several → ``batchEmbedContents``."""

    def encode_embeddings_request(self, request: EmbeddingRequest, model: str) -> Payload:
        """The body (its shape tells the adapter which method to call: ``requests`` → batch)."""
        if request.user is not None:
            raise UnsupportedParameter("Gemini has no end-user identifier field", param="user")
        items = [self._item(text, request.dimensions) for text in request.inputs]
        if len(items) == 1:
            return items[0]
        return {"requests": [{"model": f"models/{model}", **item} for item in items]}

    def decode_embeddings_response(self, payload: Payload) -> EmbeddingResponse:
        """The vectors of an ``embedContent`` or ``batchEmbedContents`` answer.

        Gemini reports no usage for embeddings: the usage is empty and flagged ``estimated``,
        for the caller to estimate from the inputs.
        """
        if isinstance(payload.get("embedding"), dict):
            embeddings = [payload["embedding"]]
        elif isinstance(payload.get("embeddings"), list):
            embeddings = payload["embeddings"]
        else:
            raise UpstreamError("upstream answered without embeddings")
        vectors = [_values(item) for item in embeddings]
        meta = payload.get("usageMetadata")
        usage = usage_from_gemini(meta) if isinstance(meta, dict) else Usage(estimated=True)
        return EmbeddingResponse(model="", vectors=vectors, usage=usage)

    @staticmethod
    def _item(text: str, dimensions: int | None) -> Payload:
        item: Payload = {"content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            item["outputDimensionality"] = dimensions
        return item


def _values(item: Any) -> list[float]:
    values = item.get("values") if isinstance(item, dict) else None
    if not isinstance(values, list):
        raise UpstreamError("upstream answered an embedding without values")
    return [float(value) for value in values]


GEMINI_UPSTREAM = GeminiUpstreamCodec()
GEMINI_EMBEDDINGS_UPSTREAM = GeminiEmbeddingsUpstreamCodec()
