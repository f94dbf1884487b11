"""The Gemini surface: what a ``google-genai`` caller sends, checked, decoded and answered.

Flow for ``POST /v1beta/models/{model}:generateContent`` (and ``:streamGenerateContent``)::

    check_generate_request(body)        400 invalid_request_body naming the field: required
                                        ``contents``, each known field's type, integer ranges
    estimate_input_tokens / asked_max_tokens   for limits and budgets before the call
    GEMINI_CLIENT.decode_request(body)  → GenerationRequest (the caller puts the URL's model in
                                        ``body["model"]``, and ``body["stream"] = True`` for
                                        :streamGenerateContent); 400 unsupported_parameter for
                                        what another vendor cannot be asked
    GEMINI_CLIENT.encode_response(…)    → GenerateContentResponse JSON
    GEMINI_CLIENT.stream_encoder(…)     → partial GenerateContentResponses, one per SSE ``data:``
                                        (or the items of a JSON array without ``alt=sse``)

Embeddings (``:embedContent``, ``:batchEmbedContents``) go through
:data:`GEMINI_EMBEDDINGS_CLIENT`; errors are rendered in Google's shape by :func:`error_payload`;
``GET /v1beta/models`` by :func:`models_page`; ``:countTokens`` by :func:`count_tokens_payload`.

Decisions on what cannot cross to another vendor (each refused with the field as sent):

* ``safetySettings``: other vendors apply their own moderation and have no thresholds, so only
  settings that ask for nothing (no threshold, or ``HARM_BLOCK_THRESHOLD_UNSPECIFIED``) pass.
* ``candidateCount`` above 1, ``responseModalities`` other than TEXT, ``cachedContent``, ``labels``,
  ``responseMimeType`` other than text/plain and application/json, non-function tools
  (googleSearch, codeExecution, …), parts other than text, images, function calls and
  responses, and every ``generationConfig`` field not listed in :data:`CONFIG_FIELDS`.
* ``taskType`` and ``title`` of embeddings are accepted and not carried: they tune Google's
  vectors for a use, and a vector of the text from another vendor is still a valid answer.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from odock import estimate
from odock.errors import InvalidRequestBody, OdockError, UnsupportedParameter, UpstreamError
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
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    Text,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    UsageUpdate,
)
from odock.llm.upstream import Usage
from odock.providers.adapters.gemini_codec import FINISH_REASONS, json_schema_of
from odock.surfaces.openai_chat import MAX_TOKEN_COUNT, check_fields

_NUMBER = (int, float)
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# field → accepted Python types, per object of the request body
REQUEST_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),  # the URL's, put here by the caller
    "stream": (bool,),  # likewise, for :streamGenerateContent
    "contents": (list,),
    "systemInstruction": (dict, str),
    "tools": (list,),
    "toolConfig": (dict,),
    "safetySettings": (list,),
    "cachedContent": (str,),
    "generationConfig": (dict,),
    "labels": (dict,),
}
CONFIG_FIELDS: dict[str, tuple[type, ...]] = {
    "temperature": _NUMBER,
    "topP": _NUMBER,
    "topK": _NUMBER,  # Google accepts 40.0; it must be integral (checked with the ranges)
    "maxOutputTokens": (int,),
    "candidateCount": (int,),
    "stopSequences": (list,),
    "seed": (int,),
    "presencePenalty": _NUMBER,
    "frequencyPenalty": _NUMBER,
    "responseMimeType": (str,),
    "responseSchema": (dict,),
    "responseJsonSchema": (dict, bool),
    "responseModalities": (list,),
    "thinkingConfig": (dict,),
}
THINKING_FIELDS: dict[str, tuple[type, ...]] = {
    "thinkingBudget": (int,),
    "includeThoughts": (bool,),
    "thinkingLevel": (str,),
}
EMBED_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "content": (dict,),
    "taskType": (str,),
    "title": (str,),
    "outputDimensionality": (int,),
}
COUNT_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "contents": (list,),
    "generateContentRequest": (dict,),
}
# generationConfig field → inclusive bounds
CONFIG_RANGES: dict[str, tuple[int, int]] = {
    "maxOutputTokens": (1, MAX_TOKEN_COUNT),
    "candidateCount": (1, 8),
    "topK": (1, INT32_MAX),
    "seed": (INT64_MIN, INT64_MAX),
}
THINKING_BUDGET_RANGE = (-1, INT32_MAX)  # -1: dynamic thinking, 0: off
DIMENSIONS_RANGE = (1, 65_536)
THINKING_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
_DEFAULT_THRESHOLDS = {None, "HARM_BLOCK_THRESHOLD_UNSPECIFIED"}
# Request fields a translation can carry or judge (``labels`` is Google billing metadata: refused).
_CARRIED_FIELDS = frozenset(REQUEST_FIELDS) - {"labels"}
GENERATE_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
EMBED_METHODS = ["embedContent", "batchEmbedContents"]


# --- field names -------------------------------------------------------------------------------

# Free-form JSON values (a call's arguments, a function's result, JSON schemas): kept as sent.
_OPAQUE = frozenset({"args", "response", "parametersJsonSchema", "responseJsonSchema", "labels", "metadata"})
# Gemini Schema objects: their fields are renamed, the names of their properties are not.
_SCHEMAS = frozenset({"parameters", "responseSchema"})


def normalize_request(data: Mapping[str, Any]) -> dict[str, Any]:
    """The body with every field name in camelCase.

    Google's API parses JSON as protobuf does, accepting a field's proto name (``max_output_tokens``)
    as well as its JSON name (``maxOutputTokens``), and the google-genai SDK sends some of each
    (``thinkingConfig: {include_thoughts}``, ``parameters_json_schema``). Every public function
    of this module normalizes its input first, so either spelling is read.
    """
    return {_camel(key): _normalized(_camel(key), value) for key, value in data.items()}


def _normalized(key: str, value: Any) -> Any:
    if key in _OPAQUE:
        return value
    if key in _SCHEMAS:
        return _normalized_schema(value)
    if isinstance(value, dict):
        return normalize_request(value)
    if isinstance(value, list):
        return [normalize_request(item) if isinstance(item, dict) else item for item in value]
    return value


def _normalized_schema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_normalized_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    normalized = {}
    for key, value in schema.items():
        name = _camel(key)
        if name == "properties" and isinstance(value, dict):
            normalized[name] = {prop: _normalized_schema(sub) for prop, sub in value.items()}
        else:
            normalized[name] = _normalized_schema(value) if isinstance(value, dict | list) else value
    return normalized


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


# --- checks ------------------------------------------------------------------------------------


def check_generate_request(data: Mapping[str, Any]) -> None:
    """Refuse a generateContent body of the wrong shape (400 naming the field, never a 500)."""
    _check_generate(normalize_request(data), "")


def _check_generate(data: Mapping[str, Any], prefix: str) -> None:
    check_fields(data, REQUEST_FIELDS, prefix)
    contents = data.get("contents")
    if not contents:
        raise InvalidRequestBody(f"field '{prefix}contents' must not be empty", param=prefix + "contents")
    _check_contents(contents, prefix + "contents")
    config = data.get("generationConfig")
    if config:
        _check_config(config, prefix + "generationConfig.")


def check_count_tokens_request(data: Mapping[str, Any]) -> None:
    """Refuse a countTokens body: ``contents`` or a whole ``generateContentRequest``."""
    data = normalize_request(data)
    check_fields(data, COUNT_FIELDS)
    inner = data.get("generateContentRequest")
    if inner is not None:
        _check_generate(inner, "generateContentRequest.")
    elif data.get("contents"):
        _check_contents(data["contents"], "contents")
    else:
        raise InvalidRequestBody("field 'contents' must not be empty", param="contents")


def check_embed_request(data: Mapping[str, Any]) -> None:
    """Refuse an embedContent body: a ``content`` with parts, a dimensionality in range."""
    _check_embed(normalize_request(data), "")


def _check_embed(data: Mapping[str, Any], prefix: str) -> None:
    check_fields(data, EMBED_FIELDS, prefix)
    content = data.get("content")
    if not isinstance(content, dict):
        raise InvalidRequestBody(f"missing required field '{prefix}content'", param=prefix + "content")
    _check_content(content, prefix + "content")
    dimensions = data.get("outputDimensionality")
    low, high = DIMENSIONS_RANGE
    if dimensions is not None and not low <= dimensions <= high:
        name = prefix + "outputDimensionality"
        raise InvalidRequestBody(f"field '{name}' must be between {low} and {high}", param=name)


def check_batch_embed_request(data: Mapping[str, Any]) -> None:
    """Refuse a batchEmbedContents body: a non-empty ``requests`` of embedContent bodies."""
    data = normalize_request(data)
    check_fields(data, {"model": (str,), "requests": (list,)})
    requests = data.get("requests")
    if not requests:
        raise InvalidRequestBody("field 'requests' must not be empty", param="requests")
    for index, item in enumerate(requests):
        if not isinstance(item, dict):
            raise InvalidRequestBody(f"requests[{index}] must be an object", param=f"requests[{index}]")
        _check_embed(item, f"requests[{index}].")


def _check_contents(contents: Any, name: str) -> None:
    if not isinstance(contents, list):
        raise InvalidRequestBody(f"field '{name}' must be an array", param=name)
    for index, content in enumerate(contents):
        if not isinstance(content, dict):
            raise InvalidRequestBody(f"{name}[{index}] must be an object", param=f"{name}[{index}]")
        _check_content(content, f"{name}[{index}]")


def _check_content(content: dict[str, Any], name: str) -> None:
    check_fields(content, {"role": (str,), "parts": (list,)}, name + ".")
    parts = content.get("parts")
    if not parts:
        raise InvalidRequestBody(f"field '{name}.parts' must not be empty", param=name + ".parts")
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            raise InvalidRequestBody(
                f"{name}.parts[{index}] must be an object", param=f"{name}.parts[{index}]"
            )


def _check_config(config: Mapping[str, Any], prefix: str) -> None:
    check_fields(config, CONFIG_FIELDS, prefix)
    for field, (low, high) in CONFIG_RANGES.items():
        value = config.get(field)
        if value is not None and (value != int(value) or not low <= value <= high):
            raise InvalidRequestBody(
                f"field '{prefix}{field}' must be an integer between {low} and {high}", param=prefix + field
            )
    thinking = config.get("thinkingConfig")
    if thinking:
        check_fields(thinking, THINKING_FIELDS, prefix + "thinkingConfig.")
        budget = thinking.get("thinkingBudget")
        low, high = THINKING_BUDGET_RANGE
        if budget is not None and not low <= budget <= high:
            name = prefix + "thinkingConfig.thinkingBudget"
            raise InvalidRequestBody(f"field '{name}' must be between {low} and {high}", param=name)


def estimate_input_tokens(data: Mapping[str, Any]) -> int:
    """Estimated prompt tokens: system instruction, contents' texts and the tools' JSON."""
    data = normalize_request(data)
    value = data.get("contents")
    contents: list[Any] = value if isinstance(value, list) else []
    chars = _text_chars(data.get("systemInstruction")) + sum(_text_chars(c) for c in contents)
    if data.get("tools"):
        chars += len(json.dumps(data["tools"]))
    return estimate.tokens_for_text(chars) + estimate.TOKENS_PER_MESSAGE * len(contents)


def asked_max_tokens(data: Mapping[str, Any]) -> int | None:
    """The output limit the request asks for (``generationConfig.maxOutputTokens``)."""
    config = normalize_request(data).get("generationConfig")
    value = config.get("maxOutputTokens") if isinstance(config, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return 0
    return sum(len(p["text"]) for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


# --- request -----------------------------------------------------------------------------------


class GeminiClientCodec:
    """The client side of the Gemini dialect (see the module docstring)."""

    def decode_request(self, payload: Payload) -> GenerationRequest:
        """The gateway's request for a checked generateContent body."""
        payload = normalize_request(payload)
        _refuse_top_level(payload)
        config = payload.get("generationConfig") or {}
        request = GenerationRequest(
            model=str(payload.get("model") or ""),
            messages=_messages(payload["contents"]),
            system=_system(payload.get("systemInstruction")),
            tools=_tools(payload.get("tools") or []),
            tool_choice=_tool_choice(payload.get("toolConfig")),
            stream=payload.get("stream") is True,
        )
        _apply_config(request, config)
        return request

    def encode_response(self, response: GenerationResponse) -> Payload:
        """A ``GenerateContentResponse`` with one candidate."""
        candidate = {
            "content": {"role": "model", "parts": _answer_parts(response.parts)},
            "finishReason": finish_reason_to_gemini(response.finish_reason, response.raw_finish_reason),
            "index": 0,
        }
        return {
            "candidates": [candidate],
            "usageMetadata": usage_metadata(response.usage),
            "modelVersion": response.model,
            "responseId": response.id,
        }

    def stream_encoder(self, request: GenerationRequest) -> GeminiStreamEncoder:
        """A fresh encoder for one stream."""
        return GeminiStreamEncoder(request.model)


