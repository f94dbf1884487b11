"""Organisation settings, status, the routing switch, and deletion.

The routing switch lives in ``organisation.policies["routing"]["enabled"]`` (spec §3.2, §9.1),
next to the governance envelope (``ip``, ``ratelimit``, …), which a switch change leaves as it is.
An organisation is deleted in two steps: set its status to ``DISABLED``, then delete it; the
delete removes everything the organisation owns (teams, providers, models, keys, budgets).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.rows import commit_or_conflict, get_row
from odock.admin.rules import valid_name
from odock.cache.bus import Invalidation, InvalidationBus
from odock.errors import Conflict
from odock.tenancy.tables import Organisation

OrganisationStatus = Literal["ACTIVE", "DISABLED"]


def routing_enabled(organisation: Organisation) -> bool:
    """Whether the organisation's routing switch is on (off when never set)."""
    routing = (organisation.policies or {}).get("routing")
    return isinstance(routing, dict) and routing.get("enabled") is True


class OrganisationAdmin:
    """Changes to organisations that the generic control-plane methods do not cover."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._bus = bus

    async def update(
        self,
        organisation_id: str,
        *,
        name: str | None = None,
        contact: str | None = None,
        clear_contact: bool = False,
        status: OrganisationStatus | None = None,
    ) -> Organisation:
        """Rename, change the contact (``clear_contact`` empties it) or the status."""
        async with self._sessions() as session:
            org = await get_row(session, Organisation, organisation_id)
            if name is not None:
                org.name = valid_name(name)
            if contact is not None or clear_contact:
                org.contact = contact
            if status is not None:
                org.status = status
            await commit_or_conflict(session, f"organisation '{name}' already exists")
        await self._changed(organisation_id)
        return org

    async def set_routing(self, organisation_id: str, enabled: bool) -> Organisation:
        """Switch routing on or off, keeping the rest of the organisation's policies."""
        async with self._sessions() as session:
            org = await get_row(session, Organisation, organisation_id)
            policies: dict[str, Any] = dict(org.policies or {})
            current = policies.get("routing")
            routing = dict(current) if isinstance(current, dict) else {}
            routing["enabled"] = enabled
            policies["routing"] = routing
            org.policies = policies  # a new dict: JSON columns track assignment, not mutation
            await session.commit()
        await self._changed(organisation_id)
        return org

    async def delete(self, organisation_id: str) -> None:
        """Delete a DISABLED organisation and everything it owns (409 while it is ACTIVE)."""
        async with self._sessions() as session:
            org = await get_row(session, Organisation, organisation_id)
            if org.status != "DISABLED":
                raise Conflict("disable the organisation (status DISABLED) before deleting it")
            await session.delete(org)
            await session.commit()
        await self._changed(organisation_id)

    async def _changed(self, organisation_id: str) -> None:
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))
