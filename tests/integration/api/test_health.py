"""``GET /api/admin/health``: the gateway's health for the super admin, refused to everyone else."""

from __future__ import annotations

from datetime import datetime

from odock.db.migrate import head_revision
from odock.tenancy.tables import Role
from tests.conftest import BACKEND
from tests.integration.api.test_dead_letters import dead_letter, refused_event
from tests.support.api import ControlPlaneUnderTest

PATH = "/api/admin/health"


def test_signed_out_callers_get_401(control_plane: ControlPlaneUnderTest) -> None:
    """No credential: 401 ``unauthorized`` in the API's error shape."""
    answer = control_plane.client().get(PATH)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_organisation_admins_and_below_get_403(control_plane: ControlPlaneUnderTest) -> None:
    """The health of the gateway is the operator's: an org admin (and a manager) is forbidden."""
    org = control_plane.organisation()
    for role in (Role.ORG_ADMIN, Role.MANAGER):
        answer = control_plane.caller(role, org).get(PATH)
        assert answer.status_code == 403, (role, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"


def test_the_super_admin_sees_every_part(control_plane: ControlPlaneUnderTest) -> None:
    """Database at head, the backend's cache mode, the usage queue's bound, and the process."""
    answer = control_plane.admin.get(PATH)
    assert answer.status_code == 200, answer.text
    health = answer.json()
    database = health["database"]
    assert (database["reachable"], database["at_head"], database["revision"]) == (True, True, head_revision())
    assert database["backend"] == ("postgresql" if BACKEND == "production" else "sqlite")
    assert database["round_trip_ms"] >= 0
    cache = health["cache"]
    assert (cache["mode"], cache["reachable"], cache["status"]) == (
        ("redis", True, "ok") if BACKEND == "production" else ("embedded", True, "ok")
    )
    runtime = control_plane.gateway.runtime
    queue = health["usage_queue"]
    assert (queue["backlog_max"], queue["backlogged"]) == (runtime.settings.usage_backlog_max, False)
    figures = {"queued", "backlog", "oldest_queued_age_seconds", "written", "flush_errors", "dropped"}
    assert figures <= set(queue)
    process = health["process"]
    assert (process["components"], process["workers"]) == ("all", 1)
    assert process["uptime_seconds"] >= 0
    assert datetime.fromisoformat(health["checked_at"]) >= datetime.fromisoformat(process["started_at"])


def test_a_new_dead_letter_is_counted_and_degrades_the_report(control_plane: ControlPlaneUnderTest) -> None:
    """A record the writer kept as a dead letter (through the real store) raises the count by one."""
    before = control_plane.admin.get(PATH).json()["dead_letters"]["count"]
    dead_letter(control_plane, refused_event(control_plane.organisation()))
    health = control_plane.admin.get(PATH).json()
    letters = health["dead_letters"]
    assert letters["count"] == before + 1
    assert (letters["status"], health["status"]) == ("degraded", "degraded")
    assert letters["newest_at"] is not None
