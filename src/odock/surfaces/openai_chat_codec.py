"""The client side of OpenAI Chat Completions and Embeddings: their bodies to and from the gateway's form.

Used when an OpenAI client's request goes to an upstream of another dialect (same-dialect traffic
passes through untouched). The body was already type-checked by
:func:`odock.surfaces.openai_chat.decode`; what remains to judge here is its content::

    decode_request   body → GenerationRequest
        system / developer messages    → request.system (text, or text parts)
        user content                   → Text and Image parts (data: URLs become inline images)
        assistant content, tool_calls  → Reasoning (reasoning_content), Text, ToolCall parts
        consecutive tool messages      → one ``tool`` Message of ToolResult parts
        sampling, tools, response_format, reasoning_effort → their request fields
        anything the gateway cannot carry (n > 1, logprobs, audio, …, unknown fields)
                                       → 400 unsupported_parameter naming the field
    encode_response  GenerationResponse → ``chat.completion``
    stream_encoder   StreamEvents → ``chat.completion.chunk`` payloads, then the usage chunk

A malformed part (a message whose content is neither text nor parts, a tool call without a
function) is a 400 ``invalid_request_body`` naming it.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from odock.errors import InvalidRequestBody, UnsupportedParameter
from odock.llm.codec import Payload
from odock.llm.types import (
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
    ToolChoiceMode,
    ToolResult,
    UsageUpdate,
)
from odock.llm.upstream import Usage

# Fields carried into the request, and stream_options (read by the surface, nothing to carry).
_CARRIED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
        "safety_identifier",
    }
)
# Fields the gateway cannot carry to another dialect, with the values that ask for nothing more
# than the default (those pass: n = 1 is every dialect's only choice).
_REFUSED_UNLESS: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (),
    "logit_bias": (),
    "audio": (),
    "modalities": (["text"],),
    "prediction": (),
    "web_search_options": (),
    "functions": (),
    "function_call": (),
    "service_tier": (),
    "store": (False,),
    "metadata": (),
    "prompt_cache_key": (),
    "verbosity": (),
}
_TOOL_CHOICE_MODES: dict[str, ToolChoiceMode] = {"none": "none", "auto": "auto", "required": "required"}
_FINISH_REASONS = {
    FinishReason.STOP: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.OTHER: "stop",  # OpenAI has no "other"; the raw value is the upstream's own
}
_DATA_URL_PREFIX = "data:"
_BASE64_MARK = ";base64,"


# --- request ---------------------------------------------------------------------------------


def check_carried(
    payload: Mapping[str, Any], carried: frozenset[str], harmless: Mapping[str, tuple[Any, ...]]
) -> None:
    """Refuse every field outside ``carried`` unless it holds null or a ``harmless`` value."""
    for name, value in payload.items():
        if name in carried or value is None or value in harmless.get(name, ()):
            continue
        raise UnsupportedParameter(f"field '{name}' cannot be sent to this model's provider", param=name)


def decode_chat_request(payload: Payload) -> GenerationRequest:
    """The chat body as a :class:`GenerationRequest`."""
    check_carried(payload, _CARRIED_FIELDS, _REFUSED_UNLESS)
    system, messages = _decode_messages(payload["messages"])
    return GenerationRequest(
        model=payload["model"],
        messages=messages,
        system=system,
        tools=_decode_tools(payload.get("tools") or []),
        tool_choice=_decode_tool_choice(payload.get("tool_choice")),
        parallel_tool_calls=payload.get("parallel_tool_calls"),
        max_tokens=_first_set(payload, "max_completion_tokens", "max_tokens"),
        temperature=payload.get("temperature"),
        top_p=payload.get("top_p"),
        stop=_decode_stop(payload.get("stop")),
        seed=payload.get("seed"),
        presence_penalty=payload.get("presence_penalty"),
        frequency_penalty=payload.get("frequency_penalty"),
        response_format=_decode_response_format(payload.get("response_format")),
        reasoning=_decode_reasoning_effort(payload.get("reasoning_effort")),
        stream=payload.get("stream") is True,
        user=_first_set(payload, "safety_identifier", "user"),
    )


def _first_set(payload: Mapping[str, Any], *names: str) -> Any:
    return next((payload[name] for name in names if payload.get(name) is not None), None)


def _decode_messages(raw: list[dict[str, Any]]) -> tuple[list[Text], list[Message]]:
    """System text apart, and the turns; consecutive tool messages become one ``tool`` turn."""
    system: list[Text] = []
    messages: list[Message] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        role = message["role"]
        if role not in _MESSAGE_FIELDS:
            raise UnsupportedParameter(f"{where}: role '{role}' is not supported", param=f"{where}.role")
        _check_message_fields(message, where)
        if role in ("system", "developer"):
            system.extend(_text_parts(message.get("content"), where))
            continue
        turn = _MESSAGE_DECODERS[role](message, where)
        if turn.role == "tool" and messages and messages[-1].role == "tool":
            messages[-1].parts.extend(turn.parts)
        else:
            messages.append(turn)
    return system, messages


# role → the fields its message may carry (``name`` has nowhere to go in other dialects)
_MESSAGE_FIELDS = {
    "system": frozenset({"role", "content"}),
    "developer": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "refusal", "tool_calls", "reasoning_content", "reasoning"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}


def _check_message_fields(message: Mapping[str, Any], where: str) -> None:
    allowed = _MESSAGE_FIELDS[message["role"]]
    for name, value in message.items():
        if name not in allowed and value is not None:
            raise UnsupportedParameter(
                f"{where}.{name} cannot be sent to this model's provider", param=f"{where}.{name}"
            )


def _decode_user(message: Mapping[str, Any], where: str) -> Message:
    content = message.get("content")
    if isinstance(content, str):
        return Message("user", [Text(content)])
    parts: list[Part] = [
        _decode_user_part(part, f"{where}.content[{j}]") for j, part in enumerate(_parts(content, where))
    ]
    return Message("user", parts)


def _decode_user_part(part: Mapping[str, Any], where: str) -> Text | Image:
    kind = part.get("type")
    if kind == "text":
        return Text(_string(part.get("text"), f"{where}.text"))
    if kind == "image_url":
        return _decode_image(part.get("image_url"), f"{where}.image_url")
    raise UnsupportedParameter(
        f"{where}: content of type '{kind}' cannot be sent to this model's provider", param=where
    )


def _decode_image(image: Any, where: str) -> Image:
    if not isinstance(image, dict):
        raise InvalidRequestBody(f"{where} must be an object", param=where)
    url = _string(image.get("url"), f"{where}.url")
    detail = image.get("detail")
    if url.startswith(_DATA_URL_PREFIX) and _BASE64_MARK in url:
        media_type, data = url[len(_DATA_URL_PREFIX) :].split(_BASE64_MARK, 1)
        return Image(data=data, media_type=media_type, detail=detail)
    return Image(url=url, detail=detail)


def _decode_assistant(message: Mapping[str, Any], where: str) -> Message:
    parts: list[Part] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        parts.append(Reasoning(_string(reasoning, f"{where}.reasoning_content")))
    content = message.get("content")
    if isinstance(content, str):
        parts.extend([Text(content)] if content else [])
    elif content is not None:
        parts.extend(
            _assistant_part(part, f"{where}.content[{j}]") for j, part in enumerate(_parts(content, where))
        )
    if message.get("refusal"):
        parts.append(Text(_string(message["refusal"], f"{where}.refusal")))
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise InvalidRequestBody(f"{where}.tool_calls must be an array", param=f"{where}.tool_calls")
    parts.extend(_decode_tool_call(call, f"{where}.tool_calls[{k}]") for k, call in enumerate(calls))
    return Message("assistant", parts)


def _assistant_part(part: Mapping[str, Any], where: str) -> Text:
    kind = part.get("type")
    if kind in ("text", "refusal"):
        return Text(_string(part.get(kind), f"{where}.{kind}"))
    raise UnsupportedParameter(
        f"{where}: content of type '{kind}' cannot be sent to this model's provider", param=where
    )


def _decode_tool_call(call: Any, where: str) -> ToolCall:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise InvalidRequestBody(f"{where} must be an object with a 'function'", param=where)
    if call.get("type", "function") != "function":
        raise UnsupportedParameter(f"{where}: only function tool calls can be sent", param=f"{where}.type")
    function = call["function"]
    return ToolCall(
        id=_string(call.get("id"), f"{where}.id"),
        name=_string(function.get("name"), f"{where}.function.name"),
        arguments=_string(function.get("arguments"), f"{where}.function.arguments") or "{}",
    )


def _decode_tool_message(message: Mapping[str, Any], where: str) -> Message:
    call_id = _string(message.get("tool_call_id"), f"{where}.tool_call_id")
    content: list[Text | Image] = list(_text_parts(message.get("content"), where))
    return Message("tool", [ToolResult(tool_call_id=call_id, content=content)])


_MESSAGE_DECODERS: dict[str, Callable[[Mapping[str, Any], str], Message]] = {
    "user": _decode_user,
    "assistant": _decode_assistant,
    "tool": _decode_tool_message,
}


def _text_parts(content: Any, where: str) -> list[Text]:
    """Content that may only be text: a string, or text parts."""
    if isinstance(content, str):
        return [Text(content)]
    texts = []
    for j, part in enumerate(_parts(content, where)):
        if part.get("type") != "text":
            raise UnsupportedParameter(
                f"{where}.content[{j}]: only text can be sent in this message", param=f"{where}.content[{j}]"
            )
        texts.append(Text(_string(part.get("text"), f"{where}.content[{j}].text")))
    return texts


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        raise InvalidRequestBody(
            f"{where}.content must be a string or an array of parts", param=f"{where}.content"
        )
    return content


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestBody(f"{where} must be a string", param=where)
    return value


def _decode_tools(raw: list[Any]) -> list[Tool]:
    tools = []
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidRequestBody(f"{where} must be an object", param=where)
        if tool.get("type") != "function":
            raise UnsupportedParameter(f"{where}: only function tools can be sent", param=f"{where}.type")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise InvalidRequestBody(f"{where}.function must be an object", param=f"{where}.function")
        tools.append(
            Tool(
                name=_string(function.get("name"), f"{where}.function.name"),
                description=function.get("description"),
                parameters=function.get("parameters"),
                strict=function.get("strict"),
            )
        )
    return tools


def _decode_tool_choice(choice: str | dict[str, Any] | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_CHOICE_MODES:
        return ToolChoice(mode=_TOOL_CHOICE_MODES[choice])
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(function, dict):
        return ToolChoice(mode="tool", name=_string(function.get("name"), "tool_choice.function.name"))
    raise UnsupportedParameter(
        "this tool_choice cannot be sent to this model's provider", param="tool_choice"
    )


def _decode_stop(stop: str | list[Any] | None) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return [_string(item, f"stop[{index}]") for index, item in enumerate(stop)]


def _decode_response_format(raw: dict[str, Any] | None) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = raw.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    spec = raw.get("json_schema")
    if kind != "json_schema" or not isinstance(spec, dict):
        raise UnsupportedParameter(
            f"response_format of type '{kind}' cannot be sent", param="response_format"
        )
    if spec.get("description") is not None:
        message = "response_format.json_schema.description cannot be sent to this model's provider"
        raise UnsupportedParameter(message, param="response_format.json_schema.description")
    return ResponseFormat(
        type="json_schema", schema=spec.get("schema"), name=spec.get("name"), strict=spec.get("strict")
    )


def _decode_reasoning_effort(effort: str | None) -> ReasoningConfig | None:
    """``none`` turns reasoning off; any other effort is carried as is."""
    if effort is None:
        return None
    return ReasoningConfig(effort=effort, enabled=effort != "none")


# --- response --------------------------------------------------------------------------------


def chat_completion_id(response_id: str) -> str:
    """The ``chatcmpl-`` id OpenAI clients expect, made from the upstream's id."""
    return response_id if response_id.startswith("chatcmpl-") else f"chatcmpl-{response_id}"


