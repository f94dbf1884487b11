"""Budgets and quotas through the control-plane API: validation, windows, reach, and the gateway's view."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from odock.budgets.tables import MeterWindow
from odock.tenancy.tables import Role, TeamMemberRole
from tests.integration.api.test_api_keys import Catalogue, catalogue, create_key, error, walk
from tests.support.api import Caller, ControlPlaneUnderTest
from tests.support.governance import MOCK_CONFIG, PRICING, REQUEST_COST, bearer, chat_body


def budgets_path(cat: Catalogue, kind: str = "budgets") -> str:
    """The organisation's budget (or quota) collection."""
    return f"/api/organisations/{cat.organisation_id}/{kind}"


def create(caller: Caller, cat: Catalogue, kind: str = "budgets", **body: Any) -> dict[str, Any]:
    """Create a budget (1 USD, monthly, organisation-wide unless told otherwise) or quota."""
    defaults: dict[str, Any] = {"name": "b", "amount_usd": "1"} if kind == "budgets" else {"name": "q"}
    response = caller.post(budgets_path(cat, kind), json={**defaults, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_create_read_update_delete_budget(control_plane: ControlPlaneUnderTest) -> None:
    """A budget is created from a USD string, read with its current window, changed and deleted."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    budget = create(admin, cat, amount_usd="12.5", currency="EUR", thresholds=[80, 50, 80], period="WEEKLY")
    assert (budget["amount_nanos"], budget["amount_usd"], budget["currency"]) == (
        12_500_000_000,
        "12.5",
        "EUR",
    )
    assert budget["thresholds"] == [50, 80]
    assert budget["owner_id"] == cat.organisation_id
    path = f"{budgets_path(cat)}/{budget['id']}"

    detail = admin.get(path).json()
    window = detail["current_window"]
    assert window["limit"] == 12_500_000_000
    assert window["used"] == window["reserved"] == 0
    assert window["remaining_usd"] == "12.5"
    assert detail["recent_windows"] == []
    assert datetime.fromisoformat(window["end"]) - datetime.fromisoformat(window["start"]) == timedelta(
        days=7
    )

    changed = admin.patch(
        path, json={"amount_nanos": 3, "name": "renamed", "active": False, "end_at": "2099-01-01T00:00:00Z"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["amount_usd"], changed.json()["name"]) == ("0.000000003", "renamed")
    assert changed.json()["active"] is False
    assert changed.json()["version"] == 2
    assert admin.patch(path, json={"end_at": None}).json()["end_at"] is None
    assert admin.patch(path, json={"currency": "BTC"}).status_code == 422
    assert admin.delete(path).status_code == 204
    assert error(admin.get(path)) == (404, "not_found")


def test_budget_and_quota_validation(control_plane: ControlPlaneUnderTest) -> None:
    """Amounts, owners, schedules, thresholds, currencies and metrics are validated with 422."""
    cat, elsewhere = catalogue(control_plane), catalogue(control_plane)
    admin = control_plane.admin
    now = datetime.now(UTC)
    refused: list[dict[str, Any]] = [
        {"amount_usd": "1", "amount_nanos": 5},
        {"amount_usd": None},
        {"amount_usd": "1.0000000001"},
        {"amount_usd": "-1"},
        {"amount_nanos": -1, "amount_usd": None},
        {"owner_type": "TEAM"},
        {"owner_type": "ORG", "owner_id": cat.team_id},
        {"owner_type": "TEAM", "owner_id": elsewhere.team_id},
        {"owner_type": "APIKEY", "owner_id": "no-such-key"},
        {"start_at": now.isoformat(), "end_at": (now - timedelta(days=1)).isoformat()},
        {"start_at": "2030-01-01T00:00:00"},
        {"thresholds": [0]},
        {"currency": "BTC"},
        {"period": "HOURLY"},
        {"timezone": "Nowhere/Land"},
    ]
    for body in refused:
        response = admin.post(budgets_path(cat), json={"name": "b", "amount_usd": "1", **body})
        assert response.status_code == 422, (body, response.text)
    owner = admin.post(
        budgets_path(cat),
        json={"name": "b", "amount_usd": "1", "owner_type": "TEAM", "owner_id": elsewhere.team_id},
    )
    assert owner.json()["error"]["param"] == "owner_id"
    for body in ({"metric": "VIBES", "limit": 1}, {"metric": "REQUESTS"}, {"metric": "TOKENS", "limit": -1}):
        assert admin.post(budgets_path(cat, "quotas"), json={"name": "q", **body}).status_code == 422, body


def test_lists_page_and_filter(control_plane: ControlPlaneUnderTest) -> None:
    """Budget and quota lists walk by cursor without duplicates and filter by owner, period, state, name."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    user = control_plane.caller(Role.USER, cat.organisation_id)
    made = [
        create(admin, cat, name="org monthly"),
        create(admin, cat, name="team weekly", owner_type="TEAM", owner_id=cat.team_id, period="WEEKLY"),
        create(admin, cat, name="user daily", owner_type="USER", owner_id=user.user_id, period="DAILY"),
        create(admin, cat, name="eur", currency="EUR", active=False),
        create(admin, cat, name="Team Quarterly", period="QUARTERLY"),
    ]
    walked = walk(admin, budgets_path(cat), limit=2)
    assert [b["id"] for b in walked] == [b["id"] for b in made[::-1]]

    def names(kind: str = "budgets", **params: Any) -> set[str]:
        return {b["name"] for b in walk(admin, budgets_path(cat, kind), **params)}

    assert names(owner_type="TEAM") == {"team weekly"}
    assert names(owner_id=user.user_id) == {"user daily"}
    assert names(period="DAILY") == {"user daily"}
    assert names(active="false") == {"eur"}
    assert names(currency="EUR") == {"eur"}
    assert names(q="team") == {"team weekly", "Team Quarterly"}

    create(admin, cat, "quotas", name="requests", metric="REQUESTS", limit=100)
    create(admin, cat, "quotas", name="tokens", metric="TOKENS", limit=10_000, period="DAILY")
    assert names("quotas", metric="TOKENS") == {"tokens"}
    assert names("quotas", period="MONTHLY") == {"requests"}
    admin_list = walk(admin, "/api/admin/quotas", organisation_id=cat.organisation_id)
    assert {q["name"] for q in admin_list} == {"requests", "tokens"}


def test_window_history_pages_through_past_windows(control_plane: ControlPlaneUnderTest) -> None:
    """The windows list opens with the current window, then earlier used ones (latest version), paged."""
    cat = catalogue(control_plane)
    start = datetime.now(UTC) - timedelta(days=3, hours=1)
    quota = create(
        control_plane.admin,
        cat,
        "quotas",
        metric="REQUESTS",
        limit=10,
        period="DAILY",
        start_at=start.isoformat(),
    )

    async def used_windows() -> None:
        async with control_plane.gateway.runtime.sessions() as session:
            for index, version, used in ((0, 1, 4), (1, 1, 9), (1, 2, 7)):
                begin = start + timedelta(days=index)
                session.add(
                    MeterWindow(
                        key=f"quota:{quota['id']}:v{version}:w{index}",
                        meter_kind="quota",
                        meter_id=quota["id"],
                        version=version,
                        window_index=index,
                        start=begin,
                        end=begin + timedelta(days=1),
                        limit=10,
                        used=used,
                    )
                )
            await session.commit()

    control_plane.gateway.run(used_windows())
    path = f"{budgets_path(cat, 'quotas')}/{quota['id']}"
    windows = walk(control_plane.admin, path + "/windows", limit=1)
    assert [(w["index"], w["used"], w["remaining"]) for w in windows] == [(3, 0, 10), (1, 7, 3), (0, 4, 6)]
    detail = control_plane.admin.get(path).json()
    assert detail["current_window"]["index"] == 3
    assert [w["index"] for w in detail["recent_windows"]] == [1, 0]


def test_reach_of_each_role(control_plane: ControlPlaneUnderTest) -> None:
    """Managers read their teams' budgets (and their keys'), users their own; only admins write."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    manager = control_plane.caller(
        Role.MANAGER, cat.organisation_id, teams={cat.team_id: TeamMemberRole.MANAGER}
    )
    user = control_plane.caller(Role.USER, cat.organisation_id)
    red_key = create_key(admin, cat, type="TEAM", team_id=cat.team_id)
    org_wide = create(admin, cat, name="org")
    red = create(admin, cat, name="red", owner_type="TEAM", owner_id=cat.team_id)
    blue = create(admin, cat, name="blue", owner_type="TEAM", owner_id=cat.other_team_id)
    red_key_budget = create(admin, cat, name="red key", owner_type="APIKEY", owner_id=red_key["id"])
    mine = create(admin, cat, name="mine", owner_type="USER", owner_id=user.user_id)

    def visible(caller: Caller) -> set[str]:
        return {b["name"] for b in walk(caller, budgets_path(cat))}

    assert visible(manager) == {"red", "red key"}
    assert visible(user) == {"mine"}
    for caller, allowed, refused in ((manager, red_key_budget, blue), (user, mine, org_wide)):
        assert caller.get(f"{budgets_path(cat)}/{allowed['id']}").status_code == 200
        assert caller.get(f"{budgets_path(cat)}/{refused['id']}").status_code == 403
        assert caller.patch(f"{budgets_path(cat)}/{allowed['id']}", json={"active": False}).status_code == 403
        assert caller.delete(f"{budgets_path(cat)}/{allowed['id']}").status_code == 403
        assert caller.post(budgets_path(cat), json={"name": "x", "amount_usd": "1"}).status_code == 403
    assert manager.get(f"{budgets_path(cat)}/{red['id']}").status_code == 200


def test_other_organisations_are_invisible(control_plane: ControlPlaneUnderTest) -> None:
    """Another organisation's budget is 404 under one's own path and 403 under its own."""
    mine, theirs = catalogue(control_plane), catalogue(control_plane)
    budget = create(control_plane.admin, theirs)
    quota = create(control_plane.admin, theirs, "quotas", metric="REQUESTS", limit=1)
    org_admin = control_plane.caller(Role.ORG_ADMIN, mine.organisation_id)
    assert error(org_admin.get(f"{budgets_path(mine)}/{budget['id']}")) == (404, "not_found")
    assert error(org_admin.patch(f"{budgets_path(mine)}/{budget['id']}", json={})) == (404, "not_found")
    assert error(org_admin.get(f"{budgets_path(mine, 'quotas')}/{quota['id']}/windows")) == (404, "not_found")
    assert error(org_admin.get(f"{budgets_path(mine, 'quotas')}/{budget['id']}")) == (404, "not_found")
    assert org_admin.get(f"{budgets_path(theirs)}/{budget['id']}").status_code == 403
    assert org_admin.get("/api/admin/budgets").status_code == 403


def test_gateway_sees_budget_changes_at_once(control_plane: ControlPlaneUnderTest) -> None:
    """Lowering a budget through the API makes the next call 402; the window shows what was used."""
    cat = catalogue(control_plane, pricing=PRICING, **MOCK_CONFIG)
    key = create_key(control_plane.admin, cat)
    budget = create(control_plane.admin, cat, amount_usd="1")
    path = f"{budgets_path(cat)}/{budget['id']}"

    def call() -> httpx.Response:
        return httpx.post(
            control_plane.base_url + "/v1/chat/completions",
            headers=bearer(key["secret"]),
            json=chat_body("m1"),
            timeout=30,
        )

    assert call().status_code == 200
    deadline = time.monotonic() + 10
    window = control_plane.admin.get(path).json()["current_window"]
    while window["used"] != REQUEST_COST and time.monotonic() < deadline:
        time.sleep(0.05)
        window = control_plane.admin.get(path).json()["current_window"]
    assert (window["used"], window["reserved"]) == (REQUEST_COST, 0)
    assert window["remaining"] == 1_000_000_000 - REQUEST_COST

    lowered = control_plane.admin.patch(path, json={"amount_nanos": REQUEST_COST + 1})
    assert lowered.status_code == 200
    refused = call()
    assert error(refused) == (402, "budget_exceeded")
    assert refused.json()["error"]["budget_id"] == budget["id"]
    assert control_plane.admin.patch(path, json={"active": False}).status_code == 200
    assert call().status_code == 200