def _refuse_top_level(payload: Payload) -> None:
    _refuse_unknown(payload, _CARRIED_FIELDS, "")
    if payload.get("cachedContent") is not None:
        raise UnsupportedParameter("cached contents live at Google only", param="cachedContent")
    for index, setting in enumerate(payload.get("safetySettings") or []):
        threshold = setting.get("threshold") if isinstance(setting, dict) else setting
        if threshold not in _DEFAULT_THRESHOLDS:
            name = f"safetySettings[{index}]"
            raise UnsupportedParameter("safety thresholds cannot be set at this model's provider", param=name)


def _refuse_unknown(data: Mapping[str, Any], known: Collection[str], prefix: str) -> None:
    """Refuse the first field of ``data`` that is not in ``known`` (nothing is dropped silently)."""
    for name in data:
        if name not in known:
            raise UnsupportedParameter(
                f"field '{prefix}{name}' cannot be sent to this model's provider", param=prefix + name
            )


def _system(instruction: Any) -> list[Text]:
    if isinstance(instruction, str):
        return [Text(instruction)]
    if not isinstance(instruction, dict):
        return []
    system = []
    for index, part in enumerate(instruction.get("parts") or []):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise UnsupportedParameter(
                "a system instruction can only hold text", param=f"systemInstruction.parts[{index}]"
            )
        system.append(Text(part["text"]))
    return system


