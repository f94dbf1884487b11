"""A surface: one inbound API format, everything the gateway needs to serve a client speaking it.

The gateway routes a request to its surface; the pipeline then asks the surface, never the format
itself, how to decode the body, estimate its tokens, send it upstream and answer::

    decode            JSON body (+ route params) → Decoded (400 invalid_request_body naming the field)
    estimate_input    the prompt's estimated tokens (rate limits and budgets reserve on it)
    asked_max_tokens  the output limit the client set, if any
    passthrough       the body for an upstream that speaks the same dialect (model rewritten,
                      usage requested): its bytes are not decoded any further
    client            the dialect's codec: the body decoded into the gateway's own form, and
                      the answer encoded back, for an upstream that speaks another dialect
    error_payload     an Odock error in the dialect's error shape
    framer            how a streamed answer is framed on the wire

Surfaces work on plain data (they never see the pipeline's exchange), so the pipeline and the
stages can hold one without an import cycle. The web layer routes to them, never the other way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from odock.errors import OdockError
from odock.llm.codec import ClientCodec, Dialect, EmbeddingClientCodec
from odock.llm.types import EmbeddingResponse, GenerationRequest, GenerationResponse
from odock.llm.upstream import Endpoint
from odock.surfaces.framing import DataEvents, Framer

Payload = dict[str, Any]
Params = Mapping[str, str]  # the route's parameters: a model named in the path, the query string


@dataclass(slots=True)
class Decoded:
    """A request body after its surface checked it."""

    payload: Payload
    stream: bool = False
    include_usage: bool = False  # OpenAI chat: the client asked for the closing usage chunk
    extra_fields: tuple[str, ...] = ()  # fields the dialect does not define (see ResolveProvider)


def openai_error_payload(error: OdockError) -> Payload:
    """Odock's own error shape (also OpenAI's): ``{"error": {code, message, type, param}}``."""
    return error.payload()


def same_body(payload: Payload, model: str, stream: bool) -> Payload:
    """The client's body with the upstream's model id (what most same-dialect upstreams take)."""
    body = dict(payload)
    body["model"] = model
    return body


def data_events(params: Params) -> Framer:
    """OpenAI's stream framing: ``data:`` events ending with ``[DONE]``."""
    return DataEvents()


@dataclass(frozen=True, slots=True)
class Surface:
    """One inbound API format (see the module docstring)."""

    name: str  # stable: the dialect named on usage records
    dialect: Dialect
    endpoint: Endpoint  # which model types it serves: generations (CHAT, RESPONSES) or EMBEDDINGS
    decode: Callable[[Payload, Params], Decoded]
    estimate_input: Callable[[Mapping[str, Any]], int]
    asked_max_tokens: Callable[[Mapping[str, Any]], int | None]
    client: ClientCodec | None = None  # generations
    embeddings_client: EmbeddingClientCodec | None = None  # embeddings
    # Renders a translated answer from the request, the response and the provider's type, for
    # dialects whose answer repeats the request (Responses) or names the provider (unified).
    render: Callable[[GenerationRequest, GenerationResponse, str], Payload] | None = None
    # Whether a body may go to a provider of this type (unified's optional ``provider`` pin).
    accepts_provider: Callable[[Mapping[str, Any], str], bool] | None = None
    # Renders a translated embeddings answer from the client's body (OpenAI's encoding_format,
    # Gemini's single or batch shape); ``embeddings_client.encode_embeddings`` otherwise.
    render_embeddings: Callable[[Payload, EmbeddingResponse], Payload] | None = None
    # The dialect's name of each field of the gateway's request form, where it differs (so a
    # refusal from an upstream codec names the field as this dialect's client sent it).
    field_names: Mapping[str, str] = field(default_factory=dict)
    # The in-band error event of a stream that fails after it began, when not error_payload's.
    stream_error: Callable[[OdockError], Payload] | None = None
    framer: Callable[[Params], Framer] = data_events
    error_payload: Callable[[OdockError], Payload] = openai_error_payload
    passthrough: Callable[[Payload, str, bool], Payload] = same_body
    # The upstream operation of a same-dialect call, when not ``endpoint`` (Responses has its own).
    upstream_endpoint: Endpoint | None = None

    def error_body(self, error: OdockError) -> bytes:
        """``error`` rendered in this dialect."""
        return orjson.dumps(self.error_payload(error))