def encode_chat_response(response: GenerationResponse) -> Payload:
    """A ``chat.completion`` with one choice."""
    return {
        "id": chat_completion_id(response.id),
        "object": "chat.completion",
        "created": response.created or int(time.time()),
        "model": response.model,
        "choices": [
            {
                "index": 0,
                "message": _assistant_message(response.parts),
                "finish_reason": _FINISH_REASONS[response.finish_reason],
                "logprobs": None,
            }
        ],
        "usage": encode_usage(response.usage),
    }


def _assistant_message(parts: list[Part]) -> Payload:
    texts = [part.text for part in parts if isinstance(part, Text)]
    reasoning = [part.text for part in parts if isinstance(part, Reasoning) and part.text]
    calls = [part for part in parts if isinstance(part, ToolCall)]
    message: Payload = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = [_tool_call(call) for call in calls]
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return message


def _tool_call(call: ToolCall) -> Payload:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def encode_usage(usage: Usage) -> Payload:
    """An OpenAI ``usage`` object (cached and reasoning tokens in their details)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


# --- stream ----------------------------------------------------------------------------------


class ChatChunkEncoder:
    """Gateway stream events → ``chat.completion.chunk`` payloads of one stream.

    OpenAI chunks have no blocks: text and reasoning deltas go to ``delta.content`` and
    ``delta.reasoning_content``, and each tool-call block gets the next tool-call ordinal
    (``tool_calls[].index``). The usage chunk (``choices: []``) is owed by :meth:`finish`.
    Reasoning signatures and redacted reasoning have no place in a chunk and are not sent.
    """

    def __init__(self, request: GenerationRequest) -> None:
        self._head: Payload = {
            "id": "",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.model,
        }
        self._tool_ordinals: dict[int, int] = {}  # block index → tool_calls[].index
        self._usage: Usage | None = None

    def encode(self, event: StreamEvent) -> list[Payload]:
        """The chunks for ``event`` (none for block boundaries and usage)."""
        match event:
            case StreamStart():
                self._head["id"] = chat_completion_id(event.id)
                self._head["model"] = event.model
                self._head["created"] = event.created or self._head["created"]
                return [self._chunk({"role": "assistant", "content": ""})]
            case TextDelta():
                return [self._chunk({"content": event.text})]
            case ReasoningDelta() if event.text:
                return [self._chunk({"reasoning_content": event.text})]
            case ToolCallStart():
                ordinal = self._tool_ordinals.setdefault(event.index, len(self._tool_ordinals))
                call = {"index": ordinal, "id": event.id, "type": "function"}
                return [
                    self._chunk({"tool_calls": [{**call, "function": {"name": event.name, "arguments": ""}}]})
                ]
            case ToolCallDelta():
                call = {"index": self._tool_ordinals[event.index], "function": {"arguments": event.arguments}}
                return [self._chunk({"tool_calls": [call]})]
            case StreamFinish():
                return [self._chunk({}, _FINISH_REASONS[event.finish_reason])]
            case UsageUpdate():
                self._usage = event.usage
        return []

    def finish(self) -> list[Payload]:
        """The usage chunk, when the upstream reported usage."""
        if self._usage is None:
            return []
        return [{**self._head, "choices": [], "usage": encode_usage(self._usage)}]

    def _chunk(self, delta: Payload, finish_reason: str | None = None) -> Payload:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head, "choices": [choice]}


class OpenAIChatClientCodec:
    """The client side of Chat Completions (a :class:`odock.llm.codec.ClientCodec`)."""

    def decode_request(self, payload: Payload) -> GenerationRequest:
        """See :func:`decode_chat_request`."""
        return decode_chat_request(payload)

    def encode_response(self, response: GenerationResponse) -> Payload:
        """See :func:`encode_chat_response`."""
        return encode_chat_response(response)

    def stream_encoder(self, request: GenerationRequest) -> ChatChunkEncoder:
        """A fresh :class:`ChatChunkEncoder`."""
        return ChatChunkEncoder(request)


# --- embeddings ------------------------------------------------------------------------------

_EMBEDDING_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
_ENCODING_FORMATS = ("float", "base64")


class OpenAIEmbeddingsClientCodec:
    """The client side of OpenAI Embeddings (a :class:`odock.llm.codec.EmbeddingClientCodec`)."""

    def decode_embeddings(self, payload: Payload) -> EmbeddingRequest:
        """The texts to embed; token arrays and unknown fields are refused."""
        check_carried(payload, _EMBEDDING_FIELDS, {})
        encoding = payload.get("encoding_format")
        if encoding is not None and encoding not in _ENCODING_FORMATS:
            raise InvalidRequestBody(
                "field 'encoding_format' must be float or base64", param="encoding_format"
            )
        raw = payload["input"]
        inputs = [raw] if isinstance(raw, str) else raw
        if not all(isinstance(item, str) for item in inputs):
            raise UnsupportedParameter("token arrays cannot be sent to this model's provider", param="input")
        return EmbeddingRequest(
            model=payload["model"],
            inputs=inputs,
            dimensions=payload.get("dimensions"),
            user=payload.get("user"),
        )

    def encode_embeddings(self, response: EmbeddingResponse, encoding_format: str = "float") -> Payload:
        """A ``list`` of embeddings, as floats or (``base64``) little-endian float32 bytes."""
        encode: Callable[[list[float]], str | list[float]] = (
            _base64_vector if encoding_format == "base64" else list
        )
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": encode(vector)}
                for index, vector in enumerate(response.vectors)
            ],
            "model": response.model,
            "usage": {
                "prompt_tokens": response.usage.prompt_tokens,
                "total_tokens": response.usage.total_tokens or response.usage.prompt_tokens,
            },
        }


def _base64_vector(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


OPENAI_CHAT_CLIENT = OpenAIChatClientCodec()
OPENAI_EMBEDDINGS_CLIENT = OpenAIEmbeddingsClientCodec()
