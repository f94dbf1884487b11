"""Usage records through the control-plane API: filters, sorts, cursor walks, detail and reach."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from odock.tenancy.tables import Role, TeamMemberRole
from tests.conftest import provision
from tests.integration.conftest import usage_records
from tests.support.api import Caller, ControlPlaneUnderTest
from tests.support.usage_records import BASE_TIME, seed, spread, usage_row


def records_path(organisation_id: str) -> str:
    """The records list of an organisation."""
    return f"/api/organisations/{organisation_id}/usage/records"


def walk(caller: Caller, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, following next_cursor to the end."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = caller.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the walk did not end")


def ids(items: list[dict[str, Any]]) -> list[str]:
    """The ids of listed records, in order."""
    return [item["id"] for item in items]


def test_walk_newest_first_visits_every_record_once(control_plane: ControlPlaneUnderTest) -> None:
    """Walking pages by cursor lists every record exactly once, newest first, ties broken by id."""
    org = control_plane.organisation()
    rows = spread(org, 23, timedelta(minutes=1))
    rows += [usage_row(org, timestamp=BASE_TIME + timedelta(minutes=5)) for _ in range(4)]  # ties
    seed(control_plane.gateway, rows)
    expected = [r["id"] for r in sorted(rows, key=lambda r: (r["timestamp"], r["id"]), reverse=True)]
    assert ids(walk(control_plane.admin, records_path(org), limit=5)) == expected
    assert ids(walk(control_plane.admin, records_path(org), limit=4, order="asc")) == expected[::-1]


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_sort_by_latency_and_cost(control_plane: ControlPlaneUnderTest, order: str) -> None:
    """Sorting by latency or cost (unpriced records as the cheapest) walks in that order without gaps."""
    org = control_plane.organisation()
    rows = [
        usage_row(
            org, latency_ms=float(i % 5) * 10.5, total_cost_nanos_usd=None if i % 4 == 0 else (i % 3) * 700
        )
        for i in range(17)
    ]
    seed(control_plane.gateway, rows)
    reverse = order == "desc"
    by_latency = sorted(rows, key=lambda r: (r["latency_ms"], r["id"]), reverse=reverse)
    listed = walk(control_plane.admin, records_path(org), limit=3, sort="latency_ms", order=order)
    assert ids(listed) == [r["id"] for r in by_latency]

    def cost(row: dict[str, Any]) -> int:
        return -1 if row["total_cost_nanos_usd"] is None else int(row["total_cost_nanos_usd"])

    by_cost = sorted(rows, key=lambda r: (cost(r), r["id"]), reverse=reverse)
    listed = walk(control_plane.admin, records_path(org), limit=3, sort="total_cost", order=order)
    assert ids(listed) == [r["id"] for r in by_cost]


FILTERS: list[tuple[dict[str, Any], Any]] = [
    ({"status": "success"}, lambda r: 200 <= r["http_status"] < 400),
    ({"status": "error"}, lambda r: not 200 <= r["http_status"] < 400),
    ({"status": "429"}, lambda r: r["http_status"] == 429),
    ({"provider": "anthropic"}, lambda r: r["provider"] == "anthropic"),
    ({"model": ["gpt-4o", "claude"]}, lambda r: r["model"] in ("gpt-4o", "claude")),
    ({"model_id": "model-claude"}, lambda r: r["model_id"] == "model-claude"),
    ({"team_id": "team-a"}, lambda r: r["team_id"] == "team-a"),
    ({"user_id": "user-u"}, lambda r: r["user_id"] == "user-u"),
    ({"api_key_id": ["key-1", "key-2"]}, lambda r: r["api_key_id"] in ("key-1", "key-2")),
    ({"stream": "true"}, lambda r: r["stream"]),
    ({"q": "abc"}, lambda r: r["request_id"].startswith("abc")),
    (
        {"from": (BASE_TIME + timedelta(hours=3)).isoformat(), "to": "2026-03-01T07:00:00"},
        lambda r: BASE_TIME + timedelta(hours=3) <= r["timestamp"] < BASE_TIME + timedelta(hours=7),
    ),
    ({"model": "claude", "status": "error"}, lambda r: r["model"] == "claude" and r["http_status"] >= 400),
]


@pytest.fixture
def varied(control_plane: ControlPlaneUnderTest) -> tuple[str, list[dict[str, Any]]]:
    """An organisation with 40 records varying every filtered column."""
    org = control_plane.organisation()
    rows = []
    for i in range(40):
        claude = i % 3 == 0
        rows.append(
            usage_row(
                org,
                timestamp=BASE_TIME + timedelta(minutes=17 * i),
                http_status=(200, 302, 429, 502, 200)[i % 5],
                provider="anthropic" if claude else "openai",
                model="claude" if claude else ("gpt-4o" if i % 2 else "gpt-4o-mini"),
                model_id="model-claude" if claude else "model-gpt",
                team_id="team-a" if i % 4 == 0 else None,
                user_id="user-u" if i % 4 == 1 else None,
                api_key_id=f"key-{i % 6}",
                stream=i % 7 == 0,
                request_id=("abc" if i % 8 == 0 else "zzz") + f"-{i:03d}",
            )
        )
    seed(control_plane.gateway, rows)
    return org, rows


@pytest.mark.parametrize(("params", "keep"), FILTERS)
def test_filters_select_exactly_the_matching_records(
    control_plane: ControlPlaneUnderTest,
    varied: tuple[str, list[dict[str, Any]]],
    params: dict[str, Any],
    keep: Any,
) -> None:
    """Each filter (and a combination) lists exactly the records that match it."""
    org, rows = varied
    expected = {r["id"] for r in rows if keep(r)}
    assert expected, "the fixture must exercise the filter"
    listed = walk(control_plane.admin, records_path(org), limit=200, **params)
    assert set(ids(listed)) == expected
    assert len(listed) == len(expected)


def test_request_id_search_is_a_literal_prefix(control_plane: ControlPlaneUnderTest) -> None:
    """The request id search treats every character literally ("_" is no wildcard) and matches prefixes."""
    org = control_plane.organisation()
    rows = [usage_row(org, request_id=r) for r in ("a_b-1", "axb-2", "a_b", "A_b-3", "za_b")]
    seed(control_plane.gateway, rows)
    listed = walk(control_plane.admin, records_path(org), q="a_b")
    assert set(ids(listed)) == {rows[0]["id"], rows[2]["id"]}


def test_detail_of_real_gateway_traffic(control_plane: ControlPlaneUnderTest) -> None:
    """A request sent through the gateway is listed and its detail carries every stored field."""
    gateway = control_plane.gateway
    tenant = provision(gateway)
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {tenant.secret}", "X-Request-Id": "detail-test-0001"},
        json={"model": tenant.model, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text
    (stored,) = usage_records(gateway, "detail-test-0001")
    listed = control_plane.admin.get(records_path(tenant.organisation_id), params={"q": "detail-test"}).json()
    assert ids(listed["items"]) == [stored.id]
    detail = control_plane.admin.get(f"{records_path(tenant.organisation_id)}/{stored.id}").json()
    assert detail["request_id"] == "detail-test-0001"
    assert detail["api_key_id"] == tenant.key_id
    assert detail["model"] == tenant.model
    assert detail["model_id"] == tenant.model_id
    assert detail["http_status"] == 200
    assert detail["tokens"]["total_tokens"] == stored.total_tokens
    assert detail["latency_ms"] == pytest.approx(stored.latency_ms)
    assert detail["gateway_overhead_ms"] == pytest.approx(stored.gateway_overhead_ms)
    assert detail["metadata"]["schema_version"] == "usage_metadata_v1"
    assert detail["billing"] == stored.billing
    assert detail["provider_usage"] == stored.provider_usage
    assert detail["token_details"] == stored.tokens
    for field in (
        "routing",
        "bytes_in",
        "bytes_out",
        "provider_request_id",
        "upstream_latency_ms",
        "trace_id",
    ):
        assert field in detail
    same = control_plane.admin.get(f"/api/admin/usage/records/{stored.id}").json()
    assert same == detail


def test_detail_shows_cost_as_nanos_and_usd(control_plane: ControlPlaneUnderTest) -> None:
    """A priced record's detail gives its cost in nanos and as a USD string, and its pricing snapshot."""
    org = control_plane.organisation()
    row = usage_row(
        org,
        total_cost_nanos_usd=5_182_000,
        billing={"total_cost_nanos_usd": 5_182_000, "pricing": {"input": {"text_cost_per_1k_tokens": 0.002}}},
        metadata={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
        routing={"rerouted": True, "attempts": [{"provider": "openai", "outcome": "failed"}]},
    )
    seed(control_plane.gateway, [row])
    detail = control_plane.admin.get(f"{records_path(org)}/{row['id']}").json()
    assert (detail["total_cost_nanos_usd"], detail["total_cost_usd"]) == (5_182_000, "0.005182")
    assert detail["billing"]["pricing"]["input"]["text_cost_per_1k_tokens"] == 0.002
    assert detail["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert detail["rerouted"] is True


@pytest.fixture
def reach_world(control_plane: ControlPlaneUnderTest) -> dict[str, Any]:
    """An organisation with two teams, a manager of team A, a member of team A, and their records."""

    async def teams(org: str) -> tuple[str, str]:
        control = control_plane.gateway.runtime.control
        return (await control.tenancy.create_team(org, "a")).id, (
            await control.tenancy.create_team(org, "b")
        ).id

    org = control_plane.organisation()
    team_a, team_b = control_plane.gateway.run(teams(org))
    manager = control_plane.caller(Role.MANAGER, org, teams={team_a: TeamMemberRole.MANAGER})
    member = control_plane.caller(Role.USER, org, teams={team_a: TeamMemberRole.MEMBER})
    other_member = control_plane.caller(Role.USER, org, teams={team_a: TeamMemberRole.MEMBER})
    rows = {
        "team_a": usage_row(org, team_id=team_a),
        "team_b": usage_row(org, team_id=team_b),
        "org": usage_row(org),
        "member_own": usage_row(org, user_id=member.user_id),
        "manager_own": usage_row(org, user_id=manager.user_id),
        "other_member_own": usage_row(org, user_id=other_member.user_id),
    }
    seed(control_plane.gateway, list(rows.values()))
    return {"org": org, "manager": manager, "member": member, "rows": rows}


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        ("admin", {"team_a", "team_b", "org", "member_own", "manager_own", "other_member_own"}),
        ("org_admin", {"team_a", "team_b", "org", "member_own", "manager_own", "other_member_own"}),
        ("manager", {"team_a", "manager_own"}),
        ("member", {"team_a", "member_own"}),
    ],
)
def test_reach_narrows_lists_and_details(
    control_plane: ControlPlaneUnderTest, reach_world: dict[str, Any], who: str, visible: set[str]
) -> None:
    """Each role lists exactly the records in its reach, and reading any other record is 403."""
    org, rows = reach_world["org"], reach_world["rows"]
    caller = {
        "admin": control_plane.admin,
        "org_admin": control_plane.caller(Role.ORG_ADMIN, org),
        "manager": reach_world["manager"],
        "member": reach_world["member"],
    }[who]
    listed = set(ids(walk(caller, records_path(org))))
    assert listed == {rows[name]["id"] for name in visible}
    for name, row in rows.items():
        status = caller.get(f"{records_path(org)}/{row['id']}").status_code
        assert status == (200 if name in visible else 403), name


