"""A "world" for authorisation tests: one organisation holding one row of every resource.

Rows are named by symbols so that tests can reason about them before they exist::

    users     SA (super admin), OA (org admin), M (manager of team T), U (member of T), W (member of T2)
    teams     team:T, team:T2
    owned     key:user (U) · key:team (T) · key:org · key:team2 (T2); budget:* and quota:* (user U,
              team T, org); record:* (usage records of user U, team T, the organisation)
    one each  provider, provider_key, model (every key is granted it), invitation, event (audit),
              mcp_server (every key is granted it), mcp_stdio_command (an allowlist entry)
    per user  token:<user> (its personal admin token), session:<user> (a sign-in session)

:func:`build_world` creates them through the service layer (``runtime.control``,
``runtime.budgets``, ``issue_admin_token``) and with ORM inserts where no service exists.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from odock.audit.tables import AuditEvent
from odock.budgets.tables import OwnerType, QuotaMetric
from odock.identity.actors import issue_admin_token
from odock.identity.secrets import secret_hash
from odock.identity.tables import AuthSession, Invitation
from odock.ids import new_id
from odock.keys.tables import ApiKeyType
from odock.providers.tables import ProviderType
from odock.runtime import Runtime
from odock.tenancy.tables import Role, TeamMember, TeamMemberRole
from odock.usage.tables import UsageRecord
from tests.support.server import ThreadedServer

USERS: dict[str, Role] = {
    "SA": Role.SUPER_ADMIN,
    "OA": Role.ORG_ADMIN,
    "M": Role.MANAGER,
    "U": Role.USER,
    "W": Role.USER,
}
TEAMS: dict[str, dict[str, TeamMemberRole]] = {
    "T": {"M": TeamMemberRole.MANAGER, "U": TeamMemberRole.MEMBER},
    "T2": {"W": TeamMemberRole.MEMBER},
}
CALLERS: dict[Role, str] = {
    Role.SUPER_ADMIN: "SA",
    Role.ORG_ADMIN: "OA",
    Role.MANAGER: "M",
    Role.USER: "U",
}
"""The user each role acts as."""

# Rows owned by a team and/or a user: symbol -> (team, user).
OWNED: dict[str, tuple[str | None, str | None]] = {
    "key:user": (None, "U"),
    "key:team": ("T", None),
    "key:org": (None, None),
    "key:team2": ("T2", None),
    "budget:user": (None, "U"),
    "budget:team": ("T", None),
    "budget:org": (None, None),
    "quota:user": (None, "U"),
    "quota:team": ("T", None),
    "quota:org": (None, None),
    "record:user": (None, "U"),
    "record:team": ("T", None),
    "record:org": (None, None),
}
MODEL_NAME = "world-model"


@dataclass(frozen=True)
class Owner:
    """Where a world row sits, by symbol: the team and the user that own it (if any)."""

    team: str | None = None
    user: str | None = None


def owner_of(symbol: str) -> Owner:
    """The owner of the row named ``symbol``."""
    if symbol.startswith("user:"):
        return Owner(user=symbol.removeprefix("user:"))
    if symbol.startswith("team:"):
        return Owner(team=symbol.removeprefix("team:"))
    if symbol.startswith(("token:", "session:")):
        return Owner(user=symbol.split(":", 1)[1])
    team, user = OWNED.get(symbol, (None, None))
    return Owner(team=team, user=user)


def teams_of(user: str) -> Iterator[tuple[str, TeamMemberRole]]:
    """The teams ``user`` belongs to, with their role in each."""
    for team, members in TEAMS.items():
        if user in members:
            yield team, members[user]


@dataclass
class World:
    """One built world: its organisation, the id of every symbol, and each user's admin token."""

    organisation_id: str
    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def id(self, symbol: str) -> str:
        """The id of the row named ``symbol``."""
        return self.ids[symbol]

    def auth(self, user: str) -> dict[str, str]:
        """The headers that act as ``user``."""
        return {"Authorization": f"Bearer {self.tokens[user]}"}


