"""What a dialect's codec provides: the protocols translation is written against.

A *dialect* is one wire API (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages,
Gemini). Its codec has two sides, each written once:

    client side    (the surface of the dialect: a client speaks it to the gateway)
        decode_request   payload → GenerationRequest      (400 unsupported_parameter if it can't)
        encode_response  GenerationResponse → payload
        stream_encoder   StreamEvents → the dialect's stream events (payload dicts)
    upstream side  (the adapter of the dialect: the gateway speaks it to a provider)
        encode_request   GenerationRequest → payload      (400 unsupported_parameter if it can't)
        decode_response  payload → GenerationResponse
        stream_decoder   the dialect's stream events → StreamEvents

A translated request is ``upstream.encode_request(client.decode_request(body))``; its answer is
``client.encode_response(upstream.decode_response(answer))``, and a stream runs every upstream
event through ``stream_decoder().decode`` and every resulting event through
``stream_encoder().encode``. Framing the events on the wire (SSE ``event:`` lines, ``[DONE]``, a
JSON array) is the surface's job, not the codec's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from odock.llm.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    GenerationRequest,
    GenerationResponse,
    StreamEvent,
)

Payload = dict[str, Any]


class Dialect(enum.StrEnum):
    """The wire APIs the gateway speaks, to clients and to upstreams."""

    OPENAI_CHAT = "openai_chat"  # Chat Completions and Embeddings (OpenAI and compatible servers)
    OPENAI_RESPONSES = "openai_responses"
    ANTHROPIC = "anthropic"  # Messages
    GEMINI = "gemini"  # generateContent, embedContent
    UNIFIED = "unified"  # Odock's /v1/llm/chat (clients only; always translated)


class StreamEncoder(Protocol):
    """Turns gateway stream events into one client dialect's events (stateful, one per stream)."""

    def encode(self, event: StreamEvent) -> list[Payload]:
        """The dialect's events for ``event`` (often one, sometimes none or several)."""

    def finish(self) -> list[Payload]:
        """Events still owed once the upstream stream ended (e.g. a final usage event)."""


class StreamDecoder(Protocol):
    """Turns one upstream dialect's stream events into gateway events (stateful, one per stream)."""

    def decode(self, event: Payload) -> list[StreamEvent]:
        """The gateway events carried by one upstream event (raise UpstreamError for an error event)."""

    def finish(self) -> list[StreamEvent]:
        """Events implied by the end of the upstream stream (e.g. closing open blocks)."""


class ClientCodec(Protocol):
    """The client side of a dialect."""

    def decode_request(self, payload: Payload) -> GenerationRequest:
        """The request in the gateway's form; refuse what cannot be carried (unsupported_parameter)."""

    def encode_response(self, response: GenerationResponse) -> Payload:
        """The answer in the dialect's shape."""

    def stream_encoder(self, request: GenerationRequest) -> StreamEncoder:
        """A fresh encoder for one stream answering ``request``."""


class UpstreamCodec(Protocol):
    """The upstream side of a dialect."""

    def encode_request(self, request: GenerationRequest, model: str, *, stream: bool) -> Payload:
        """The vendor payload for ``request`` sent to the upstream model id ``model``."""

    def decode_response(self, payload: Payload) -> GenerationResponse:
        """The vendor's answer in the gateway's form."""

    def stream_decoder(self) -> StreamDecoder:
        """A fresh decoder for one upstream stream."""


class EmbeddingClientCodec(Protocol):
    """The client side of a dialect's embeddings API."""

    def decode_embeddings(self, payload: Payload) -> EmbeddingRequest:
        """The texts to embed."""

    def encode_embeddings(self, response: EmbeddingResponse) -> Payload:
        """The vectors in the dialect's shape."""


class EmbeddingUpstreamCodec(Protocol):
    """The upstream side of a dialect's embeddings API."""

    def encode_embeddings_request(self, request: EmbeddingRequest, model: str) -> Payload:
        """The vendor payload for ``request``."""

    def decode_embeddings_response(self, payload: Payload) -> EmbeddingResponse:
        """The vendor's vectors in the gateway's form."""


@dataclass(frozen=True)
class UpstreamCodecs:
    """The upstream side of one dialect: how translated generations and embeddings are sent."""

    generation: UpstreamCodec
    embeddings: EmbeddingUpstreamCodec | None = None
