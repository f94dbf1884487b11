"""The governance envelope (spec §4.1) of each scope — organisation, team, API key, model — read and replaced.

The envelope (``ip``, ``ratelimit``, ``shadow``; bare or nested under ``policies``) shares its JSON
column with other capabilities' settings (an organisation's routing switch, a key's routing
policy): replacing it keeps those as they are. An invalid envelope is 422 ``invalid_policy``
naming the bad field, refused before anything is written. The admin API and ``odock policies``
both go through :class:`PolicyEnvelopes`, which commits and then publishes the invalidation that
makes the gateway apply the new envelope at once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.rows import get_row
from odock.errors import InvalidPolicy
from odock.keys.tables import ApiKey
from odock.providers.tables import Model
from odock.rules import POLICY_SECTIONS, validate_policies
from odock.tenancy.tables import Organisation, Team

ACCEPTED = POLICY_SECTIONS | {"policies"}


class PolicyScope(enum.StrEnum):
    """Where an envelope is stored (the global one comes from settings and is read-only)."""

    ORGANISATION = "organisation"
    TEAM = "team"
    API_KEY = "api_key"
    MODEL = "model"


_TABLES: dict[PolicyScope, type[Organisation | Team | ApiKey | Model]] = {
    PolicyScope.ORGANISATION: Organisation,
    PolicyScope.TEAM: Team,
    PolicyScope.API_KEY: ApiKey,
    PolicyScope.MODEL: Model,
}


def envelope_of(stored: Mapping[str, object] | None) -> dict[str, object]:
    """The governance envelope within a stored policies document (other settings left out)."""
    return {k: v for k, v in (stored or {}).items() if k in ACCEPTED}


def with_envelope(stored: Mapping[str, Any] | None, envelope: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` with its governance envelope replaced by ``envelope`` (validated); other keys kept."""
    nested = envelope.get("policies")
    inner = sorted(set(nested) - POLICY_SECTIONS) if isinstance(nested, Mapping) else []
    unknown = sorted(set(envelope) - ACCEPTED) or [f"policies.{k}" for k in inner]
    if unknown:
        raise InvalidPolicy(
            f"'{unknown[0]}' is not part of the policy envelope (ip, ratelimit, shadow)", param=unknown[0]
        )
    others = {k: v for k, v in (stored or {}).items() if k not in ACCEPTED}
    return others | validate_policies(envelope)


class PolicyEnvelopes:
    """Read and replace the envelope stored at one scope."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._bus = bus

    async def stored(self, scope: PolicyScope, row_id: str) -> dict[str, Any]:
        """The whole policies document stored at the scope's row (404 when the row is gone)."""
        async with self._sessions() as session:
            row = await get_row(session, _TABLES[scope], row_id)
        return dict(row.policies or {})

    async def replace(self, scope: PolicyScope, row_id: str, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the envelope at the scope's row (other settings kept); returns the stored document."""
        return await self._store(scope, row_id, lambda stored: with_envelope(stored, envelope))

    async def replace_document(
        self, scope: PolicyScope, row_id: str, document: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace the whole policies document (``odock policies set``): validated, stored bare."""
        return await self._store(scope, row_id, lambda _stored: validate_policies(document))

    async def _store(
        self, scope: PolicyScope, row_id: str, new: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        async with self._sessions() as session:
            row = await get_row(session, _TABLES[scope], row_id)
            row.policies = new(dict(row.policies or {}))
            await session.commit()
        await self._bus.publish(_invalidation(row))
        return dict(row.policies)


def _invalidation(row: Organisation | Team | ApiKey | Model) -> Invalidation:
    if isinstance(row, ApiKey):
        return Invalidation("api_key", organisation_id=row.organisation_id, key_hash=row.key_hash)
    organisation_id = row.id if isinstance(row, Organisation) else row.organisation_id
    return Invalidation("organisation", organisation_id=organisation_id)