async def build_world(runtime: Runtime, label: str) -> World:
    """Create a world in a new organisation named after ``label``."""
    control = runtime.control
    suffix = secrets.token_hex(4)
    org = await control.tenancy.create_organisation(f"world-{label}-{suffix}")
    world = World(org.id)
    for symbol, role in USERS.items():
        user = await control.users.create_user(
            f"{symbol.lower()}-{label}-{suffix}@world.test", organisation_id=org.id, role=role
        )
        world.ids[f"user:{symbol}"] = user.id
    for team in TEAMS:
        world.ids[f"team:{team}"] = (await control.tenancy.create_team(org.id, f"team-{team}")).id
    for symbol in USERS:
        issued = await issue_admin_token(runtime.sessions, world.id(f"user:{symbol}"), "world")
        world.tokens[symbol] = issued.token
        world.ids[f"token:{symbol}"] = issued.id

    provider = await control.providers.create(org.id, "world-provider", ProviderType.MOCK)
    world.ids["provider"] = provider.id
    world.ids["provider_key"] = (
        await control.provider_keys.add(provider.id, "primary", secret="sk-world")
    ).id
    model = await control.models.create(org.id, MODEL_NAME, provider_id=provider.id)
    world.ids["model"] = model.id
    for symbol in ("key:user", "key:team", "key:org", "key:team2"):
        key_team, key_user = OWNED[symbol]
        kind = ApiKeyType.USER if key_user else ApiKeyType.TEAM if key_team else ApiKeyType.ORGANISATION
        issued_key = await control.keys.create(
            org.id,
            symbol,
            type=kind,
            team_id=world.ids.get(f"team:{key_team}"),
            user_id=world.ids.get(f"user:{key_user}"),
            models=[MODEL_NAME],
        )
        world.ids[symbol] = issued_key.key.id
    mcp = await control.mcp_servers.create(
        org.id,
        {"name": "world-mcp", "transport": "STREAMABLE_HTTP", "endpoint_url": "https://mcp.world.test/"},
    )
    world.ids["mcp_server"] = mcp.id
    await control.mcp_grants.add_keys(
        mcp.id, [world.ids[s] for s in ("key:user", "key:team", "key:org", "key:team2")]
    )
    world.ids["mcp_stdio_command"] = (await control.mcp_servers.allow(f"world-{label}-{suffix}")).id
    await _meters(runtime, world)
    await _rows_without_service(runtime, world)
    async with runtime.sessions() as session:
        event = (
            await session.execute(
                select(AuditEvent.id)
                .where(AuditEvent.organisation_id == org.id)
                .order_by(AuditEvent.at)
                .limit(1)
            )
        ).scalar_one()
    world.ids["event"] = event
    return world


def _owner_schedule(world: World, symbol: str) -> dict[str, Any]:
    team, user = OWNED[symbol]
    if user:
        return {"owner_type": OwnerType.USER, "owner_id": world.id(f"user:{user}")}
    if team:
        return {"owner_type": OwnerType.TEAM, "owner_id": world.id(f"team:{team}")}
    return {"owner_type": OwnerType.ORG, "owner_id": None}


async def _meters(runtime: Runtime, world: World) -> None:
    for scope in ("user", "team", "org"):
        budget = await runtime.budgets.create_budget(
            world.organisation_id,
            f"budget-{scope}",
            amount_nanos_usd=10_000_000_000,
            **_owner_schedule(world, f"budget:{scope}"),
        )
        world.ids[f"budget:{scope}"] = budget.id
        quota = await runtime.budgets.create_quota(
            world.organisation_id,
            f"quota-{scope}",
            metric=QuotaMetric.REQUESTS,
            limit=1000,
            **_owner_schedule(world, f"quota:{scope}"),
        )
        world.ids[f"quota:{scope}"] = quota.id


async def _rows_without_service(runtime: Runtime, world: World) -> None:
    """Team memberships, sign-in sessions, an invitation and usage records (ORM inserts)."""
    now = datetime.now(UTC)
    async with runtime.sessions() as session:
        for team, members in TEAMS.items():
            for user, role in members.items():
                session.add(
                    TeamMember(team_id=world.id(f"team:{team}"), user_id=world.id(f"user:{user}"), role=role)
                )
        for user in USERS:
            row = AuthSession(
                id=new_id(),
                user_id=world.id(f"user:{user}"),
                token_hash=secret_hash(secrets.token_hex(16)),
                csrf_token_hash=secret_hash(secrets.token_hex(16)),
                expires_at=now + timedelta(days=1),
            )
            session.add(row)
            world.ids[f"session:{user}"] = row.id
        invitation = Invitation(
            id=new_id(),
            organisation_id=world.organisation_id,
            email=f"invitee-{secrets.token_hex(4)}@world.test",
            role=Role.USER,
            token_hash=secret_hash(secrets.token_hex(16)),
            expires_at=now + timedelta(days=7),
        )
        session.add(invitation)
        world.ids["invitation"] = invitation.id
        for scope in ("user", "team", "org"):
            record_team, record_user = OWNED[f"record:{scope}"]
            key = {"user": "key:user", "team": "key:team", "org": "key:org"}[scope]
            record = UsageRecord(
                id=secrets.token_hex(16),
                request_id=secrets.token_hex(16),
                timestamp=now - timedelta(minutes=5),
                organisation_id=world.organisation_id,
                team_id=world.ids.get(f"team:{record_team}"),
                user_id=world.ids.get(f"user:{record_user}"),
                api_key_id=world.id(key),
                model_id=world.id("model"),
                model=MODEL_NAME,
                provider_id=world.id("provider"),
                provider="MOCK",
                endpoint="/v1/chat/completions",
                status="success",
                http_status=200,
                prompt_tokens=10,
                completion_tokens=5,
                total_tokens=15,
                total_cost_nanos_usd=1000,
            )
            session.add(record)
            world.ids[f"record:{scope}"] = record.id
        await session.commit()


@dataclass
class WorldServer:
    """A running gateway + control plane shared by one test module, with its two worlds A and B."""

    server: ThreadedServer
    app: Any  # odock.app.OdockApp
    a: World
    b: World
    fresh_count: int = 0

    @property
    def runtime(self) -> Runtime:
        """The live runtime of the server."""
        runtime: Runtime = self.app.runtime
        return runtime

    def build(self, label: str) -> World:
        """A new world (for a case that changes or deletes what it touches)."""
        self.fresh_count += 1
        world: World = self.server.run(build_world(self.runtime, f"{label}{self.fresh_count}"), 60)
        return world
