"""Reading the audit log: the filters every audit list accepts, as one query; pages and one event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.audit.tables import AuditEvent
from odock.db.seek import Seek
from odock.errors import NotFound


@dataclass(frozen=True)
class AuditFilter:
    """Which events to list; ``None`` leaves a field unfiltered."""

    organisation_id: str | None = None
    actor: str | None = None  # the acting user's id, or the actor's label (e-mail, CLI user, "system")
    resource_type: str | None = None
    resource_id: str | None = None
    action: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def audit_query(wanted: AuditFilter) -> Select[AuditEvent]:
    """The events matching ``wanted`` (unordered: the caller pages on ``(at, id)``)."""
    query = select(AuditEvent)
    if wanted.organisation_id is not None:
        query = query.where(AuditEvent.organisation_id == wanted.organisation_id)
    if wanted.actor is not None:
        query = query.where(or_(AuditEvent.actor_user_id == wanted.actor, AuditEvent.actor == wanted.actor))
    if wanted.resource_type is not None:
        query = query.where(AuditEvent.resource_type == wanted.resource_type)
    if wanted.resource_id is not None:
        query = query.where(AuditEvent.resource_id == wanted.resource_id)
    if wanted.action is not None:
        query = query.where(AuditEvent.action == wanted.action)
    if wanted.since is not None:
        query = query.where(AuditEvent.at >= wanted.since)
    if wanted.until is not None:
        query = query.where(AuditEvent.at < wanted.until)
    return query


class AuditLog:
    """The audit log as the control plane reads it: pages of events and one event."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def page(self, wanted: AuditFilter, seek: Seek) -> list[AuditEvent]:
        """One page of the events matching ``wanted``, paged on ``(at, id)``."""
        async with self._sessions() as session:
            return list(
                (await session.execute(seek(audit_query(wanted), AuditEvent.at, AuditEvent.id))).scalars()
            )

    async def event(self, event_id: str) -> AuditEvent:
        """One event (404 when absent)."""
        async with self._sessions() as session:
            event = await session.get(AuditEvent, event_id)
        if event is None:
            raise NotFound("audit event not found")
        return event
