"""Every surface the gateway serves, and the route table of model calls built from them.

Adding a client dialect is writing its surface module (checks, estimates, a client codec, its
error shape) and one :class:`~odock.surfaces.surface.Surface` entry here with its routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from odock import estimate
from odock.errors import OdockError
from odock.llm.codec import Dialect
from odock.llm.types import EmbeddingResponse, GenerationRequest, GenerationResponse
from odock.llm.upstream import Endpoint
from odock.surfaces import anthropic_messages, gemini, openai_chat, openai_responses, unified
from odock.surfaces.framing import CrlfDataEvents, Framer, JsonArray, NamedEvents
from odock.surfaces.openai_chat_codec import OPENAI_CHAT_CLIENT, OPENAI_EMBEDDINGS_CLIENT
from odock.surfaces.surface import Decoded, Params, Payload, Surface

NO_PARAMS: Params = {}


# --- OpenAI ----------------------------------------------------------------------------------


def _openai_embeddings(payload: Payload, response: EmbeddingResponse) -> Payload:
    return OPENAI_EMBEDDINGS_CLIENT.encode_embeddings(response, payload.get("encoding_format") or "float")


OPENAI_CHAT = Surface(
    name="openai_chat",
    dialect=Dialect.OPENAI_CHAT,
    endpoint=Endpoint.CHAT,
    decode=openai_chat.decode_chat,
    estimate_input=openai_chat.chat_input_tokens,
    asked_max_tokens=openai_chat.asked_max_tokens,
    client=OPENAI_CHAT_CLIENT,
    passthrough=openai_chat.with_usage,
)
OPENAI_EMBEDDINGS = Surface(
    name="openai_embeddings",
    dialect=Dialect.OPENAI_CHAT,
    endpoint=Endpoint.EMBEDDINGS,
    decode=openai_chat.decode_embeddings,
    estimate_input=openai_chat.embeddings_input_tokens,
    asked_max_tokens=openai_chat.no_output,
    embeddings_client=OPENAI_EMBEDDINGS_CLIENT,
    render_embeddings=_openai_embeddings,
)


def _decode_responses(data: Payload, params: Params) -> Decoded:
    openai_responses.check_request(data)
    return Decoded(data, stream=openai_responses.stream_requested(data))


def _render_response(request: GenerationRequest, response: GenerationResponse, provider: str) -> Payload:
    return openai_responses.RESPONSES_CLIENT.encode_answer(request, response)


def _responses_stream_error(error: OdockError) -> Payload:
    return {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "param": error.param,
        "sequence_number": 0,  # the gateway's own event: it does not know the upstream's count
    }


OPENAI_RESPONSES = Surface(
    name="openai_responses",
    dialect=Dialect.OPENAI_RESPONSES,
    endpoint=Endpoint.RESPONSES,
    decode=_decode_responses,
    estimate_input=openai_responses.estimate_input_tokens,
    asked_max_tokens=openai_responses.asked_max_tokens,
    client=openai_responses.RESPONSES_CLIENT,
    render=_render_response,
    field_names={
        "messages": "input",
        "max_tokens": "max_output_tokens",
        "reasoning_effort": "reasoning.effort",
        "response_format": "text.format",
    },
    framer=lambda params: NamedEvents(),
    stream_error=_responses_stream_error,
    upstream_endpoint=Endpoint.RESPONSES,
)


# --- Anthropic ---------------------------------------------------------------------------------


def _decode_messages(data: Payload, params: Params) -> Decoded:
    anthropic_messages.check_request(data)
    return Decoded(data, stream=data.get("stream") is True)


ANTHROPIC_MESSAGES = Surface(
    name="anthropic_messages",
    dialect=Dialect.ANTHROPIC,
    endpoint=Endpoint.CHAT,
    decode=_decode_messages,
    estimate_input=anthropic_messages.estimate_input_tokens,
    asked_max_tokens=anthropic_messages.asked_max_tokens,
    client=anthropic_messages.ANTHROPIC_CLIENT,
    field_names={
        "user": "metadata.user_id",
        "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
        "reasoning_effort": "thinking",
        "response_format": "output_config.format",
        "stop": "stop_sequences",
    },
    framer=lambda params: NamedEvents(),
    error_payload=anthropic_messages.error_payload,
)


# --- Odock's unified endpoint ------------------------------------------------------------------


def _decode_unified(data: Payload, params: Params) -> Decoded:
    checked = unified.check_request(data)
    return Decoded(data, stream=checked.stream, include_usage=checked.include_usage)


# The unified endpoint names providers as its ``provider`` field does ("gemini" for GOOGLE).
_UNIFIED_NAMES = {kind.lower(): name for name, kind in unified.PROVIDERS.items()}


def _render_unified(request: GenerationRequest, response: GenerationResponse, provider: str) -> Payload:
    return unified.UNIFIED_CLIENT.encode_response(response, provider=_UNIFIED_NAMES.get(provider, provider))


def _unified_accepts(payload: Mapping[str, Any], provider_type: str) -> bool:
    return unified.provider_matches(payload.get("provider"), provider_type)


UNIFIED = Surface(
    name="unified",
    dialect=Dialect.UNIFIED,
    endpoint=Endpoint.CHAT,
    decode=_decode_unified,
    estimate_input=openai_chat.chat_input_tokens,
    asked_max_tokens=openai_chat.asked_max_tokens,
    client=unified.UNIFIED_CLIENT,
    render=_render_unified,
    accepts_provider=_unified_accepts,
)


# --- Gemini ------------------------------------------------------------------------------------


def _gemini_body(data: Payload, params: Params, *, stream: bool = False) -> Payload:
    """The body with the model named in the URL (and, for streams, the stream flag) in it."""
    body = gemini.normalize_request(data)
    body["model"] = params.get("model", "")
    if stream:
        body["stream"] = True
    return body


def _decode_generate(data: Payload, params: Params) -> Decoded:
    gemini.check_generate_request(data)
    return Decoded(_gemini_body(data, params))


def _decode_stream_generate(data: Payload, params: Params) -> Decoded:
    gemini.check_generate_request(data)
    return Decoded(_gemini_body(data, params, stream=True), stream=True)


def _decode_embed(data: Payload, params: Params) -> Decoded:
    gemini.check_embed_request(data)
    return Decoded(_gemini_body(data, params))


def _decode_batch_embed(data: Payload, params: Params) -> Decoded:
    gemini.check_batch_embed_request(data)
    return Decoded(_gemini_body(data, params))


def _gemini_passthrough(payload: Payload, model: str, stream: bool) -> Payload:
    """The client's body as sent (the model travels in the upstream's URL)."""
    return {key: value for key, value in payload.items() if key not in ("model", "stream")}


def _gemini_framer(params: Params) -> Framer:
    return CrlfDataEvents() if params.get("alt") == "sse" else JsonArray()


def _gemini_embedding(payload: Payload, response: EmbeddingResponse) -> Payload:
    return gemini.GEMINI_EMBEDDINGS_CLIENT.encode_embeddings(response, batch="requests" in payload)


def _gemini_embed_input(data: Mapping[str, Any]) -> int:
    """Estimated tokens of the texts of an embedContent body or of every request of a batch."""
    items = data.get("requests") or [data]
    texts = [
        part.get("text")
        for item in items
        if isinstance(item, dict) and isinstance(item.get("content"), dict)
        for part in item["content"].get("parts") or []
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]
    return estimate.input_tokens(texts)


_GEMINI_FIELDS = {
    "messages": "contents",
    "seed": "generationConfig.seed",
    "presence_penalty": "generationConfig.presencePenalty",
    "frequency_penalty": "generationConfig.frequencyPenalty",
    "top_k": "generationConfig.topK",
    "temperature": "generationConfig.temperature",
    "top_p": "generationConfig.topP",
    "stop": "generationConfig.stopSequences",
    "response_format": "generationConfig.responseMimeType",
    "reasoning_effort": "generationConfig.thinkingConfig",
    "tool_choice": "toolConfig",
}


def _gemini_surface(name: str, decode: Callable[[Payload, Params], Decoded], **fields: Any) -> Surface:
    """A surface of Gemini's API: Google's errors and field names, bodies passed through as sent."""
    return Surface(
        name=name,
        dialect=Dialect.GEMINI,
        decode=decode,
        error_payload=gemini.error_payload,
        passthrough=_gemini_passthrough,
        field_names=_GEMINI_FIELDS,
        **fields,
    )


_GENERATE = {
    "endpoint": Endpoint.CHAT,
    "estimate_input": gemini.estimate_input_tokens,
    "asked_max_tokens": gemini.asked_max_tokens,
    "client": gemini.GEMINI_CLIENT,
}
_EMBED = {
    "endpoint": Endpoint.EMBEDDINGS,
    "estimate_input": _gemini_embed_input,
    "asked_max_tokens": openai_chat.no_output,
    "embeddings_client": gemini.GEMINI_EMBEDDINGS_CLIENT,
    "render_embeddings": _gemini_embedding,
}
GEMINI_GENERATE = _gemini_surface("gemini_generate", _decode_generate, **_GENERATE)
GEMINI_STREAM = _gemini_surface("gemini_stream", _decode_stream_generate, framer=_gemini_framer, **_GENERATE)
GEMINI_EMBED = _gemini_surface("gemini_embed", _decode_embed, **_EMBED)
GEMINI_BATCH_EMBED = _gemini_surface("gemini_batch_embed", _decode_batch_embed, **_EMBED)
GEMINI_METHODS = {
    "generateContent": GEMINI_GENERATE,
    "streamGenerateContent": GEMINI_STREAM,
    "embedContent": GEMINI_EMBED,
    "batchEmbedContents": GEMINI_BATCH_EMBED,
}
GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/")


# --- the route table -----------------------------------------------------------------------------

# Model calls by exact path (POST).
MODEL_CALLS: dict[str, Surface] = {
    "/v1/chat/completions": OPENAI_CHAT,
    "/v1/embeddings": OPENAI_EMBEDDINGS,
    "/v1/responses": OPENAI_RESPONSES,
    "/v1/messages": ANTHROPIC_MESSAGES,
    "/v1/llm/chat": UNIFIED,
}
SURFACES: dict[str, Surface] = {s.name: s for s in (*MODEL_CALLS.values(), *GEMINI_METHODS.values())}


def model_call_route(path: str) -> tuple[Surface, Params] | None:
    """The surface serving model calls on ``path``, with the route's parameters; None if none does."""
    surface = MODEL_CALLS.get(path)
    if surface is not None:
        return surface, NO_PARAMS
    model, method = gemini_route(path)
    if model and method in GEMINI_METHODS:
        return GEMINI_METHODS[method], {"model": model}
    return None


def gemini_route(path: str) -> tuple[str | None, str | None]:
    """``/v1beta/models/{model}:{method}`` (or under ``/v1``) → (model, method); else (None, None)."""
    for prefix in GEMINI_PREFIXES:
        if path.startswith(prefix):
            model, colon, method = path[len(prefix) :].rpartition(":")
            if colon and model:
                return model, method
    return None, None
