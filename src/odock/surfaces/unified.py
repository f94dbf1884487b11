"""The unified Odock endpoint, ``POST /v1/llm/chat``: one OpenAI-style body for every provider.

The body is a Chat Completions body plus three fields of Odock's own (spec §1.1):

    provider        openai | anthropic | gemini | vllm | mistral | azure_openai | custom | mock:
                    pins the provider type; a model of another type is 400 provider_not_allowed
                    (the pipeline asks :func:`provider_matches` once the model is resolved)
    include_usage   ask for the usage chunk at the end of a stream (stream_options.include_usage)
    top_k           sampling, for the providers that have it (others refuse it)
    messages[i].content_blocks   the message's content parts, as ``content`` would hold them

Flow: :func:`check_request` validates the body (400 naming the field) and says what the surface
needs to know; :data:`UNIFIED_CLIENT` decodes it as the chat codec does and answers unary
requests with the normalised JSON below. Streams are OpenAI ``chat.completion.chunk`` events,
whatever the provider, so the stream encoder is the chat one::

    {"id", "provider", "model", "content", "stop_reason", "input_tokens", "output_tokens",
     "cached_tokens", "reasoning_tokens", "content_blocks": [{"type": "text"|"reasoning", …}],
     "tool_calls": [{"id", "name", "arguments"}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odock.errors import InvalidRequestBody
from odock.llm.codec import Payload
from odock.llm.types import GenerationRequest, GenerationResponse, Reasoning, Text, ToolCall
from odock.surfaces.openai_chat import (
    CHAT_FIELDS,
    MAX_TOKEN_COUNT,
    STREAM_OPTION_FIELDS,
    check_fields,
    check_integers,
)
from odock.surfaces.openai_chat_codec import ChatChunkEncoder, decode_chat_request

# provider field → the provider type it pins (the types of odock.providers.tables.ProviderType)
PROVIDERS = {
    "openai": "OPENAI",
    "anthropic": "ANTHROPIC",
    "gemini": "GOOGLE",
    "vllm": "VLLM",
    "mistral": "MISTRAL",
    "azure_openai": "AZURE_OPENAI",
    "custom": "CUSTOM",
    "mock": "MOCK",
}
UNIFIED_FIELDS: dict[str, tuple[type, ...]] = {
    **CHAT_FIELDS,
    "provider": (str,),
    "include_usage": (bool,),
    "top_k": (int,),
}
TOP_K_RANGE = (1, MAX_TOKEN_COUNT)
_UNIFIED_ONLY = frozenset({"provider", "include_usage", "top_k"})


@dataclass(frozen=True, slots=True)
class UnifiedRequest:
    """What the surface needs to know of a checked body."""

    provider: str | None  # the pinned provider field, lower case, or None
    stream: bool
    include_usage: bool  # top-level include_usage or stream_options.include_usage


def check_request(data: Mapping[str, Any]) -> UnifiedRequest:
    """Validate a unified body (400 invalid_request_body naming the field) and summarise it."""
    for name in ("model", "messages"):
        if data.get(name) is None:
            raise InvalidRequestBody(f"missing required field '{name}'", param=name)
    check_fields(data, UNIFIED_FIELDS)
    check_integers(data, UNIFIED_FIELDS)
    _check_top_k(data.get("top_k"))
    if not data["model"].strip():
        raise InvalidRequestBody("field 'model' must not be empty", param="model")
    _check_messages(data["messages"])
    provider = data.get("provider")
    if provider is not None and provider not in PROVIDERS:
        raise InvalidRequestBody(f"field 'provider' must be one of {', '.join(PROVIDERS)}", param="provider")
    options = data.get("stream_options") or {}
    check_fields(options, STREAM_OPTION_FIELDS, prefix="stream_options.")
    include_usage = data.get("include_usage") is True or options.get("include_usage") is True
    return UnifiedRequest(provider=provider, stream=data.get("stream") is True, include_usage=include_usage)


def _check_top_k(top_k: int | None) -> None:
    low, high = TOP_K_RANGE
    if top_k is not None and not low <= top_k <= high:
        raise InvalidRequestBody(f"field 'top_k' must be between {low} and {high}", param="top_k")


def _check_messages(messages: list[Any]) -> None:
    if not messages:
        raise InvalidRequestBody("field 'messages' must not be empty", param="messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequestBody(f"{where} must be an object with a string 'role'", param=where)
        blocks = message.get("content_blocks")
        if blocks is None:
            continue
        if not isinstance(blocks, list):
            raise InvalidRequestBody(
                f"{where}.content_blocks must be an array", param=f"{where}.content_blocks"
            )
        if message.get("content") is not None:
            raise InvalidRequestBody(
                f"{where} has both content and content_blocks: send one", param=f"{where}.content_blocks"
            )


def provider_matches(provider_field: str | None, provider_type: str) -> bool:
    """Whether a model of ``provider_type`` (``GOOGLE``, …) may answer a body pinned to ``provider_field``."""
    return provider_field is None or PROVIDERS.get(provider_field.lower()) == provider_type.upper()


def _as_chat_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """The body without Odock's fields, each message's content_blocks moved to its content."""
    body = {name: value for name, value in data.items() if name not in _UNIFIED_ONLY}
    body["messages"] = [_as_chat_message(message) for message in data["messages"]]
    return body


def _as_chat_message(message: Mapping[str, Any]) -> dict[str, Any]:
    chat = {name: value for name, value in message.items() if name != "content_blocks"}
    if message.get("content_blocks") is not None:
        chat["content"] = message["content_blocks"]
    return chat


class UnifiedClientCodec:
    """The client side of ``/v1/llm/chat`` (a :class:`odock.llm.codec.ClientCodec`)."""

    def decode_request(self, payload: Payload) -> GenerationRequest:
        """The chat decode of the body, plus ``top_k``; Odock's own fields are the surface's."""
        request = decode_chat_request(_as_chat_body(payload))
        request.top_k = payload.get("top_k")
        return request

    def encode_response(self, response: GenerationResponse, *, provider: str | None = None) -> Payload:
        """The normalised answer; ``provider`` is the model's provider type (sent in lower case)."""
        usage = response.usage
        return {
            "id": response.id,
            "provider": provider.lower() if provider else None,
            "model": response.model,
            "content": "".join(part.text for part in response.parts if isinstance(part, Text)),
            "stop_reason": response.raw_finish_reason or response.finish_reason.value,
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "content_blocks": [
                _content_block(part) for part in response.parts if isinstance(part, Text | Reasoning)
            ],
            "tool_calls": [
                {"id": part.id, "name": part.name, "arguments": part.arguments}
                for part in response.parts
                if isinstance(part, ToolCall)
            ],
        }

    def stream_encoder(self, request: GenerationRequest) -> ChatChunkEncoder:
        """The chat chunk encoder: unified streams are OpenAI chunks."""
        return ChatChunkEncoder(request)


def _content_block(part: Text | Reasoning) -> Payload:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    return {"type": "reasoning", "text": part.text}


UNIFIED_CLIENT = UnifiedClientCodec()
