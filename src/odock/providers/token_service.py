"""Token counting for the dialects that have an endpoint for it (Anthropic, Gemini).

A count is asked of the model's provider when it speaks the client's dialect and its adapter can
count (an Anthropic model counted through ``/v1/messages/count_tokens``, a Gemini model through
``:countTokens``): the provider's tokenizer is the only exact one. Any other model gets the
gateway's own estimate, the one rate limits and budgets reserve on. Counting spends nothing, so
it passes no limit or budget; the key must still be allowed to call the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from odock.keys.model_access import callable_model
from odock.keys.principal import KeyPrincipal
from odock.llm.upstream import Endpoint
from odock.providers.adapters.base import Adapter, Timeouts, UpstreamCall
from odock.providers.catalog import ModelCatalog
from odock.providers.provider_types import spec_of
from odock.providers.stage import upstream_call
from odock.providers.vault import ProviderKeyVault
from odock.surfaces.surface import Surface


@runtime_checkable
class CountingAdapter(Protocol):
    """An adapter whose upstream counts tokens."""

    async def count_tokens(self, call: UpstreamCall) -> int:
        """The provider's count of the input tokens of ``call.payload``."""


class TokenCounter:
    """Counts a request's input tokens: by the provider when it can, else by estimate."""

    def __init__(
        self,
        catalog: ModelCatalog,
        adapters: Mapping[str, Adapter],
        vault: ProviderKeyVault,
        defaults: Timeouts,
    ) -> None:
        self._catalog = catalog
        self._adapters = adapters
        self._vault = vault
        self._defaults = defaults

    async def count(
        self, principal: KeyPrincipal, surface: Surface, payload: dict[str, Any], route: str, request_id: str
    ) -> int:
        """The input tokens of ``payload`` (a body of ``surface``'s dialect naming its model)."""
        model = await callable_model(self._catalog, principal, payload["model"], Endpoint.CHAT, route)
        provider = model.provider
        spec = spec_of(provider.type) if provider is not None and provider.enabled else None
        adapter = self._adapters.get(provider.type) if provider is not None else None
        if (
            spec is None
            or surface.dialect not in spec.passthrough
            or not isinstance(adapter, CountingAdapter)
        ):
            return surface.estimate_input(payload)
        body = surface.passthrough(payload, model.slug, False)
        call = upstream_call(
            self._vault, model, spec, Endpoint.COUNT_TOKENS, body, request_id, self._defaults
        )
        return await adapter.count_tokens(call)
