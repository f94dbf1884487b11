"""Stages that turn a model name into an upstream call, and make the call.

ResolveModel: find the model in the key's organisation, check the key's grant and that the
endpoint serves the model's type.
ResolveProvider: check the provider and its key, and build the call (with the provider key and
header values decrypted by the vault, once per row version). A client whose dialect the upstream
speaks is passed through (its body, the model id rewritten); any other is translated
(:mod:`odock.llm.translate`): decoded by its surface's codec, encoded by the upstream's.
CallUpstream: send it through the provider's adapter (and translate the answer back).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from odock.errors import (
    InvalidRequestBody,
    ProviderApiKeyNotConfigured,
    ProviderApiKeyRevoked,
    ProviderDisabled,
    ProviderNotAllowed,
    ProviderNotConfigured,
    ProviderTypeUnsupported,
)
from odock.keys.model_access import callable_model
from odock.llm.codec import Dialect, EmbeddingClientCodec, EmbeddingUpstreamCodec
from odock.llm.translate import EmbeddingTranslation, Translation
from odock.llm.upstream import Endpoint
from odock.pipeline.exchange import Exchange
from odock.providers.adapters.base import Adapter, Timeouts, UpstreamCall
from odock.providers.catalog import Deployment, ModelCatalog, ProviderTarget, ResolvedModel
from odock.providers.config import (
    CONNECT_TIMEOUT_MS,
    FIRST_BYTE_TIMEOUT_MS,
    IDLE_TIMEOUT_MS,
    timeout_override,
)
from odock.providers.provider_types import ProviderTypeInfo, spec_of
from odock.providers.vault import ProviderKeyVault


class ResolveModel:
    """Sets ``ex.model``: the named model in the caller's organisation, which the key may call."""

    name = "resolve_model"

    def __init__(self, catalog: ModelCatalog) -> None:
        self._catalog = catalog

    async def before(self, ex: Exchange) -> None:
        """Look the model up and check the grant."""
        assert ex.principal is not None
        ex.model = await callable_model(
            self._catalog, ex.principal, ex.payload["model"], ex.endpoint, ex.route
        )

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo."""


class ResolveProvider:
    """Sets ``ex.adapter`` and ``ex.call`` after checking the provider and its key."""

    name = "resolve_provider"

    def __init__(
        self,
        adapters: Mapping[str, Adapter],
        vault: ProviderKeyVault,
        defaults: Timeouts,
    ) -> None:
        self._adapters = adapters
        self._vault = vault
        self._defaults = defaults  # the gateway's timeouts, for what a provider does not set

    async def before(self, ex: Exchange) -> None:
        """Check the provider chain and build the upstream call."""
        model = ex.model
        assert model is not None
        deployment = ex.deployment  # set by routing; otherwise the model's own provider and key
        provider = deployment.provider if deployment is not None else model.provider
        slug = deployment.slug if deployment is not None else model.slug
        ex.translation = None
        if provider is None:
            raise ProviderNotConfigured(f"model '{model.name}' has no provider")
        if not provider.enabled:
            raise ProviderDisabled(f"provider '{provider.name}' is disabled")
        spec = spec_of(provider.type)
        adapter = self._adapters.get(provider.type)
        if spec is None or adapter is None:
            raise ProviderTypeUnsupported(f"provider type {provider.type} is not supported")
        pinned = ex.surface.accepts_provider
        if pinned is not None and not pinned(ex.payload, provider.type):
            raise ProviderNotAllowed(
                f"model '{model.name}' is served by a {provider.type} provider, not the one named",
                param="provider",
            )
        if ex.surface.dialect in spec.passthrough:
            _check_extra_fields(ex, spec, provider.config)
            endpoint = ex.surface.upstream_endpoint or ex.endpoint
            payload = ex.surface.passthrough(ex.payload, slug, ex.stream)
        else:
            _check_family(ex, spec, model)
            ex.translation = self._translation(ex, spec, model)
            endpoint = Endpoint.EMBEDDINGS if ex.endpoint == Endpoint.EMBEDDINGS else Endpoint.CHAT
            payload = ex.translation.upstream_payload(slug, stream=ex.stream)
        ex.adapter = adapter
        ex.call = upstream_call(
            self._vault, model, spec, endpoint, payload, ex.request_id, self._defaults, deployment
        )
        ex.call.client_headers = _forwarded(ex.headers)

    def _translation(
        self, ex: Exchange, spec: ProviderTypeInfo, model: ResolvedModel
    ) -> Translation | EmbeddingTranslation:
        """The client's request decoded for the upstream's dialect (400 for what cannot cross)."""
        surface, codecs = ex.surface, spec.codecs
        if codecs is None:
            raise ProviderNotAllowed(
                f"model '{model.name}' is served by a {spec.type.value} provider, "
                f"which the gateway cannot reach from {ex.route}"
            )
        if ex.endpoint == Endpoint.EMBEDDINGS:
            if surface.embeddings_client is None or codecs.embeddings is None:
                raise ProviderNotAllowed(
                    f"model '{model.name}' is served by a {spec.type.value} provider, "
                    f"which cannot answer {ex.route}"
                )
            return _embedding_translation(ex, surface.embeddings_client, codecs.embeddings)
        if surface.client is None:
            raise ProviderNotAllowed(f"{ex.route} cannot reach a {spec.type.value} provider")
        generation = surface.client.decode_request(ex.payload)
        cap = model.config.get("max_output_tokens")
        if generation.max_tokens is None and isinstance(cap, int) and cap > 0:
            # Without a limit of its own the request gets the model's cap; without one either, the
            # upstream codec's default (Anthropic requires a limit: 4096, above any thinking budget).
            generation.max_tokens = cap
        render = surface.render
        provider = spec.type.value.lower()
        return Translation(
            surface.client,
            codecs.generation,
            generation,
            (lambda response: render(generation, response, provider)) if render is not None else None,
            surface.field_names,
        )

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo."""


