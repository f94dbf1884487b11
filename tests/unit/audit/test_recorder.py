"""The audit recorder: every configuration change becomes one event in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.audit.context import AuditActor, acting_as
from odock.audit.recorder import CONFIGURATION_TABLES, MASK, change_action, is_secret, json_value
from odock.identity.tables import AuthSession
from odock.ids import new_id
from odock.providers.tables import ProviderType
from odock.tenancy.tables import Organisation, Role, TeamMember, TeamMemberRole, User
from odock.usage.tables import UsageRecord
from odock.web.api.routes.audit import AUDITED_TABLES
from tests.unit.audit.conftest import Events

ALICE = AuditActor(
    kind="user", label="alice@example.test", user_id="u-alice", ip="10.0.0.7", request_id="r-1"
)


async def test_create_is_recorded_with_the_actor(control: ControlPlane, events: Events) -> None:
    """Creating an organisation records a create event naming the actor, IP and request, with the row."""
    with acting_as(ALICE):
        org = await control.tenancy.create_organisation("acme", contact="ops@acme.test")
    [event] = await events("organisations")
    assert (event.action, event.resource_id, event.organisation_id) == ("create", org.id, org.id)
    assert (event.actor, event.actor_kind, event.actor_user_id) == ("alice@example.test", "user", "u-alice")
    assert (event.ip, event.request_id) == ("10.0.0.7", "r-1")
    assert event.before is None
    assert event.after is not None
    assert event.after["name"] == "acme"
    assert event.after["contact"] == "ops@acme.test"
    assert event.after["created_at"] == org.created_at.isoformat()


async def test_without_an_actor_changes_are_the_systems(control: ControlPlane, events: Events) -> None:
    """A change made outside any actor context is attributed to the system actor."""
    await control.tenancy.create_organisation("acme")
    [event] = await events("organisations")
    assert (event.actor_kind, event.actor, event.actor_user_id, event.ip) == ("system", "system", None, None)


async def test_update_records_only_changed_columns(control: ControlPlane, events: Events) -> None:
    """An update records the changed columns and the id, before and after."""
    org = await control.tenancy.create_organisation("acme", contact="old@acme.test")
    await control.tenancy.update_organisation(org.id, contact="new@acme.test")
    event = (await events("organisations"))[-1]
    assert event.action == "update"
    assert event.before == {"id": org.id, "contact": "old@acme.test"}
    assert event.after == {"id": org.id, "contact": "new@acme.test"}


async def test_delete_records_the_row_before(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], events: Events
) -> None:
    """Deleting a row through the ORM records its values as ``before``."""
    org = await control.tenancy.create_organisation("acme")
    team = await control.tenancy.create_team(org.id, "red")
    async with sessions() as session:
        row = await session.get(type(team), team.id)
        await session.delete(row)
        await session.commit()
    event = (await events("teams"))[-1]
    assert (event.action, event.resource_id, event.organisation_id) == ("delete", team.id, org.id)
    assert event.before is not None
    assert event.before["name"] == "red"
    assert event.after is None


async def test_api_key_hash_is_masked(control: ControlPlane, events: Events) -> None:
    """An API key's hash never reaches the log; its preview does."""
    org = await control.tenancy.create_organisation("acme")
    issued = await control.keys.create(org.id, "ci")
    [event] = await events("api_keys")
    assert event.after is not None
    assert event.after["key_hash"] == MASK
    assert event.after["key_preview"] == issued.key.key_preview
    assert issued.secret not in str(event.after)


async def test_rotation_masks_old_and_new_hash(control: ControlPlane, events: Events) -> None:
    """Rotating a key records the change of hash, both sides masked."""
    org = await control.tenancy.create_organisation("acme")
    issued = await control.keys.create(org.id, "ci")
    await control.keys.rotate(issued.key.id)
    event = (await events("api_keys"))[-1]
    assert event.action == "update"
    assert event.before is not None
    assert event.after is not None
    assert event.before["key_hash"] == MASK == event.after["key_hash"]
    assert event.after["rotation_count"] == 1


async def test_provider_key_secret_is_masked(control: ControlPlane, events: Events) -> None:
    """A provider key's stored envelope is masked and its plaintext appears nowhere."""
    org = await control.tenancy.create_organisation("acme")
    provider = await control.providers.create(org.id, "mock", ProviderType.MOCK)
    await control.provider_keys.add(provider.id, "primary", secret="sk-very-secret-upstream")
    [event] = await events("provider_api_keys")
    assert event.after is not None
    assert event.after["key"] == MASK
    assert event.organisation_id == org.id
    assert "sk-very-secret-upstream" not in str(event.after)


async def test_bulk_delete_of_grants_is_recorded(control: ControlPlane, events: Events) -> None:
    """Replacing a key's grants (a bulk DELETE statement) records one delete per removed grant."""
    org = await control.tenancy.create_organisation("acme")
    model = await control.models.create(org.id, "m1")
    await control.models.create(org.id, "m2")
    issued = await control.keys.create(org.id, "ci", models=["m1"])
    await control.keys.set_grants(issued.key.id, ["m2"])
    grants = await events("api_key_model_access")
    assert [e.action for e in grants] == ["create", "delete", "create"]
    deleted = grants[1]
    assert deleted.resource_id == f"{issued.key.id}/{model.id}"
    assert deleted.organisation_id == org.id
    assert deleted.before is not None
    assert deleted.before["model_id"] == model.id


