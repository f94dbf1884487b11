"""Usage dead letters through the API (organisation admins, super admin) and the replay command."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from odock.tenancy.tables import Role
from odock.usage.record import UsageEvent
from odock.usage.store import UsageStore
from odock.usage.tables import UsageDeadLetter, UsageRecord
from tests.integration.test_cli import cli_for
from tests.support.api import ControlPlaneUnderTest


def refused_event(organisation_id: str) -> UsageEvent:
    """A usage record of ``organisation_id`` (one the database accepts once the cause is fixed)."""
    record_id = secrets.token_hex(16)
    return UsageEvent(
        id=record_id,
        request_id="req-" + record_id[:8],
        timestamp=datetime.now(UTC),
        endpoint="/v1/chat/completions",
        status="success",
        http_status=200,
        organisation_id=organisation_id,
        prompt_tokens=3,
    )


def dead_letter(
    control_plane: ControlPlaneUnderTest, event: UsageEvent, reason: str = "23514 refused"
) -> str:
    """Keep ``event`` as a dead letter, as the usage writer does; its id."""
    gateway = control_plane.gateway

    async def keep() -> None:
        store = UsageStore(gateway.runtime.sessions)
        try:
            await store.dead_letter(event, reason)
        finally:
            await store.close()

    gateway.run(keep())
    return event.id


def listed(response: Any) -> list[str]:
    """The ids of a dead-letter page."""
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_an_org_admin_pages_through_the_organisations_dead_letters(
    control_plane: ControlPlaneUnderTest,
) -> None:
    """The list holds the organisation's dead letters only, newest first, across pages; managers get 403."""
    org, other = control_plane.organisation(), control_plane.organisation()
    mine = [dead_letter(control_plane, refused_event(org)) for _ in range(3)]
    dead_letter(control_plane, refused_event(other))
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    path = f"/api/organisations/{org}/usage/dead-letters"

    first = admin.get(path, params={"limit": 2})
    second = admin.get(path, params={"limit": 2, "cursor": first.json()["next_cursor"]})
    assert listed(first) + listed(second) == list(reversed(mine))
    assert second.json()["next_cursor"] is None
    item = first.json()["items"][0]
    assert item["error"] == "23514 refused"
    assert orjson.loads(item["event"])["organisation_id"] == org

    assert control_plane.caller(Role.MANAGER, org).get(path).status_code == 403
    assert admin.get(f"/api/organisations/{other}/usage/dead-letters").status_code == 403
    assert admin.get("/api/admin/usage/dead-letters").status_code == 403


def test_the_super_admin_lists_dead_letters_of_any_organisation(control_plane: ControlPlaneUnderTest) -> None:
    """``/api/admin/usage/dead-letters`` filtered by organisation answers that organisation's dead letters."""
    org = control_plane.organisation()
    kept = dead_letter(control_plane, refused_event(org))
    response = control_plane.admin.get("/api/admin/usage/dead-letters", params={"organisation_id": org})
    assert listed(response) == [kept]
    forged = control_plane.admin.get("/api/admin/usage/dead-letters", params={"cursor": "W1siYSJdLCJ4Il0"})
    assert forged.status_code == 422


def test_replay_stores_what_the_database_now_accepts_and_keeps_the_rest(
    control_plane: ControlPlaneUnderTest,
) -> None:
    """``odock usage replay-dead-letters`` stores and deletes a replayable dead letter, keeps a broken one."""
    org = control_plane.organisation()
    good = dead_letter(control_plane, refused_event(org))
    broken_event = refused_event(org)
    broken = dead_letter(control_plane, broken_event)
    untouched = dead_letter(control_plane, refused_event(control_plane.organisation()))
    gateway = control_plane.gateway

    async def corrupt() -> None:
        async with gateway.runtime.sessions() as session:
            row = await session.get(UsageDeadLetter, broken)
            assert row is not None
            row.event = '{"id": "truncated'
            await session.commit()

    gateway.run(corrupt())
    done = cli_for(gateway).run("usage", "replay-dead-letters", "--organisation", org, "--json")
    assert done.returncode == 1, done.stderr  # one was kept
    results = {row["id"]: row for row in orjson.loads(done.stdout)}
    assert results[good]["result"] == "stored"
    assert results[broken]["result"] == "kept"
    assert results[broken]["error"].startswith("not replayable")
    assert untouched not in results

    async def state() -> tuple[set[str], set[str]]:
        async with gateway.runtime.sessions() as session:
            letters = set((await session.execute(select(UsageDeadLetter.id))).scalars())
            records = set((await session.execute(select(UsageRecord.id))).scalars())
        return letters, records

    letters, records = gateway.run(state())
    assert good in records
    assert good not in letters
    assert {broken, untouched} <= letters