def _messages(contents: list[dict[str, Any]]) -> list[Message]:
    """Contents as messages: function responses become ``tool`` messages ahead of their turn's rest."""
    decoder = _ContentDecoder()
    messages: list[Message] = []
    for index, content in enumerate(contents):
        messages.extend(decoder.content(content, f"contents[{index}]"))
    return messages


class _ContentDecoder:
    """Decodes contents in order, pairing function responses with the calls they answer."""

    def __init__(self) -> None:
        self._calls = 0
        self._unanswered: list[ToolCall] = []  # calls not yet answered, oldest first

    def content(self, content: dict[str, Any], name: str) -> list[Message]:
        role = content.get("role") or "user"
        if role not in ("user", "model", "function"):
            raise InvalidRequestBody(f"{name}.role must be 'user' or 'model'", param=f"{name}.role")
        results: list[Part] = []
        parts: list[Part] = []
        for index, raw in enumerate(content["parts"]):
            for part in self._part(raw, f"{name}.parts[{index}]"):
                (results if isinstance(part, ToolResult) else parts).append(part)
        messages = [Message("tool", results)] if results else []
        if parts:
            messages.append(Message("assistant" if role == "model" else "user", parts))
        return messages

    def _part(self, raw: dict[str, Any], name: str) -> list[Part]:
        signature = raw.get("thoughtSignature") if isinstance(raw.get("thoughtSignature"), str) else None
        if raw.get("thought") is True:
            return [Reasoning(text=str(raw.get("text") or ""), signature=signature)]
        parts: list[Part] = [Reasoning(text="", signature=signature)] if signature else []
        parts.append(self._content_part(raw, name))
        return parts

    def _content_part(self, raw: dict[str, Any], name: str) -> Part:
        known = [key for key in raw if key not in ("thought", "thoughtSignature")]
        if len(known) != 1:
            raise UnsupportedParameter(f"{name} must hold exactly one supported kind of content", param=name)
        kind = known[0]
        value = raw[kind]
        if kind == "text" and isinstance(value, str):
            return Text(value)
        if kind in ("inlineData", "fileData") and isinstance(value, dict):
            return _image(kind, value, f"{name}.{kind}")
        if kind == "functionCall" and isinstance(value, dict):
            return self._call(value, f"{name}.functionCall")
        if kind == "functionResponse" and isinstance(value, dict):
            return self._result(value, f"{name}.functionResponse")
        raise UnsupportedParameter(
            f"{name}.{kind} cannot be sent to this model's provider", param=f"{name}.{kind}"
        )

    def _call(self, value: dict[str, Any], name: str) -> ToolCall:
        args = value.get("args")
        if not isinstance(value.get("name"), str) or (args is not None and not isinstance(args, dict)):
            raise InvalidRequestBody(f"{name} needs a string 'name' and object 'args'", param=name)
        self._calls += 1
        call_id = value.get("id") if isinstance(value.get("id"), str) else f"call_{self._calls}"
        call = ToolCall(id=str(call_id), name=value["name"], arguments=json.dumps(args or {}))
        self._unanswered.append(call)
        return call

    def _result(self, value: dict[str, Any], name: str) -> ToolResult:
        tool = value.get("name")
        if not isinstance(tool, str) or not isinstance(value.get("response"), dict):
            raise InvalidRequestBody(f"{name} needs a string 'name' and object 'response'", param=name)
        call = self._answered(value.get("id"), tool)
        if call is None:
            raise InvalidRequestBody(f"{name} answers no earlier functionCall named '{tool}'", param=name)
        text, is_error = _result_text(value["response"])
        return ToolResult(tool_call_id=call.id, content=[Text(text)], is_error=is_error, name=tool)

    def _answered(self, call_id: Any, tool: str) -> ToolCall | None:
        """The call a response answers: by id when given, else the oldest open call of that name."""
        for call in self._unanswered:
            if (call.id == call_id) if isinstance(call_id, str) else (call.name == tool):
                self._unanswered.remove(call)
                return call
        return None


