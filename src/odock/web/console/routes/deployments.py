"""Page part: the Deployments card of a model's page (key pools, issue #21).

A model may be served by several provider keys or providers: besides its own provider, key and
upstream slug (the primary, weight ``config["weight"]``, default 1) it lists extra deployments in
``config["deployments"]`` and how load is spread in ``config["load_balancing"]`` (weighted or
least_busy). The card reads them from the model as ``GET …/models/{id}`` renders it; changes are
the whole ``config`` sent with ``PATCH …/models/{id}`` (the model update API, so its ``Permit``
and validation), other config keys kept as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from odock.web.api.routes.models import ModelOut
from odock.web.api.routes.providers import ProviderKeyOut, ProviderOut

BALANCING = ("weighted", "least_busy")


@dataclass(frozen=True)
class DeploymentRow:
    """One deployment as the card lists it (names looked up; ``removal`` is the config without it)."""

    provider: str
    key: str
    slug: str
    weight: object
    removal: dict[str, Any] | None


@dataclass(frozen=True)
class DeploymentsCard:
    """The model's deployments (the primary first), its balancing, and what the add form needs."""

    rows: list[DeploymentRow]
    load_balancing: str
    primary_weight: object
    config: dict[str, Any]
    next_index: int
    balancing: tuple[str, ...] = BALANCING


def _deployments(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    listed = config.get("deployments")
    return [d for d in listed if isinstance(d, Mapping)] if isinstance(listed, list) else []


def _key_label(key_id: object, keys: Mapping[str, ProviderKeyOut]) -> str:
    if not key_id:
        return "—"
    key = keys.get(str(key_id))
    return f"{key.name} ({key.key_preview})" if key else str(key_id)


KeysOf = Callable[[str], Awaitable[Sequence[ProviderKeyOut] | None]]


async def deployments_card(
    model: ModelOut, providers: Sequence[ProviderOut], keys_of: KeysOf
) -> DeploymentsCard:
    """The card of ``model``: its primary and extra deployments, with the provider and key names
    ``providers`` and ``keys_of`` (a provider's keys the viewer may see) give."""
    config = dict(model.config)
    extra = _deployments(config)
    names = {p.id: p.name for p in providers}
    used = {model.provider_id or "", *(str(d.get("provider_id") or "") for d in extra)} - {""}
    keys: dict[str, ProviderKeyOut] = {}
    for provider_id in sorted(used):
        for key in await keys_of(provider_id) or []:
            keys[key.id] = key
    primary = DeploymentRow(
        provider=names.get(model.provider_id or "", model.provider_id or "none"),
        key=_key_label(model.provider_key_id, keys),
        slug=model.slug,
        weight=config.get("weight", 1),
        removal=None,
    )
    rows = [primary]
    for index, deployment in enumerate(extra):
        provider_id = str(deployment.get("provider_id") or "")
        rows.append(
            DeploymentRow(
                provider=names.get(provider_id, provider_id or "—"),
                key=_key_label(deployment.get("provider_api_key_id"), keys),
                slug=str(deployment.get("slug") or model.slug),
                weight=deployment.get("weight", 1),
                removal={**config, "deployments": [d for i, d in enumerate(extra) if i != index]},
            )
        )
    return DeploymentsCard(
        rows=rows,
        load_balancing=str(config.get("load_balancing") or "weighted"),
        primary_weight=config.get("weight", 1),
        config=config,
        next_index=len(extra),
    )
