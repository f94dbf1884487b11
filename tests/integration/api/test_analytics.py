"""Usage analytics through the control-plane API, checked against figures computed in the test."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from odock.tenancy.tables import Role, TeamMemberRole
from tests.support.api import ControlPlaneUnderTest
from tests.support.usage_records import BASE_TIME, seed, usage_row

RANGE = {"from": BASE_TIME.isoformat(), "to": (BASE_TIME + timedelta(days=6)).isoformat()}


def analytics_path(organisation_id: str) -> str:
    """The analytics route of an organisation."""
    return f"/api/organisations/{organisation_id}/usage/analytics"


def analyse(control_plane: ControlPlaneUnderTest, org: str, **params: Any) -> dict[str, Any]:
    """The analytics answer (200) for ``params`` over :data:`RANGE` unless they say otherwise."""
    response = control_plane.admin.get(analytics_path(org), params={**RANGE, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def traffic(control_plane: ControlPlaneUnderTest) -> tuple[str, list[dict[str, Any]]]:
    """61 records over days 0, 1 and 4 of the range (plus one outside it) with varied figures."""
    org = control_plane.organisation()
    rows = []
    for i in range(61):
        day = (0, 1, 4)[i % 3]
        rows.append(
            usage_row(
                org,
                timestamp=BASE_TIME + timedelta(days=day, hours=i % 24, minutes=i),
                latency_ms=float((i * 37) % 101) + 0.25 * (i % 4),
                gateway_overhead_ms=float((i * 13) % 17),
                http_status=(200, 200, 301, 404, 500, 200, 429)[i % 7],
                prompt_tokens=i,
                completion_tokens=2 * i,
                cached_tokens=i % 5,
                reasoning_tokens=i % 3,
                total_cost_nanos_usd=None if i % 10 == 0 else 1000 * i,
                model=f"model-{i % 5}",
                provider="anthropic" if i % 2 else "openai",
            )
        )
    outside = usage_row(org, timestamp=BASE_TIME + timedelta(days=7), latency_ms=10_000.0)
    seed(control_plane.gateway, [*rows, outside])
    return org, rows


def test_totals_and_percentiles_match_the_records(
    control_plane: ControlPlaneUnderTest, traffic: tuple[str, list[dict[str, Any]]]
) -> None:
    """Totals, success rate, averages and latency percentiles equal those computed from the rows in range."""
    org, rows = traffic
    totals = analyse(control_plane, org)["totals"]
    errors = sum(1 for r in rows if not 200 <= r["http_status"] < 400)
    assert totals["requests"] == len(rows)
    assert totals["errors"] == errors
    assert totals["success_rate"] == pytest.approx((len(rows) - errors) / len(rows))
    assert totals["input_tokens"] == sum(r["prompt_tokens"] for r in rows)
    assert totals["output_tokens"] == sum(r["completion_tokens"] for r in rows)
    assert totals["cached_tokens"] == sum(r["cached_tokens"] for r in rows)
    assert totals["reasoning_tokens"] == sum(r["reasoning_tokens"] for r in rows)
    assert totals["total_tokens"] == sum(r["total_tokens"] for r in rows)
    cost = sum(r["total_cost_nanos_usd"] or 0 for r in rows)
    assert totals["cost_nanos_usd"] == cost
    assert totals["average_latency_ms"] == pytest.approx(statistics.fmean(r["latency_ms"] for r in rows))
    assert totals["average_overhead_ms"] == pytest.approx(
        statistics.fmean(r["gateway_overhead_ms"] for r in rows)
    )
    cuts = statistics.quantiles([r["latency_ms"] for r in rows], n=100, method="inclusive")
    latency = totals["latency"]
    assert (latency["p50_ms"], latency["p95_ms"], latency["p99_ms"]) == pytest.approx(
        (cuts[49], cuts[94], cuts[98])
    )
    overhead = statistics.quantiles([r["gateway_overhead_ms"] for r in rows], n=100, method="inclusive")
    assert latency["overhead_p95_ms"] == pytest.approx(overhead[94])


def test_daily_series_is_zero_filled(
    control_plane: ControlPlaneUnderTest, traffic: tuple[str, list[dict[str, Any]]]
) -> None:
    """The daily series has one bucket per day of the range, empty days at zero."""
    org, rows = traffic
    series = analyse(control_plane, org, granularity="day")["series"]
    starts = [datetime.fromisoformat(b["start"]) for b in series]
    assert starts == [BASE_TIME + timedelta(days=d) for d in range(6)]
    per_day = [sum(1 for r in rows if r["timestamp"].date() == start.date()) for start in starts]
    assert [b["requests"] for b in series] == per_day
    assert per_day[2] == per_day[3] == per_day[5] == 0
    assert series[2]["average_latency_ms"] is None
    assert sum(b["cost_nanos_usd"] for b in series) == sum(r["total_cost_nanos_usd"] or 0 for r in rows)


def test_hourly_series_and_time_zone(control_plane: ControlPlaneUnderTest) -> None:
    """Hour buckets are zero-filled, and day buckets follow the requested time zone."""
    org = control_plane.organisation()
    late = BASE_TIME + timedelta(hours=23, minutes=30)  # 00:30 the next day in Paris (UTC+1 in March)
    seed(
        control_plane.gateway,
        [usage_row(org, timestamp=BASE_TIME + timedelta(minutes=5)), usage_row(org, timestamp=late)],
    )
    window = {"from": BASE_TIME.isoformat(), "to": (BASE_TIME + timedelta(days=2)).isoformat()}
    hourly = analyse(control_plane, org, granularity="hour", **window)["series"]
    assert len(hourly) == 48
    assert [i for i, b in enumerate(hourly) if b["requests"]] == [0, 23]
    paris = analyse(control_plane, org, granularity="day", timezone="Europe/Paris", **window)["series"]
    starts = [datetime.fromisoformat(b["start"]) for b in paris]
    assert starts[0] == datetime(2026, 2, 28, 23, tzinfo=UTC)  # midnight 1 March, Paris
    assert starts[0].utcoffset() == timedelta(hours=1)
    assert [b["requests"] for b in paris] == [1, 1, 0]
    monthly = analyse(control_plane, org, granularity="month", **window)["series"]
    assert [(b["start"][:10], b["requests"]) for b in monthly] == [("2026-03-01", 2)]


def test_breakdown_top_entries_and_other(
    control_plane: ControlPlaneUnderTest, traffic: tuple[str, list[dict[str, Any]]]
) -> None:
    """The breakdown ranks values by the chosen metric, keeps the top N and sums the rest as 'other'."""
    org, rows = traffic
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    cost = {model: sum(r["total_cost_nanos_usd"] or 0 for r in group) for model, group in by_model.items()}
    ranked = sorted(cost, key=lambda m: (-cost[m], m))
    breakdown = analyse(control_plane, org, group_by="model", metric="cost", top=2)["breakdown"]
    assert [entry["key"] for entry in breakdown[:2]] == ranked[:2]
    assert [entry["cost_nanos_usd"] for entry in breakdown[:2]] == [cost[m] for m in ranked[:2]]
    other = breakdown[2]
    assert other["other"] is True
    assert other["requests"] == sum(len(by_model[m]) for m in ranked[2:])
    assert other["cost_nanos_usd"] == sum(cost[m] for m in ranked[2:])
    assert len(breakdown) == 3


def test_statuses_and_classes(
    control_plane: ControlPlaneUnderTest, traffic: tuple[str, list[dict[str, Any]]]
) -> None:
    """Requests are counted per HTTP status and per status class, and by status as a breakdown."""
    org, rows = traffic
    body = analyse(control_plane, org, group_by="status", top=100)
    per_status: dict[int, int] = {}
    for row in rows:
        per_status[row["http_status"]] = per_status.get(row["http_status"], 0) + 1
    assert {s["http_status"]: s["requests"] for s in body["statuses"]} == per_status
    classes: dict[str, int] = {}
    for status, count in per_status.items():
        classes[f"{status // 100}xx"] = classes.get(f"{status // 100}xx", 0) + count
    assert {c["status_class"]: c["requests"] for c in body["status_classes"]} == classes
    assert {e["key"]: e["requests"] for e in body["breakdown"]} == {str(k): v for k, v in per_status.items()}


def test_filters_apply_to_analytics(
    control_plane: ControlPlaneUnderTest, traffic: tuple[str, list[dict[str, Any]]]
) -> None:
    """Record filters narrow every part of the analytics."""
    org, rows = traffic
    body = analyse(control_plane, org, provider="anthropic", status="error")
    kept = [r for r in rows if r["provider"] == "anthropic" and not 200 <= r["http_status"] < 400]
    assert body["totals"]["requests"] == len(kept)
    assert sum(b["requests"] for b in body["series"]) == len(kept)
    assert {e["key"] for e in body["breakdown"]} == {r["model"] for r in kept}


def test_team_breakdown_is_labelled_and_reach_applies(control_plane: ControlPlaneUnderTest) -> None:
    """A team breakdown carries team names, and a manager's analytics count only their teams' rows."""

    async def teams(org: str) -> tuple[str, str]:
        control = control_plane.gateway.runtime.control
        return (await control.tenancy.create_team(org, "alpha")).id, (
            await control.tenancy.create_team(org, "beta")
        ).id

    org = control_plane.organisation()
    alpha, beta = control_plane.gateway.run(teams(org))
    seed(
        control_plane.gateway,
        [usage_row(org, team_id=alpha) for _ in range(3)] + [usage_row(org, team_id=beta) for _ in range(2)],
    )
    breakdown = analyse(control_plane, org, group_by="team")["breakdown"]
    assert [(e["key"], e["label"], e["requests"]) for e in breakdown] == [
        (alpha, "alpha", 3),
        (beta, "beta", 2),
    ]
    manager = control_plane.caller(Role.MANAGER, org, teams={beta: TeamMemberRole.MANAGER})
    response = manager.get(analytics_path(org), params=RANGE)
    assert response.json()["totals"]["requests"] == 2
    assert (
        control_plane.caller(Role.ORG_ADMIN, control_plane.organisation())
        .get(analytics_path(org))
        .status_code
        == 403
    )


def test_default_range_is_the_last_30_days(control_plane: ControlPlaneUnderTest) -> None:
    """Without from/to the analytics cover the last 30 days, by day."""
    org = control_plane.organisation()
    now = datetime.now(UTC)
    seed(control_plane.gateway, [usage_row(org, timestamp=now - timedelta(days=d)) for d in (1, 29, 31)])
    body = control_plane.admin.get(analytics_path(org)).json()
    assert body["totals"]["requests"] == 2
    assert len(body["series"]) in (30, 31)


@pytest.mark.parametrize(
    "params",
    [
        {"granularity": "hour", "from": "2001-01-01T00:00:00Z", "to": "2199-01-01T00:00:00Z"},
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": "../../etc/passwd"},
        {"group_by": "colour"},
        {"top": "0"},
    ],
)
def test_bad_analytics_parameters_are_422(
    control_plane: ControlPlaneUnderTest, params: dict[str, str]
) -> None:
    """Too many buckets, unknown zones, dimensions and sizes are refused with 422."""
    org = control_plane.organisation()
    assert control_plane.admin.get(analytics_path(org), params=params).status_code == 422


def test_admin_analytics_across_organisations(control_plane: ControlPlaneUnderTest) -> None:
    """The super admin's analytics count every organisation, or the ones asked for."""
    first, second = control_plane.organisation(), control_plane.organisation()
    seed(control_plane.gateway, [usage_row(first), usage_row(first), usage_row(second)])
    params = {**RANGE, "organisation_id": [first, second]}
    body = control_plane.admin.get("/api/admin/usage/analytics", params=params).json()
    assert body["totals"]["requests"] == 3
    params["organisation_id"] = [second]
    assert (
        control_plane.admin.get("/api/admin/usage/analytics", params=params).json()["totals"]["requests"] == 1
    )