async def test_bulk_update_records_each_row(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], events: Events
) -> None:
    """A bulk UPDATE statement on a configuration table records each changed row."""
    org = await control.tenancy.create_organisation("acme")
    first = await control.tenancy.create_team(org.id, "red")
    second = await control.tenancy.create_team(org.id, "blue")
    async with sessions() as session:
        await session.execute(
            update(type(first)).where(type(first).organisation_id == org.id).values(policies={"x": 1})
        )
        await session.commit()
    updates = [e for e in await events("teams") if e.action == "update"]
    assert sorted(e.resource_id or "" for e in updates) == sorted([first.id, second.id])
    assert all(e.after == {"id": e.resource_id, "policies": {"x": 1}} for e in updates)
    assert all(e.before == {"id": e.resource_id, "policies": {}} for e in updates)


async def test_bulk_delete_without_matches_records_nothing(
    sessions: async_sessionmaker[AsyncSession], events: Events
) -> None:
    """A bulk DELETE that matches no row records no event."""
    async with sessions() as session:
        await session.execute(delete(Organisation).where(Organisation.name == "nobody"))
        await session.commit()
    assert await events() == []


async def test_password_hash_is_masked_and_logins_are_not_updates(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], events: Events
) -> None:
    """A password change is recorded masked; a login's last_login_at touch is not an event."""
    user = await control.users.create_user("bob@example.test")
    async with sessions() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.password_hash = "$argon2id$secret"
        await session.commit()
        row.last_login_at = datetime.now(UTC)
        await session.commit()
    updates = [e for e in await events("users") if e.action == "update"]
    assert len(updates) == 1
    assert updates[0].after == {"id": user.id, "password_hash": MASK}


async def test_sign_in_and_out_are_events_but_activity_is_not(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], events: Events
) -> None:
    """A new session is a login, its revocation a logout; touching last_seen_at records nothing."""
    org = await control.tenancy.create_organisation("acme")
    user = await control.users.create_user("bob@example.test", organisation_id=org.id)
    now = datetime.now(UTC)
    login = AuthSession(
        id=new_id(),
        user_id=user.id,
        token_hash="t" * 64,
        csrf_token_hash="c" * 64,
        ip="198.51.100.4",
        expires_at=now + timedelta(hours=1),
    )
    async with sessions() as session:
        session.add(login)
        await session.commit()
        login.last_seen_at = now + timedelta(minutes=1)
        await session.commit()
        login.revoked_at = now + timedelta(minutes=2)
        await session.commit()
    recorded = await events("auth_sessions")
    assert [e.action for e in recorded] == ["login", "logout"]
    assert recorded[0].organisation_id == org.id
    # Nobody is signed in while signing in: the login is the user's own, from the session's address.
    assert (recorded[0].actor_kind, recorded[0].actor, recorded[0].actor_user_id) == (
        "user",
        user.email,
        user.id,
    )
    assert recorded[0].ip == "198.51.100.4"
    assert recorded[0].after is not None
    assert recorded[0].after["token_hash"] == MASK == recorded[0].after["csrf_token_hash"]


async def test_team_membership_finds_its_organisation(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], events: Events
) -> None:
    """A team membership (no organisation column) is recorded under its team's organisation."""
    org = await control.tenancy.create_organisation("acme")
    team = await control.tenancy.create_team(org.id, "red")
    user = await control.users.create_user("bob@example.test", organisation_id=org.id, role=Role.MANAGER)
    async with sessions() as session:
        session.add(TeamMember(team_id=team.id, user_id=user.id, role=TeamMemberRole.MANAGER))
        await session.commit()
    [event] = await events("team_members")
    assert (event.action, event.organisation_id, event.resource_id) == (
        "create",
        org.id,
        f"{team.id}/{user.id}",
    )


async def test_rolled_back_change_leaves_no_event(
    sessions: async_sessionmaker[AsyncSession], events: Events
) -> None:
    """A flushed change that is rolled back takes its audit event with it."""
    async with sessions() as session:
        session.add(Organisation(id=new_id(), name="ghost"))
        await session.flush()
        await session.rollback()
    assert await events() == []


async def test_usage_records_are_not_audited(
    sessions: async_sessionmaker[AsyncSession], events: Events
) -> None:
    """Writing usage (not configuration) records no audit event."""
    async with sessions() as session:
        session.add(
            UsageRecord(
                id=new_id(),
                request_id="r",
                timestamp=datetime.now(UTC),
                endpoint="/v1/chat/completions",
                status="success",
                http_status=200,
            )
        )
        await session.commit()
        assert (await session.execute(select(UsageRecord))).scalars().first() is not None
    assert await events() == []


def test_values_are_json_ready() -> None:
    """Datetimes become ISO 8601, enums their value, secrets the mask, JSON stays as is."""
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert json_value("users", "created_at", at) == "2024-05-01T12:00:00+00:00"
    assert json_value("users", "role", Role.MANAGER) == "MANAGER"
    assert json_value("models", "pricing", {"input": 1}) == {"input": 1}
    assert json_value("provider_api_keys", "key", "envelope") == MASK
    assert json_value("users", "password_hash", None) is None
    assert is_secret("admin_tokens", "token_hash")
    assert not is_secret("models", "key")


def test_bookkeeping_only_updates_are_dropped() -> None:
    """An update of updated_at alone is no event; an auth session's other updates are none either."""
    assert change_action("teams", "update", {"id": "t"}, {"id": "t", "updated_at": "x"}) is None
    assert change_action("teams", "update", {}, {"id": "t", "name": "n"}) == "update"
    assert change_action("auth_sessions", "update", {}, {"id": "s", "expires_at": "x"}) is None
    assert change_action("auth_sessions", "delete", {"id": "s"}, None) is None


def test_the_api_filters_every_audited_table() -> None:
    """The audit API's resource_type filter names exactly the tables the recorder audits."""
    assert AUDITED_TABLES == CONFIGURATION_TABLES
