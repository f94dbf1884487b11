"""Invoice previews and CSV exports through the control-plane API, checked against the records."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from odock.tenancy.tables import Role, TeamMemberRole
from tests.support.api import ControlPlaneUnderTest
from tests.support.usage_records import BASE_TIME, seed, usage_row

PERIOD = {"from": BASE_TIME.isoformat(), "to": (BASE_TIME + timedelta(days=31)).isoformat()}


def usd9(nanos: int) -> str:
    """The expected 9-decimal USD rendering, computed independently of the service."""
    return format(Decimal(nanos).scaleb(-9).quantize(Decimal("0.000000001")), "f")


@pytest.fixture
def billed(control_plane: ControlPlaneUnderTest) -> dict[str, Any]:
    """An organisation with two teams, a user key, direct keys, an MCP call and records outside March."""

    async def build(org: str) -> dict[str, str]:
        control = control_plane.gateway.runtime.control
        team_a = await control.tenancy.create_team(org, "alpha")
        team_b = await control.tenancy.create_team(org, "beta")
        direct = await control.keys.create(org, "direct key")
        return {"team_a": team_a.id, "team_b": team_b.id, "direct_key": direct.key.id}

    org = control_plane.organisation()
    made = control_plane.gateway.run(build(org))
    at = BASE_TIME + timedelta(days=3)
    rows = [
        usage_row(
            org,
            timestamp=at,
            team_id=made["team_a"],
            api_key_id="key-a",
            total_cost_nanos_usd=1_500_000_001,
            model="gpt-4o",
            billing={"input_cost_nanos_usd": 1_000_000_000, "output_cost_nanos_usd": 500_000_001},
        ),
        usage_row(
            org,
            timestamp=at,
            team_id=made["team_a"],
            api_key_id="key-a",
            total_cost_nanos_usd=7,
            model="claude",
            provider="anthropic",
            billing={"output_cost_nanos_usd": 7},
        ),
        usage_row(
            org,
            timestamp=at,
            team_id=made["team_b"],
            api_key_id="key-b",
            total_cost_nanos_usd=30_000,
            billing={"cached_input_cost_nanos_usd": 30_000},
        ),
        usage_row(
            org,
            timestamp=at,
            user_id="user-u",
            api_key_id="key-u",
            total_cost_nanos_usd=5_182_000,
            billing={"input_cost_nanos_usd": 30_000, "output_cost_nanos_usd": 5_152_000},
        ),
        usage_row(org, timestamp=at, api_key_id=made["direct_key"], total_cost_nanos_usd=None, billing={}),
        usage_row(
            org,
            timestamp=at,
            api_key_id=made["direct_key"],
            total_cost_nanos_usd=40,
            billing={"reasoning_cost_nanos_usd": 40},
        ),
        usage_row(
            org,
            timestamp=at,
            api_key_id="key-mcp",
            provider="mcp",
            provider_id=None,
            model=None,
            model_id=None,
            mcp_server_id="mcp-files",
            mcp_server="files",
            mcp_transport="streamable_http",
            mcp_method="tools/call",
            mcp_tool="read_file",
            mcp_tool_calls=1,
            prompt_tokens=0,
            completion_tokens=0,
            total_cost_nanos_usd=1_146_850,
            billing={"mcp": {"total_cost_nanos_usd": 1_146_850}},
        ),
    ]
    outside = [
        usage_row(org, timestamp=BASE_TIME - timedelta(microseconds=1), total_cost_nanos_usd=999),
        usage_row(org, timestamp=BASE_TIME + timedelta(days=31), total_cost_nanos_usd=999),
    ]
    # One insert per shape (an executemany takes its columns from the first row): the MCP row last.
    seed(control_plane.gateway, rows[:-1] + outside)
    seed(control_plane.gateway, rows[-1:])
    return {"org": org, "rows": rows, **made}


def preview(control_plane: ControlPlaneUnderTest, org: str, **params: Any) -> dict[str, Any]:
    """The invoice preview (200) of ``params`` over :data:`PERIOD`."""
    response = control_plane.admin.get(
        f"/api/organisations/{org}/invoices/preview", params={**PERIOD, **params}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def cost_of(rows: list[dict[str, Any]]) -> int:
    """The summed cost of records (unpriced ones count 0)."""
    return sum(r["total_cost_nanos_usd"] or 0 for r in rows)


def test_totals_are_the_sum_of_the_records(
    control_plane: ControlPlaneUnderTest, billed: dict[str, Any]
) -> None:
    """The invoice totals, and the LLM / MCP split, are the sums of the records in the period."""
    body = preview(control_plane, billed["org"])
    rows = billed["rows"]
    total = cost_of(rows)
    mcp = cost_of([r for r in rows if r["provider"] == "mcp"])
    totals = body["totals"]
    assert totals["requests"] == len(rows)
    assert (totals["total_cost_nanos_usd"], totals["total_cost_usd"]) == (total, usd9(total))
    assert totals["mcp_cost_nanos_usd"] == mcp
    assert totals["llm_cost_nanos_usd"] == total - mcp
    assert totals["total_cost_usd"] == "1.506358898"
    assert body["organisation_id"] == billed["org"]
    assert body["period_start"].startswith("2026-03-01T00:00:00")
    assert datetime.fromisoformat(body["generated_at"]) <= datetime.now(UTC)


def test_lines_by_model_team_key_and_provider(
    control_plane: ControlPlaneUnderTest, billed: dict[str, Any]
) -> None:
    """Every breakdown adds up to the total, with names for teams and keys and direct keys apart."""
    body = preview(control_plane, billed["org"])
    rows, total = billed["rows"], cost_of(billed["rows"])
    for section in ("by_provider", "by_api_key"):
        assert sum(line["cost_nanos_usd"] for line in body[section]) == total, section
    llm = [r for r in rows if r["provider"] != "mcp"]
    models = {line["key"]: line["cost_nanos_usd"] for line in body["by_model"]}
    assert models == {m: cost_of([r for r in llm if r["model"] == m]) for m in {r["model"] for r in llm}}
    assert sum(models.values()) == body["totals"]["llm_cost_nanos_usd"]
    teams = {line["label"]: line["cost_nanos_usd"] for line in body["by_team"]}
    assert teams == {"alpha": 1_500_000_008, "beta": 30_000}
    direct = body["direct_organisation_keys"]
    assert {line["key"] for line in direct} == {billed["direct_key"], "key-mcp"}
    named = next(line for line in direct if line["key"] == billed["direct_key"])
    assert (named["label"], named["requests"], named["cost_usd"]) == ("direct key", 2, "0.000000040")
    owners = {line["key"]: line["owner"] for line in body["by_api_key"]}
    assert (owners["key-a"], owners["key-u"]) == ("team", "user")
    assert [line["cost_nanos_usd"] for line in body["by_api_key"]] == sorted(
        (line["cost_nanos_usd"] for line in body["by_api_key"]), reverse=True
    )
    categories = {line["category"]: line["cost_nanos_usd"] for line in body["by_category"]}
    assert categories == {
        "input": 1_000_030_000,
        "cached_input": 30_000,
        "output": 500_000_001 + 7 + 5_152_000,
        "reasoning": 40,
        "embeddings": 0,
    }


def test_team_and_key_filters(control_plane: ControlPlaneUnderTest, billed: dict[str, Any]) -> None:
    """Multi-valued team and API key filters narrow the invoice and are echoed back."""
    org, rows = billed["org"], billed["rows"]
    teams = [billed["team_a"], billed["team_b"]]
    body = preview(control_plane, org, team_id=teams)
    assert body["filters"] == {"team_ids": teams, "api_key_ids": []}
    assert body["totals"]["total_cost_nanos_usd"] == cost_of([r for r in rows if r["team_id"] in teams])
    body = preview(control_plane, org, api_key_id=["key-u", "key-mcp"])
    assert body["totals"]["requests"] == 2
    body = preview(control_plane, org, team_id=billed["team_b"], api_key_id="key-a")
    assert body["totals"]["requests"] == 0


def test_csv_export_has_one_line_per_record(
    control_plane: ControlPlaneUnderTest, billed: dict[str, Any]
) -> None:
    """The CSV export has a header and one line per record of the period, with costs in nanos and USD."""
    org, rows = billed["org"], billed["rows"]
    response = control_plane.admin.get(f"/api/organisations/{org}/invoices/export.csv", params=PERIOD)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert {line["id"] for line in lines} == {r["id"] for r in rows}
    assert len(lines) == len(rows)
    by_id = {line["id"]: line for line in lines}
    for row in rows:
        line = by_id[row["id"]]
        cost = row["total_cost_nanos_usd"]
        assert line["total_cost_nanos_usd"] == ("" if cost is None else str(cost))
        assert line["total_cost_usd"] == ("" if cost is None else usd9(cost))
        assert (line["request_id"], line["model"], line["http_status"]) == (
            row["request_id"],
            row["model"] or "",
            str(row["http_status"]),
        )
        assert datetime.fromisoformat(line["timestamp"]) == row["timestamp"]
        assert (line["mcp_server"], line["mcp_tool"]) == (
            row.get("mcp_server") or "",
            row.get("mcp_tool") or "",
        )


def test_csv_export_streams_many_chunks(control_plane: ControlPlaneUnderTest) -> None:
    """An export larger than one fetch chunk lists every record once, oldest first."""
    org = control_plane.organisation()
    rows = [usage_row(org, timestamp=BASE_TIME + timedelta(seconds=i // 3)) for i in range(12_001)]
    seed(control_plane.gateway, rows)
    response = control_plane.admin.get(f"/api/organisations/{org}/invoices/export.csv", params=PERIOD)
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert [line["id"] for line in lines] == [
        r["id"] for r in sorted(rows, key=lambda r: (r["timestamp"], r["id"]))
    ]


def test_invoice_reach(control_plane: ControlPlaneUnderTest, billed: dict[str, Any]) -> None:
    """A team manager's invoice covers only their team; another organisation's admin is refused."""
    org = billed["org"]
    manager = control_plane.caller(Role.MANAGER, org, teams={billed["team_b"]: TeamMemberRole.MANAGER})
    body = manager.get(f"/api/organisations/{org}/invoices/preview", params=PERIOD).json()
    assert body["totals"]["total_cost_nanos_usd"] == 30_000
    csv_text = manager.get(f"/api/organisations/{org}/invoices/export.csv", params=PERIOD).text
    assert len(csv_text.strip().splitlines()) == 2
    stranger = control_plane.caller(Role.ORG_ADMIN, control_plane.organisation())
    assert stranger.get(f"/api/organisations/{org}/invoices/preview").status_code == 403
    assert stranger.get(f"/api/organisations/{org}/invoices/export.csv").status_code == 403
    assert stranger.get("/api/admin/invoices/preview").status_code == 403


def test_default_period_is_this_month(control_plane: ControlPlaneUnderTest) -> None:
    """Without from/to the invoice covers the current calendar month (UTC)."""
    org = control_plane.organisation()
    now = datetime.now(UTC)
    seed(
        control_plane.gateway,
        [usage_row(org, timestamp=now), usage_row(org, timestamp=now - timedelta(days=40))],
    )
    body = control_plane.admin.get(f"/api/organisations/{org}/invoices/preview").json()
    assert datetime.fromisoformat(body["period_start"]) == now.replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    assert body["totals"]["requests"] == 1


def test_admin_invoice_across_organisations(control_plane: ControlPlaneUnderTest) -> None:
    """The super admin's invoice sums every organisation asked for, and exports them."""
    first, second = control_plane.organisation(), control_plane.organisation()
    seed(
        control_plane.gateway,
        [usage_row(first, total_cost_nanos_usd=5), usage_row(second, total_cost_nanos_usd=7)],
    )
    params = {**PERIOD, "organisation_id": [first, second]}
    body = control_plane.admin.get("/api/admin/invoices/preview", params=params).json()
    assert body["totals"]["total_cost_nanos_usd"] == 12
    exported = control_plane.admin.get("/api/admin/invoices/export.csv", params=params).text
    assert len(exported.strip().splitlines()) == 3


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-04-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
        {"team_id": "x y"},
        {"to": "9999-01-01"},
    ],
)
def test_bad_invoice_parameters_are_422(control_plane: ControlPlaneUnderTest, params: dict[str, str]) -> None:
    """A reversed or out-of-range period and malformed ids are refused with 422."""
    org = control_plane.organisation()
    assert (
        control_plane.admin.get(f"/api/organisations/{org}/invoices/preview", params=params).status_code
        == 422
    )