def _result_text(response: dict[str, Any]) -> tuple[str, bool]:
    """A function response as a tool result's text: Google's documented ``{"output": …}`` and
    ``{"error": …}`` wrappers are unwrapped (the upstream codec writes them back), any other
    object is sent as its JSON."""
    if len(response) == 1:
        key, inner = next(iter(response.items()))
        if key in ("output", "error"):
            text = inner if isinstance(inner, str) else json.dumps(inner, ensure_ascii=False)
            return text, key == "error"
    return json.dumps(response, ensure_ascii=False), False


def _image(kind: str, value: dict[str, Any], name: str) -> Image:
    mime = value.get("mimeType")
    if not isinstance(mime, str) or not mime.startswith("image/"):
        raise UnsupportedParameter(
            "only images can be sent to this model's provider", param=name + ".mimeType"
        )
    if kind == "inlineData":
        if not isinstance(value.get("data"), str):
            raise InvalidRequestBody(f"{name}.data must be a base64 string", param=name + ".data")
        return Image(data=value["data"], media_type=mime)
    if not isinstance(value.get("fileUri"), str):
        raise InvalidRequestBody(f"{name}.fileUri must be a string", param=name + ".fileUri")
    return Image(url=value["fileUri"], media_type=mime)


def _tools(tools: list[Any]) -> list[Tool]:
    decoded = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or set(tool) != {"functionDeclarations"}:
            kinds = ", ".join(tool) if isinstance(tool, dict) else "?"
            raise UnsupportedParameter(f"tools of kind {kinds} cannot be used here", param="tools")
        for position, declaration in enumerate(tool["functionDeclarations"] or []):
            decoded.append(_tool(declaration, f"tools[{index}].functionDeclarations[{position}]"))
    return decoded


