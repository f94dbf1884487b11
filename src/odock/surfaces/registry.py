"""Every surface the gateway serves, by name; the web layer's route table is built from these."""

from __future__ import annotations

from odock.llm.codec import Dialect
from odock.llm.upstream import Endpoint
from odock.surfaces import openai_chat
from odock.surfaces.surface import Params, Surface

NO_PARAMS: Params = {}

OPENAI_CHAT = Surface(
    name="openai_chat",
    dialect=Dialect.OPENAI_CHAT,
    endpoint=Endpoint.CHAT,
    decode=openai_chat.decode_chat,
    estimate_input=openai_chat.chat_input_tokens,
    asked_max_tokens=openai_chat.asked_max_tokens,
    passthrough=openai_chat.with_usage,
)
OPENAI_EMBEDDINGS = Surface(
    name="openai_embeddings",
    dialect=Dialect.OPENAI_CHAT,
    endpoint=Endpoint.EMBEDDINGS,
    decode=openai_chat.decode_embeddings,
    estimate_input=openai_chat.embeddings_input_tokens,
    asked_max_tokens=openai_chat.no_output,
)

SURFACES: dict[str, Surface] = {s.name: s for s in (OPENAI_CHAT, OPENAI_EMBEDDINGS)}

# Model calls by exact path (POST).
MODEL_CALLS: dict[str, Surface] = {
    "/v1/chat/completions": OPENAI_CHAT,
    "/v1/embeddings": OPENAI_EMBEDDINGS,
}


def model_call_route(path: str) -> tuple[Surface, Params] | None:
    """The surface serving model calls on ``path``, with the route's parameters; None if none does."""
    surface = MODEL_CALLS.get(path)
    return (surface, NO_PARAMS) if surface is not None else None
