"""Stages that turn a model name into an upstream call, and make the call.

ResolveModel: find the model in the key's organisation, check the key's grant and that the
endpoint serves the model's type.
ResolveProvider: check the provider and its key, the endpoint family, and build the call (with the
provider key and header values decrypted by the vault, once per row version).
CallUpstream: send it through the provider's adapter.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from odock.errors import (
    InvalidRequestBody,
    ModelDisabled,
    ModelNotAllowed,
    ModelNotFound,
    ModelTypeMismatch,
    ProviderApiKeyNotConfigured,
    ProviderApiKeyRevoked,
    ProviderDisabled,
    ProviderNotAllowed,
    ProviderNotConfigured,
    ProviderTypeUnsupported,
)
from odock.pipeline import Exchange
from odock.providers.adapters.base import Adapter, Endpoint, UpstreamCall
from odock.providers.catalog import ModelCatalog
from odock.providers.provider_types import KEYLESS_TYPES, OPENAI_FAMILY
from odock.providers.vault import ProviderKeyVault

# Provider types whose servers accept vendor-specific request fields by default.
PERMISSIVE_TYPES = frozenset({"VLLM", "CUSTOM", "MOCK"})
# The model types each endpoint serves; any other is refused before anything is reserved or sent.
ENDPOINT_MODEL_TYPES = {
    Endpoint.CHAT: frozenset({"chat", "reasoning"}),
    Endpoint.EMBEDDINGS: frozenset({"embeddings"}),
}


class ResolveModel:
    """Sets ``ex.model``: the named model in the caller's organisation, which the key may call."""

    name = "resolve_model"

    def __init__(self, catalog: ModelCatalog) -> None:
        self._catalog = catalog

    async def before(self, ex: Exchange) -> None:
        """Look the model up and check the grant."""
        assert ex.principal is not None
        name = ex.payload["model"]
        model = await self._catalog.model(ex.principal.organisation_id, name)
        if model is None:
            raise ModelNotFound(f"model '{name}' does not exist", param="model")
        if not ex.principal.may_call(model.id):
            raise ModelNotAllowed(f"this API key may not call model '{name}'", param="model")
        if not model.enabled:
            raise ModelDisabled(f"model '{name}' is disabled", param="model")
        if model.type not in ENDPOINT_MODEL_TYPES[ex.endpoint]:
            raise ModelTypeMismatch(
                f"model '{name}' is a {model.type} model, which {ex.route} does not serve", param="model"
            )
        ex.model = model

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo."""


class ResolveProvider:
    """Sets ``ex.adapter`` and ``ex.call`` after checking the provider and its key."""

    name = "resolve_provider"

    def __init__(
        self, adapters: Mapping[str, Adapter], vault: ProviderKeyVault, default_timeout: float
    ) -> None:
        self._adapters = adapters
        self._vault = vault
        self._default_timeout = default_timeout

    async def before(self, ex: Exchange) -> None:
        """Check the provider chain and build the upstream call."""
        model = ex.model
        assert model is not None
        provider = model.provider
        if provider is None:
            raise ProviderNotConfigured(f"model '{model.name}' has no provider")
        if not provider.enabled:
            raise ProviderDisabled(f"provider '{provider.name}' is disabled")
        if provider.type not in OPENAI_FAMILY:
            raise ProviderNotAllowed(
                f"model '{model.name}' is served by a {provider.type} provider, "
                "which cannot be called through the OpenAI-compatible endpoint"
            )
        adapter = self._adapters.get(provider.type)
        if adapter is None:
            raise ProviderTypeUnsupported(f"provider type {provider.type} is not supported")
        _check_extra_fields(ex, provider.type, provider.config)
        api_key: str | None = None
        if model.provider_key is not None:
            if model.provider_key.revoked:
                raise ProviderApiKeyRevoked()
            api_key = self._vault.reveal(model.provider_key)
        elif provider.type not in KEYLESS_TYPES:
            raise ProviderApiKeyNotConfigured(f"model '{model.name}' has no provider API key")
        headers = self._vault.reveal_headers(provider)
        payload = dict(ex.payload)
        payload["model"] = model.slug
        if ex.stream:
            # Always ask for usage, so streamed requests are metered; stripped later if unasked.
            payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        timeout = provider.timeout_ms / 1000 if provider.timeout_ms else self._default_timeout
        ex.adapter = adapter
        ex.call = UpstreamCall(
            endpoint=ex.endpoint,
            payload=payload,
            provider=provider,
            api_key=api_key,
            timeout=timeout,
            request_id=ex.request_id,
            model_config=model.config,
            headers=headers,
        )

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo."""


def _check_extra_fields(ex: Exchange, provider_type: str, config: Mapping[str, object]) -> None:
    if not ex.extra_fields:
        return
    allowed = config.get("extra_body_fields")
    if allowed == "*" or (allowed is None and provider_type in PERMISSIVE_TYPES):
        return
    allowed_set = set(allowed) if isinstance(allowed, list) else set()
    for name in ex.extra_fields:
        if name not in allowed_set:
            raise InvalidRequestBody(
                f"unknown field '{name}' (allow it with the provider's 'extra_body_fields' setting)",
                param=name,
            )


class CallUpstream:
    """Sends the call through the adapter: sets ``ex.unary`` or opens ``ex.upstream_stream``."""

    name = "call_upstream"

    async def before(self, ex: Exchange) -> None:
        """Call the provider (errors are already translated by the adapter)."""
        assert ex.adapter is not None
        assert ex.call is not None
        ex.timings.upstream_started = time.perf_counter()
        if ex.stream:
            ex.upstream_stream = await ex.adapter.stream(ex.call)
            ex.provider_request_id = ex.upstream_stream.provider_request_id
        else:
            ex.unary = await ex.adapter.complete(ex.call)
            ex.usage = ex.unary.usage
            ex.provider_request_id = ex.unary.provider_request_id
        ex.timings.upstream_answered = time.perf_counter()

    async def after(self, ex: Exchange) -> None:
        """Release the upstream connection of a stream."""
        if ex.upstream_stream is not None:
            await ex.upstream_stream.aclose()