def _tool(declaration: Any, name: str) -> Tool:
    if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
        raise InvalidRequestBody(f"{name} needs a string 'name'", param=name)
    extra = set(declaration) - {"name", "description", "parameters", "parametersJsonSchema"}
    if extra:
        field = sorted(extra)[0]
        raise UnsupportedParameter(
            f"{name}.{field} cannot be sent to this model's provider", param=f"{name}.{field}"
        )
    schema = declaration.get("parametersJsonSchema")
    if schema is None and declaration.get("parameters") is not None:
        schema = json_schema_of(declaration["parameters"])
    return Tool(name=declaration["name"], description=declaration.get("description"), parameters=schema)


def _tool_choice(tool_config: Any) -> ToolChoice | None:
    if not isinstance(tool_config, dict):
        return None
    _refuse_unknown(tool_config, ("functionCallingConfig",), "toolConfig.")
    calling = tool_config.get("functionCallingConfig")
    if not isinstance(calling, dict):
        return None
    _refuse_unknown(calling, ("mode", "allowedFunctionNames"), "toolConfig.functionCallingConfig.")
    mode = calling.get("mode") or "AUTO"
    allowed = calling.get("allowedFunctionNames") or []
    if mode == "AUTO" and not allowed:
        return ToolChoice("auto")
    if mode == "NONE":
        return ToolChoice("none")
    if mode == "ANY" and len(allowed) <= 1:
        return ToolChoice("tool", allowed[0]) if allowed else ToolChoice("required")
    raise UnsupportedParameter(
        f"function calling mode {mode} with {len(allowed)} allowed names cannot be expressed",
        param="toolConfig.functionCallingConfig",
    )