def test_other_organisations_are_out_of_reach(
    control_plane: ControlPlaneUnderTest, reach_world: dict[str, Any]
) -> None:
    """Another organisation's admin gets 403 on lists and 404 on records; /admin is for super admins."""
    org, rows = reach_world["org"], reach_world["rows"]
    stranger_org = control_plane.organisation()
    stranger = control_plane.caller(Role.ORG_ADMIN, stranger_org)
    assert stranger.get(records_path(org)).status_code == 403
    assert stranger.get(f"{records_path(stranger_org)}/{rows['org']['id']}").status_code == 404
    assert stranger.get(records_path(stranger_org)).json()["items"] == []
    assert stranger.get("/api/admin/usage/records").status_code == 403
    assert (
        reach_world["member"].get(f"/api/admin/usage/records/{rows['member_own']['id']}").status_code == 403
    )


def test_admin_list_filters_by_organisation(control_plane: ControlPlaneUnderTest) -> None:
    """The super admin's cross-organisation list narrows to the organisations asked for."""
    first, second = control_plane.organisation(), control_plane.organisation()
    rows = spread(first, 3, timedelta(seconds=1)) + spread(second, 2, timedelta(seconds=1))
    seed(control_plane.gateway, rows)
    listed = walk(control_plane.admin, "/api/admin/usage/records", organisation_id=[first, second])
    assert set(ids(listed)) == {r["id"] for r in rows}
    listed = walk(control_plane.admin, "/api/admin/usage/records", organisation_id=second)
    assert {item["organisation_id"] for item in listed} == {second}


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
        {"from": "1066-10-14T00:00:00Z"},
        {"status": "fine"},
        {"q": "abc%"},
        {"model": "bad\x00name"},
        {"team_id": "../etc"},
        {"sort": "cost"},
        {"limit": "0"},
    ],
)
def test_bad_parameters_are_422(control_plane: ControlPlaneUnderTest, params: dict[str, str]) -> None:
    """Malformed filters, ranges, sorts and cursors are refused with 422 naming the parameter."""
    org = control_plane.organisation()
    response = control_plane.admin.get(records_path(org), params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_cursor_of_another_sort_is_422(control_plane: ControlPlaneUnderTest) -> None:
    """A cursor from a timestamp-sorted walk is refused by a latency-sorted one."""
    org = control_plane.organisation()
    seed(control_plane.gateway, spread(org, 3, timedelta(seconds=1)))
    cursor = control_plane.admin.get(records_path(org), params={"limit": 1}).json()["next_cursor"]
    response = control_plane.admin.get(records_path(org), params={"cursor": cursor, "sort": "latency_ms"})
    assert response.status_code == 422


def test_unknown_record_is_404(control_plane: ControlPlaneUnderTest) -> None:
    """An unknown record id (or one that is not an id at all) is 404."""
    org = control_plane.organisation()
    for record_id in ("0" * 32, "bad%00id"):
        assert control_plane.admin.get(f"{records_path(org)}/{record_id}").status_code == 404