def _embedding_translation(
    ex: Exchange, client: EmbeddingClientCodec, upstream: EmbeddingUpstreamCodec
) -> EmbeddingTranslation:
    request = client.decode_embeddings(ex.payload)
    render, payload = ex.surface.render_embeddings, ex.payload
    return EmbeddingTranslation(
        client,
        upstream,
        request,
        (lambda response: render(payload, response)) if render is not None else None,
    )


# The vendor family of each dialect: strict_provider_family keeps native endpoints inside theirs.
FAMILIES = {
    Dialect.OPENAI_CHAT: "openai",
    Dialect.OPENAI_RESPONSES: "openai",
    Dialect.ANTHROPIC: "anthropic",
    Dialect.GEMINI: "gemini",
}


def _check_family(ex: Exchange, spec: ProviderTypeInfo, model: ResolvedModel) -> None:
    """An organisation with ``strict_provider_family`` keeps native endpoints to their own family:
    a model of another vendor family is refused instead of translated (a Responses request to a
    chat-only OpenAI-compatible server is still translated; the unified endpoint always may)."""
    assert ex.principal is not None
    family = FAMILIES.get(ex.surface.dialect)
    if family is None or not ex.principal.strict_provider_family:
        return
    if family not in {FAMILIES[d] for d in spec.passthrough if d in FAMILIES}:
        raise ProviderNotAllowed(
            f"model '{model.name}' is served by a {spec.type.value} provider, which this organisation "
            f"does not allow through {ex.route} (strict_provider_family)",
            param="model",
        )


def upstream_call(
    vault: ProviderKeyVault,
    model: ResolvedModel,
    spec: ProviderTypeInfo,
    endpoint: Endpoint,
    payload: dict[str, Any],
    request_id: str,
    defaults: Timeouts,
    deployment: Deployment | None = None,
) -> UpstreamCall:
    """The call of ``payload`` to the model's provider (or ``deployment``'s), with its key and
    headers decrypted."""
    provider = deployment.provider if deployment is not None else model.provider
    provider_key = deployment.provider_key if deployment is not None else model.provider_key
    assert provider is not None
    api_key: str | None = None
    if provider_key is not None:
        if provider_key.revoked:
            raise ProviderApiKeyRevoked()
        api_key = vault.reveal(provider_key)
    elif spec.needs_key:
        raise ProviderApiKeyNotConfigured(f"model '{model.name}' has no provider API key")
    return UpstreamCall(
        endpoint=endpoint,
        payload=payload,
        provider=provider,
        api_key=api_key,
        timeouts=timeouts_for(provider, defaults),
        request_id=request_id,
        model_config=model.config,
        headers=vault.reveal_headers(provider),
        model=deployment.slug if deployment is not None else model.slug,
    )


def timeouts_for(provider: ProviderTarget, defaults: Timeouts) -> Timeouts:
    """The provider's timeouts: its config's overrides (and ``timeout_ms``, the total), else ``defaults``."""
    config = provider.config
    return Timeouts(
        connect=timeout_override(config, CONNECT_TIMEOUT_MS) or defaults.connect,
        first_byte=timeout_override(config, FIRST_BYTE_TIMEOUT_MS) or defaults.first_byte,
        idle=timeout_override(config, IDLE_TIMEOUT_MS) or defaults.idle,
        total=provider.timeout_ms / 1000 if provider.timeout_ms else defaults.total,
    )


# Client headers a same-dialect upstream receives as sent (Anthropic's beta features).
FORWARDED_HEADERS = ("anthropic-beta",)


def _forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in FORWARDED_HEADERS if name in headers}


def _check_extra_fields(ex: Exchange, spec: ProviderTypeInfo, config: Mapping[str, object]) -> None:
    if not ex.extra_fields:
        return
    allowed = config.get("extra_body_fields")
    if allowed == "*" or (allowed is None and spec.permissive):
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
        translation = ex.translation
        if ex.stream:
            stream = await ex.adapter.stream(ex.call)
            ex.upstream_stream = stream
            if isinstance(translation, Translation):
                ex.upstream_stream = translation.stream(stream)
            ex.provider_request_id = stream.provider_request_id
        else:
            ex.unary = await ex.adapter.complete(ex.call)
            ex.usage = ex.unary.usage
            ex.provider_request_id = ex.unary.provider_request_id
            if translation is not None:
                ex.unary.body = translation.answer(ex.unary.body)
        ex.timings.upstream_answered = time.perf_counter()

    async def after(self, ex: Exchange) -> None:
        """Release the upstream connection of a stream."""
        if ex.upstream_stream is not None:
            await ex.upstream_stream.aclose()