def _apply_config(request: GenerationRequest, config: dict[str, Any]) -> None:
    _refuse_config(config)
    request.temperature = config.get("temperature")
    request.top_p = config.get("topP")
    request.top_k = int(config["topK"]) if config.get("topK") is not None else None
    request.max_tokens = config.get("maxOutputTokens")
    request.stop = list(config.get("stopSequences") or [])
    request.seed = config.get("seed")
    request.presence_penalty = config.get("presencePenalty")
    request.frequency_penalty = config.get("frequencyPenalty")
    request.response_format = _response_format(config)
    if isinstance(config.get("thinkingConfig"), dict):
        request.reasoning = _reasoning(config["thinkingConfig"])


def _refuse_config(config: dict[str, Any]) -> None:
    prefix = "generationConfig."
    _refuse_unknown(config, CONFIG_FIELDS, prefix)
    if isinstance(config.get("thinkingConfig"), dict):
        _refuse_unknown(config["thinkingConfig"], THINKING_FIELDS, prefix + "thinkingConfig.")
    if (config.get("candidateCount") or 1) > 1:
        raise UnsupportedParameter("only one candidate can be generated", param=prefix + "candidateCount")
    if any(modality != "TEXT" for modality in config.get("responseModalities") or []):
        raise UnsupportedParameter("only text answers can be generated", param=prefix + "responseModalities")
    if config.get("responseMimeType") not in (None, "text/plain", "application/json"):
        raise UnsupportedParameter(
            "only text or JSON answers can be asked for", param=prefix + "responseMimeType"
        )


def _response_format(config: dict[str, Any]) -> ResponseFormat | None:
    if config.get("responseMimeType") != "application/json":
        if config.get("responseSchema") is not None or config.get("responseJsonSchema") is not None:
            raise InvalidRequestBody(
                "a response schema needs responseMimeType application/json",
                param="generationConfig.responseMimeType",
            )
        return None
    schema = config.get("responseJsonSchema")
    if schema is None and config.get("responseSchema") is not None:
        schema = json_schema_of(config["responseSchema"])
    if isinstance(schema, dict):
        return ResponseFormat("json_schema", schema=schema, name="response")
    return ResponseFormat("json_object")


def _reasoning(thinking: dict[str, Any]) -> ReasoningConfig:
    budget = thinking.get("thinkingBudget")
    level = thinking.get("thinkingLevel")
    if budget == 0:
        return ReasoningConfig(enabled=False)
    if level is not None and level not in THINKING_LEVELS:
        raise InvalidRequestBody(
            f"unknown thinking level '{level}'", param="generationConfig.thinkingConfig.thinkingLevel"
        )
    return ReasoningConfig(
        budget_tokens=budget if isinstance(budget, int) and budget > 0 else None,
        effort=THINKING_LEVELS.get(level) if isinstance(level, str) else None,
    )


# --- answers -----------------------------------------------------------------------------------

_FINISH_TO_GEMINI = {
    FinishReason.STOP: "STOP",
    FinishReason.LENGTH: "MAX_TOKENS",
    FinishReason.TOOL_CALLS: "STOP",
    FinishReason.STOP_SEQUENCE: "STOP",
    FinishReason.CONTENT_FILTER: "SAFETY",
}
# Gemini's own reasons, passed back as the upstream gave them when the gateway's is coarser.
_GEMINI_REASONS = frozenset(FINISH_REASONS) | {
    "LANGUAGE",
    "OTHER",
    "MALFORMED_FUNCTION_CALL",
    "TOO_MANY_TOOL_CALLS",
}


