"""The control plane: the per-feature services, composed once for the API, the CLI and apply.

Each feature owns its rules, its queries and the invalidation it publishes: providers
(:class:`~odock.providers.service.ProviderService`), provider keys
(:class:`~odock.providers.provider_keys.ProviderKeyService`), models
(:class:`~odock.providers.model_service.ModelService`), API keys
(:class:`~odock.keys.service.KeyService`), governance envelopes
(:class:`~odock.limits.envelopes.PolicyEnvelopes`), budgets and quotas
(:class:`~odock.budgets.control.BudgetControl`). Organisations, teams and users are still
changed here (validated, committed, then published). Every policy envelope written anywhere is
checked with :func:`odock.limits.policy.parse_policy` and stored in its bare, parsed form, so a
bad policy is refused with 422 ``invalid_policy`` at write time, not at the next request.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.organisations import OrganisationAdmin
from odock.admin.teams import TeamAdmin
from odock.budgets.control import BudgetControl
from odock.budgets.meters import MeterStore
from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.rows import commit_or_conflict as _commit
from odock.db.rows import get_row as _get
from odock.errors import NotFound
from odock.ids import new_id
from odock.keys.service import IssuedKey, KeyService
from odock.limits.envelopes import PolicyEnvelopes
from odock.providers.crypto import EnvelopeDecrypter
from odock.providers.model_service import ModelService
from odock.providers.provider_keys import ProviderKeyService
from odock.providers.service import ProviderService
from odock.rules import only_fields, valid_name, validate_policies
from odock.tenancy.tables import Organisation, Role, Team, User

_Row = TypeVar("_Row")

__all__ = ["ControlPlane", "IssuedKey"]


class ControlPlane:
    """The configuration services of one process, and the organisation, team and user changes.

    ``meters`` are the hot path's counters (the gateway's own, or Redis beside production
    gateways): a budget change reads live use from them.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        decrypter: EnvelopeDecrypter | None,
        meters: MeterStore | None = None,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self.budgets = BudgetControl(sessions, bus, meters)
        self.organisations = OrganisationAdmin(sessions, bus)
        self.teams = TeamAdmin(sessions, bus)
        self.providers = ProviderService(sessions, bus, decrypter)
        self.provider_keys = ProviderKeyService(sessions, bus, decrypter)
        self.models = ModelService(sessions, bus)
        self.keys = KeyService(sessions, bus)
        self.policies = PolicyEnvelopes(sessions, bus)

    # --- organisations, teams, users ---------------------------------------------------
    async def create_organisation(
        self, name: str, *, contact: str | None = None, policies: dict[str, Any] | None = None
    ) -> Organisation:
        """Create an organisation."""
        org = Organisation(
            id=new_id(), name=valid_name(name), contact=contact, policies=validate_policies(policies)
        )
        await self._insert(org, f"organisation '{name}' already exists")
        return org

    async def organisation_by_name(self, name: str) -> Organisation:
        """Find an organisation by name (404 when absent)."""
        query = select(Organisation).where(Organisation.name == name)
        return await self._one(query, f"organisation '{name}' does not exist")

    async def organisation_by_id(self, organisation_id: str) -> Organisation:
        """One organisation by id (404 when absent)."""
        async with self._sessions() as session:
            return await _get(session, Organisation, organisation_id)

    async def list_organisations(self) -> list[Organisation]:
        """Every organisation, by name."""
        async with self._sessions() as session:
            return list((await session.execute(select(Organisation).order_by(Organisation.name))).scalars())

    async def update_organisation(self, organisation_id: str, **changes: Any) -> Organisation:
        """Change an organisation's contact or policies."""
        only_fields(changes, {"contact", "policies"}, "organisation")
        if "policies" in changes:
            changes["policies"] = validate_policies(changes["policies"])
        async with self._sessions() as session:
            org = await _get(session, Organisation, organisation_id)
            for field, value in changes.items():
                setattr(org, field, value)
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))
        return org

    async def create_team(
        self, organisation_id: str, name: str, *, policies: dict[str, Any] | None = None
    ) -> Team:
        """Create a team in an organisation."""
        stored = validate_policies(policies)
        await self._require(Organisation, organisation_id)
        team = Team(id=new_id(), organisation_id=organisation_id, name=valid_name(name), policies=stored)
        await self._insert(team, f"team '{name}' already exists")
        return team

    async def team_by_name(self, organisation_id: str, name: str) -> Team:
        """Find a team of an organisation by name (404 when absent)."""
        query = select(Team).where(Team.organisation_id == organisation_id, Team.name == name)
        return await self._one(query, f"team '{name}' does not exist")

    async def list_teams(self, organisation_id: str) -> list[Team]:
        """The teams of an organisation, by name."""
        query = select(Team).where(Team.organisation_id == organisation_id).order_by(Team.name)
        return await self._all(query)

    async def update_team(self, team_id: str, *, policies: dict[str, Any]) -> Team:
        """Replace a team's policies (keys of the team see the change at once)."""
        stored = validate_policies(policies)
        async with self._sessions() as session:
            team = await _get(session, Team, team_id)
            team.policies = stored
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=team.organisation_id))
        return team

    async def create_user(
        self,
        email: str,
        *,
        organisation_id: str | None = None,
        role: Role = Role.USER,
        name: str | None = None,
    ) -> User:
        """Create a user."""
        if organisation_id:
            await self._require(Organisation, organisation_id)
        user = User(
            id=new_id(), email=email.strip().lower(), name=name, role=role, organisation_id=organisation_id
        )
        await self._insert(user, f"user '{email}' already exists")
        return user

    async def user_by_email(self, email: str) -> User:
        """Find a user by e-mail address (404 when absent)."""
        address = email.strip().lower()
        return await self._one(select(User).where(User.email == address), f"user '{address}' does not exist")

    async def list_users(self, organisation_id: str | None = None) -> list[User]:
        """Users, by e-mail (optionally of one organisation)."""
        query = select(User).order_by(User.email)
        if organisation_id:
            query = query.where(User.organisation_id == organisation_id)
        return await self._all(query)

    async def update_user(self, user_id: str, **changes: Any) -> User:
        """Change a user's name or role."""
        only_fields(changes, {"name", "role"}, "user")
        async with self._sessions() as session:
            user = await _get(session, User, user_id)
            for field, value in changes.items():
                setattr(user, field, value)
            await session.commit()
        return user

    # --- helpers -------------------------------------------------------------------------
    async def _insert(self, row: object, conflict_message: str) -> None:
        async with self._sessions() as session:
            session.add(row)
            await _commit(session, conflict_message)

    async def _require(self, table: type[Any], row_id: str) -> None:
        async with self._sessions() as session:
            await _get(session, table, row_id)

    async def _one(self, query: Select[_Row], missing: str) -> _Row:
        async with self._sessions() as session:
            row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound(missing)
        return row

    async def _all(self, query: Select[_Row]) -> list[_Row]:
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars())
