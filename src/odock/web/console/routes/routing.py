"""Page part: the Routing card of an API key's page (spec §9, §11.4).

The card shows the organisation's routing switch and the key's policy per model type, read by
the API route ``GET …/apikeys/{id}/routing`` with the key page's own grant; ``static/routing.js``
edits a policy (candidates, triggers, retries, native fallbacks) and sends it with ``PATCH …/routing``,
which needs the same ``Permit`` as that route (API key: update). Candidates are offered among the
models the key is granted, by type, as the gateway only routes to granted models.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from odock.keys.routing import MODEL_TYPES, ModelTypeRouting
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.tenancy.service import TenancyService, routing_enabled
from odock.web.api.routes import api_keys
from odock.web.api.services import Keys
from odock.web.console.pages import can

# The model types a policy is edited for (the spec's UI tabs: no "ocr").
EDITED_TYPES = tuple(t for t in MODEL_TYPES if t != "ocr")
FAMILIES = ("openai", "anthropic", "gemini", "vllm", "mistral")
STRATEGIES = ("failover", "priority", "round_robin", "weighted")
TRIGGERS = ("5xx", "timeout", "rate_limit", "any")


@dataclass(frozen=True)
class KeyRoutingCard:
    """What the Routing card shows: the switch, the policies by type and the models to choose from."""

    enabled: bool
    may_switch: bool
    policies: dict[str, ModelTypeRouting]
    granted: dict[str, list[str]]
    unused: list[str]
    blank: ModelTypeRouting
    strategies: tuple[str, ...] = STRATEGIES
    triggers: tuple[str, ...] = TRIGGERS
    families: tuple[str, ...] = FAMILIES


def granted_by_type(models: Iterable[api_keys.GrantedModelView]) -> dict[str, list[str]]:
    """The names of the key's granted models, grouped by model type (in the grants' name order)."""
    grouped: dict[str, list[str]] = {kind: [] for kind in EDITED_TYPES}
    for model in models:
        grouped.setdefault(model.type, []).append(model.name)
    return grouped


async def key_routing_card(
    key_grant: Grant,
    organisation_id: str,
    api_key_id: str,
    keys: Keys,
    tenancy: TenancyService,
    grants: Iterable[api_keys.GrantedModelView],
) -> KeyRoutingCard:
    """The key's policies as ``GET …/routing`` answers them, beside the organisation's switch."""
    view = await api_keys.get_routing(api_key_id, keys, key_grant)
    organisation = await tenancy.organisation(organisation_id)
    return KeyRoutingCard(
        enabled=routing_enabled(organisation),
        may_switch=can(key_grant.actor, Resource.ORGANISATION, Action.UPDATE),
        policies={kind: view.routing[kind] for kind in MODEL_TYPES if kind in view.routing},
        granted=granted_by_type(grants),
        unused=[kind for kind in EDITED_TYPES if kind not in view.routing],
        blank=ModelTypeRouting(),
    )