def finish_reason_to_gemini(reason: FinishReason, raw: str | None) -> str:
    """Gemini's finishReason for the gateway's (a Gemini value the upstream sent is kept)."""
    if raw in _GEMINI_REASONS and reason in (FinishReason.OTHER, FinishReason.CONTENT_FILTER):
        return raw
    return _FINISH_TO_GEMINI.get(reason, "OTHER")


def usage_metadata(usage: Usage) -> Payload:
    """``usageMetadata``: prompt includes cached tokens, candidates exclude thoughts."""
    meta: Payload = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": max(usage.completion_tokens - usage.reasoning_tokens, 0),
        "totalTokenCount": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.reasoning_tokens:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    return meta


def _answer_parts(parts: list[Part]) -> list[Payload]:
    """Gemini parts of an answer; a bare reasoning signature rides on the next part."""
    encoded: list[Payload] = []
    signature: str | None = None
    for part in parts:
        if isinstance(part, Reasoning) and (part.redacted is not None or not part.text):
            signature = part.signature or signature
            continue
        item = _answer_part(part)
        if signature is not None:
            item["thoughtSignature"] = signature
            signature = None
        encoded.append(item)
    if signature is not None:
        encoded.append({"text": "", "thoughtSignature": signature})
    return encoded


def _answer_part(part: Part) -> Payload:
    if isinstance(part, Reasoning):
        item: Payload = {"text": part.text, "thought": True}
        if part.signature:
            item["thoughtSignature"] = part.signature
        return item
    if isinstance(part, ToolCall):
        return function_call_part(part.id, part.name, part.arguments)
    if isinstance(part, Text):
        return {"text": part.text}
    raise TypeError(f"an answer cannot hold {type(part).__name__}")


def function_call_part(call_id: str, name: str, arguments: str) -> Payload:
    """A ``functionCall`` part (arguments parsed from their JSON text; blank means none).

    Gemini's ``args`` is an object: an upstream model's arguments that are not one (malformed
    JSON happens) cannot be relayed, and fail as an upstream error.
    """
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError as exc:
        raise UpstreamError(f"upstream sent arguments for '{name}' that are not JSON") from exc
    if not isinstance(args, dict):
        raise UpstreamError(f"upstream sent arguments for '{name}' that are not a JSON object")
    return {"functionCall": {"id": call_id, "name": name, "args": args}}


class GeminiStreamEncoder:
    """Gateway stream events → partial GenerateContentResponses.

    Text and reasoning deltas are sent as they come; a function call is held until its block
    stops (Gemini sends calls whole). The finish waits for the usage that usually follows it:
    the last chunk carries finishReason and usageMetadata, from :meth:`finish` at the latest.
    """

    def __init__(self, model: str) -> None:
        self._id = ""
        self._model = model
        self._calls: dict[int, list[str]] = {}  # block index → [id, name, arguments so far]
        self._signature: str | None = None
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._done = False

    def encode(self, event: StreamEvent) -> list[Payload]:
        """The chunks ``event`` completes (often one, often none)."""
        if isinstance(event, StreamStart):
            self._id, self._model = event.id, event.model or self._model
        elif isinstance(event, TextDelta) and event.text:
            return [self._chunk([{"text": event.text}])]
        elif isinstance(event, ReasoningDelta):
            return self._reasoning(event)
        elif isinstance(event, ToolCallStart):
            self._calls[event.index] = [event.id, event.name, ""]
        elif isinstance(event, ToolCallDelta):
            self._calls[event.index][2] += event.arguments
        elif isinstance(event, BlockStop) and event.index in self._calls:
            return [self._chunk([function_call_part(*self._calls.pop(event.index))])]
        elif isinstance(event, StreamFinish):
            self._finish = finish_reason_to_gemini(event.finish_reason, event.raw_finish_reason)
        elif isinstance(event, UsageUpdate):
            self._usage = event.usage
            if self._finish is not None:
                return self.finish()
        return []

    def finish(self) -> list[Payload]:
        """The last chunk (finishReason, usageMetadata), unless already sent."""
        if self._done or self._finish is None:
            return []
        self._done = True
        last = self._chunk([{"text": ""}] if self._signature else [])
        last["candidates"][0]["finishReason"] = self._finish
        if self._usage is not None:
            last["usageMetadata"] = usage_metadata(self._usage)
        return [last]

    def _reasoning(self, event: ReasoningDelta) -> list[Payload]:
        if not event.text:
            self._signature = event.signature or self._signature
            return []
        part: Payload = {"text": event.text, "thought": True}
        if event.signature:
            part["thoughtSignature"] = event.signature
        return [self._chunk([part])]

    def _chunk(self, parts: list[Payload]) -> Payload:
        if self._signature is not None and parts:
            parts[0]["thoughtSignature"] = self._signature
            self._signature = None
        candidate: Payload = {"content": {"role": "model", "parts": parts}, "index": 0}
        return {"candidates": [candidate], "modelVersion": self._model, "responseId": self._id}


