"""Which model a key may call on an endpoint: the checks every path to a model shares (the
request path's ResolveModel, routing candidates, token counting)."""

from __future__ import annotations

from odock.errors import ModelDisabled, ModelNotAllowed, ModelNotFound, ModelTypeMismatch
from odock.keys.principal import KeyPrincipal
from odock.llm.upstream import Endpoint
from odock.providers.catalog import ModelCatalog, ResolvedModel

# The model types each endpoint serves; any other is refused before anything is reserved or sent.
GENERATION_MODEL_TYPES = frozenset({"chat", "reasoning"})
ENDPOINT_MODEL_TYPES = {
    Endpoint.CHAT: GENERATION_MODEL_TYPES,
    Endpoint.RESPONSES: GENERATION_MODEL_TYPES,
    Endpoint.EMBEDDINGS: frozenset({"embeddings"}),
}


async def callable_model(
    catalog: ModelCatalog, principal: KeyPrincipal, name: str, endpoint: Endpoint, route: str
) -> ResolvedModel:
    """The model ``name`` of the key's organisation, if the key may call it on ``endpoint`` (else 4xx)."""
    model = await catalog.model(principal.organisation_id, name)
    if model is None:
        raise ModelNotFound(f"model '{name}' does not exist", param="model")
    if not principal.may_call(model.id):
        raise ModelNotAllowed(f"this API key may not call model '{name}'", param="model")
    if not model.enabled:
        raise ModelDisabled(f"model '{name}' is disabled", param="model")
    if model.type not in ENDPOINT_MODEL_TYPES[endpoint]:
        raise ModelTypeMismatch(
            f"model '{name}' is a {model.type} model, which {route} does not serve", param="model"
        )
    return model
