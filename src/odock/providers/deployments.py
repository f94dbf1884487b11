"""A model's deployments (key pools) as its ``config`` stores them, and their validation.

``config.deployments`` lists the places a model is served besides its own provider and key:
``[{"provider_id": …, "provider_api_key_id": … | null, "slug": … | null, "weight": 1}]``.
``config.weight`` is the weight of the model's own deployment and ``config.load_balancing``
(``weighted`` or ``least_busy``) how requests are spread across them (see docs/routing.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odock.errors import UnprocessableEntity

LOAD_BALANCING = ("weighted", "least_busy")
MAX_DEPLOYMENTS = 20
MAX_WEIGHT = 1_000_000
_ENTRY_FIELDS = frozenset({"provider_id", "provider_api_key_id", "slug", "weight"})


@dataclass(frozen=True, slots=True)
class DeploymentEntry:
    """One stored deployment: where (provider and key) and as what (upstream model id)."""

    provider_id: str
    provider_api_key_id: str | None
    slug: str | None
    weight: int


def parse_deployments(config: Mapping[str, Any]) -> list[DeploymentEntry]:
    """The deployments of a submitted ``config``, checked (422 naming the bad field)."""
    weight = config.get("weight", 1)
    if not _is_weight(weight):
        raise UnprocessableEntity(f"weight must be an integer from 0 to {MAX_WEIGHT}", param="config.weight")
    balancing = config.get("load_balancing", "weighted")
    if balancing not in LOAD_BALANCING:
        raise UnprocessableEntity(
            f"load_balancing must be one of {', '.join(LOAD_BALANCING)}", param="config.load_balancing"
        )
    raw = config.get("deployments", [])
    if not isinstance(raw, list) or len(raw) > MAX_DEPLOYMENTS:
        raise UnprocessableEntity(
            f"deployments must be a list of at most {MAX_DEPLOYMENTS} objects", param="config.deployments"
        )
    return [_entry(item, f"config.deployments.{i}") for i, item in enumerate(raw)]


def deployment_entries(config: Mapping[str, Any]) -> list[DeploymentEntry]:
    """The stored deployments of a model (validated when saved; malformed ones are left out)."""
    raw = config.get("deployments")
    if not isinstance(raw, list):
        return []
    entries = []
    for item in raw:
        try:
            entries.append(_entry(item, "config.deployments"))
        except UnprocessableEntity:
            continue
    return entries


def _entry(item: object, where: str) -> DeploymentEntry:
    if not isinstance(item, dict):
        raise UnprocessableEntity("a deployment must be an object", param=where)
    unknown = sorted(set(item) - _ENTRY_FIELDS)
    if unknown:
        raise UnprocessableEntity(f"unknown field '{unknown[0]}'", param=f"{where}.{unknown[0]}")
    provider_id = item.get("provider_id")
    if not isinstance(provider_id, str) or not provider_id:
        raise UnprocessableEntity("provider_id is required", param=f"{where}.provider_id")
    key_id = item.get("provider_api_key_id")
    if key_id is not None and (not isinstance(key_id, str) or not key_id):
        raise UnprocessableEntity(
            "provider_api_key_id must be an id or null", param=f"{where}.provider_api_key_id"
        )
    slug = item.get("slug")
    if slug is not None and (not isinstance(slug, str) or not 0 < len(slug) <= 200):
        raise UnprocessableEntity("slug must be 1 to 200 characters or null", param=f"{where}.slug")
    weight = item.get("weight", 1)
    if not _is_weight(weight):
        raise UnprocessableEntity(
            f"weight must be an integer from 0 to {MAX_WEIGHT}", param=f"{where}.weight"
        )
    return DeploymentEntry(provider_id, key_id, slug, weight)


def _is_weight(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_WEIGHT