# --- embeddings --------------------------------------------------------------------------------


class GeminiEmbeddingsClientCodec:
    """embedContent / batchEmbedContents bodies ↔ the gateway's embeddings."""

    def decode_embeddings(self, payload: Payload) -> EmbeddingRequest:
        """The texts of one embedContent body or of every request of a batch."""
        payload = normalize_request(payload)
        items = payload.get("requests", [payload])
        prefix = "requests[{}]." if "requests" in payload else ""
        inputs = [_embed_text(item, prefix.format(index)) for index, item in enumerate(items)]
        dimensions = {item.get("outputDimensionality") for item in items}
        if len(dimensions) > 1:
            raise UnsupportedParameter(
                "every request of a batch must ask for the same dimensionality",
                param="requests[].outputDimensionality",
            )
        return EmbeddingRequest(
            model=str(payload.get("model") or ""), inputs=inputs, dimensions=dimensions.pop()
        )

    def encode_embeddings(self, response: EmbeddingResponse, batch: bool = True) -> Payload:
        """``{"embeddings": [{"values"}…]}`` (batch), or ``{"embedding": {"values"}}`` (one)."""
        if batch:
            return {"embeddings": [{"values": vector} for vector in response.vectors]}
        return {"embedding": {"values": response.vectors[0]}}


def _embed_text(item: dict[str, Any], prefix: str) -> str:
    texts = []
    for index, part in enumerate(item["content"]["parts"]):
        if set(part) != {"text"} or not isinstance(part["text"], str):
            name = f"{prefix}content.parts[{index}]"
            raise UnsupportedParameter("only text can be embedded by this model's provider", param=name)
        texts.append(part["text"])
    return "\n".join(texts)


# --- errors, models, token counts --------------------------------------------------------------

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_payload(error: OdockError) -> Payload:
    """The error in Google's shape, with Odock's code in an ErrorInfo (and a RetryInfo on waits)."""
    status = error.http_status
    info: Payload = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": error.code,
        "domain": "odock",
    }
    if error.param:
        info["metadata"] = {"param": error.param}
    details = [info]
    retry = {name.lower(): value for name, value in error.headers.items()}.get("retry-after")
    if retry is not None and retry.isdigit():
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry}s"})
    name = _STATUS_NAMES.get(status) or ("INVALID_ARGUMENT" if status < 500 else "INTERNAL")
    return {"error": {"code": status, "message": error.message, "status": name, "details": details}}


def models_page(models: list[tuple[str, str]]) -> Payload:
    """``GET /v1beta/models``: each (name, type) with the methods its type serves."""
    return {
        "models": [
            {
                "name": f"models/{name}",
                "displayName": name,
                "version": "odock",
                "supportedGenerationMethods": list(
                    EMBED_METHODS if kind == "embeddings" else GENERATE_METHODS
                ),
            }
            for name, kind in models
        ]
    }


def count_tokens_payload(total: int) -> Payload:
    """The answer of ``:countTokens``."""
    return {"totalTokens": total}


GEMINI_CLIENT = GeminiClientCodec()
GEMINI_EMBEDDINGS_CLIENT = GeminiEmbeddingsClientCodec()
