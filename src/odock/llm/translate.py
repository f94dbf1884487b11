"""A request crossing dialects: the client's body in, the upstream's answer back in the client's shape.

``ResolveProvider`` builds a :class:`Translation` when the client's dialect is not one the
model's upstream speaks (see :mod:`odock.llm.codec`)::

    client body ──client.decode_request──► GenerationRequest ──upstream.encode_request──► upstream body
    upstream answer ──upstream.decode_response──► GenerationResponse ──client.encode_response──► client body
    upstream stream ──stream_decoder──► StreamEvents ──stream_encoder──► client events (TranslatedStream)

Embeddings take the same road through :class:`EmbeddingTranslation`. Usage is the one the
upstream adapter already read off its own answer, so metering never depends on a translation.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from odock.errors import UnsupportedParameter, UpstreamError
from odock.llm.codec import (
    ClientCodec,
    EmbeddingClientCodec,
    EmbeddingUpstreamCodec,
    Payload,
    StreamDecoder,
    StreamEncoder,
    UpstreamCodec,
)
from odock.llm.types import EmbeddingRequest, GenerationRequest, GenerationResponse, TextDelta
from odock.llm.upstream import StreamChunk, StreamResult, Usage


def upstream_json(body: bytes) -> Payload:
    """An upstream answer's JSON object (502 when it is anything else)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("upstream answered with a body that is not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError("upstream answered with JSON that is not an object")
    return data


@dataclass(slots=True)
class Translation:
    """A generation translated from the client's dialect to the upstream's and back."""

    client: ClientCodec
    upstream: UpstreamCodec
    request: GenerationRequest
    # Renders the decoded answer for the client; ``client.encode_response`` unless the surface
    # adds what only the gateway knows (the unified endpoint names the provider).
    render: Callable[[GenerationResponse], Payload] | None = None
    # The client's name of each request field (``seed`` → ``generationConfig.seed``), so an
    # upstream's refusal names the field as the client sent it.
    field_names: Mapping[str, str] = field(default_factory=dict)

    def upstream_payload(self, model: str, *, stream: bool) -> Payload:
        """The upstream's body for the request (400 unsupported_parameter naming the client's field)."""
        try:
            return self.upstream.encode_request(self.request, model, stream=stream)
        except UnsupportedParameter as refused:
            if refused.param is not None:
                refused.param = self.field_names.get(refused.param, refused.param)
            raise

    def answer(self, body: bytes) -> bytes:
        """The client's body for the upstream's unary answer ``body``."""
        response = self.upstream.decode_response(upstream_json(body))
        render = self.render or self.client.encode_response
        return orjson.dumps(render(response))

    def stream(self, inner: StreamResult) -> TranslatedStream:
        """The upstream stream ``inner``, re-encoded event by event for the client."""
        decoder = self.upstream.stream_decoder()
        return TranslatedStream(inner, decoder, self.client.stream_encoder(self.request))


@dataclass(slots=True)
class EmbeddingTranslation:
    """An embeddings request translated from the client's dialect to the upstream's and back."""

    client: EmbeddingClientCodec
    upstream: EmbeddingUpstreamCodec
    request: EmbeddingRequest
    render: Callable[[Any], Payload] | None = None

    def upstream_payload(self, model: str, *, stream: bool = False) -> Payload:
        """The upstream's body for the request."""
        return self.upstream.encode_embeddings_request(self.request, model)

    def answer(self, body: bytes) -> bytes:
        """The client's body for the upstream's answer ``body``."""
        response = self.upstream.decode_embeddings_response(upstream_json(body))
        render = self.render or self.client.encode_embeddings
        return orjson.dumps(render(response))


class TranslatedStream:
    """An upstream stream whose events are decoded and re-encoded in the client's dialect.

    Each upstream chunk becomes zero or more client chunks; the usage an upstream chunk carried
    rides on the next client chunk (or the last one), so the relay meters exactly what it would
    have metered untranslated.
    """

    def __init__(self, inner: StreamResult, decoder: StreamDecoder, encoder: StreamEncoder) -> None:
        self._inner = inner
        self._decoder = decoder
        self._encoder = encoder
        self._events: AsyncGenerator[StreamChunk, None] | None = None
        self.provider_request_id = inner.provider_request_id

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        self._events = self._chunks()
        return self._events

    async def _chunks(self) -> AsyncGenerator[StreamChunk, None]:
        usage: Usage | None = None
        async for chunk in self._inner:
            usage = chunk.usage or usage
            payloads: list[Payload] = []
            chars = 0
            for event in self._decoder.decode(upstream_json(chunk.data)):
                if isinstance(event, TextDelta):
                    chars += len(event.text)
                payloads += self._encoder.encode(event)
            for i, payload in enumerate(payloads):
                yield _chunk(payload, usage, chars if i == 0 else 0)
                usage = None
        payloads = [p for event in self._decoder.finish() for p in self._encoder.encode(event)]
        payloads += self._encoder.finish()
        for payload in payloads:
            yield _chunk(payload, usage, 0)
            usage = None

    async def aclose(self) -> None:
        """Stop re-encoding and release the upstream stream."""
        if self._events is not None:
            await self._events.aclose()
        await self._inner.aclose()


def _chunk(payload: Payload, usage: Usage | None, chars: int) -> StreamChunk:
    kind = payload.get("type")
    return StreamChunk(
        orjson.dumps(payload),
        usage=usage,
        # OpenAI chat's closing usage chunk, forwarded only to clients that asked for it.
        usage_only=payload.get("choices") == [] and "usage" in payload,
        text_chars=chars,
        event=kind if isinstance(kind, str) else None,
    )
