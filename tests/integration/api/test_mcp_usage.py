"""MCP calls in the usage read side: record filters and detail, the analytics split and MCP
breakdowns, and the invoice's MCP lines — checked against figures computed from the seeded rows."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pypdf
import pytest

from tests.support.api import ControlPlaneUnderTest
from tests.support.mcp_usage_records import SERVERS, mcp_row
from tests.support.usage_records import BASE_TIME, seed, usage_row

RANGE = {"from": BASE_TIME.isoformat(), "to": (BASE_TIME + timedelta(days=6)).isoformat()}


@pytest.fixture
def mixed(control_plane: ControlPlaneUnderTest) -> tuple[str, list[dict[str, Any]]]:
    """An organisation with LLM records and MCP records of two servers, tools and other methods."""
    org = control_plane.organisation()
    at = BASE_TIME + timedelta(days=1)
    rows = [
        usage_row(org, timestamp=at, total_cost_nanos_usd=50_000),
        usage_row(org, timestamp=at + timedelta(minutes=1), total_cost_nanos_usd=70_000, http_status=500),
        usage_row(org, timestamp=at + timedelta(minutes=2), model="claude", provider="anthropic"),
    ]
    for i in range(5):
        rows.append(
            mcp_row(
                org,
                "mcp-time",
                "tools/call",
                "get_current_time",
                timestamp=at + timedelta(minutes=10 + i),
                latency_ms=10.0 + i,
                http_status=502 if i == 4 else 200,
            )
        )
    rows += [
        mcp_row(org, "mcp-time", "tools/call", "convert_time", timestamp=at + timedelta(hours=1)),
        mcp_row(org, "mcp-time", "tools/list", None, timestamp=at + timedelta(hours=2)),
        mcp_row(org, "mcp-fetch", "tools/call", "fetch", timestamp=at + timedelta(hours=3), bytes_out=9000),
        mcp_row(org, "mcp-fetch", "initialize", None, timestamp=at + timedelta(hours=4)),
    ]
    # One insert per shape: an executemany takes its columns from the first row.
    seed(control_plane.gateway, [r for r in rows if not is_mcp(r)])
    seed(control_plane.gateway, [r for r in rows if is_mcp(r)])
    return org, rows


def is_mcp(row: dict[str, Any]) -> bool:
    """An MCP record."""
    return bool(row["provider"] == "mcp")


def cost_of(rows: list[dict[str, Any]]) -> int:
    """The summed cost of records."""
    return sum(r["total_cost_nanos_usd"] or 0 for r in rows)


def get(control_plane: ControlPlaneUnderTest, path: str, **params: Any) -> dict[str, Any]:
    """A 200 answer's JSON body."""
    response = control_plane.admin.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def record_ids(control_plane: ControlPlaneUnderTest, org: str, **params: Any) -> set[str]:
    """The ids of the records a filter lists (one page of 200)."""
    page = get(control_plane, f"/api/organisations/{org}/usage/records", limit=200, **params)
    assert page["next_cursor"] is None
    return {item["id"] for item in page["items"]}


# --- records ----------------------------------------------------------------------------------


def test_record_filters_by_kind_server_and_tool(
    control_plane: ControlPlaneUnderTest, mixed: tuple[str, list[dict[str, Any]]]
) -> None:
    """kind=llm|mcp, mcp_server_id and mcp_tool each keep exactly the matching records."""
    org, rows = mixed
    assert record_ids(control_plane, org, kind="mcp") == {r["id"] for r in rows if is_mcp(r)}
    assert record_ids(control_plane, org, kind="llm") == {r["id"] for r in rows if not is_mcp(r)}
    assert record_ids(control_plane, org, mcp_server_id="mcp-fetch") == {
        r["id"] for r in rows if r.get("mcp_server_id") == "mcp-fetch"
    }
    assert record_ids(control_plane, org, mcp_tool=["fetch", "convert_time"]) == {
        r["id"] for r in rows if r.get("mcp_tool") in ("fetch", "convert_time")
    }
    assert record_ids(control_plane, org, kind="llm", mcp_server_id="mcp-time") == set()
    response = control_plane.admin.get(f"/api/organisations/{org}/usage/records", params={"kind": "tools"})
    assert response.status_code == 422


def test_mcp_record_summary_and_detail(
    control_plane: ControlPlaneUnderTest, mixed: tuple[str, list[dict[str, Any]]]
) -> None:
    """An MCP record lists its server, method and tool; its detail adds transport, bytes and pricing."""
    org, rows = mixed
    row = next(r for r in rows if r.get("mcp_tool") == "fetch")
    page = get(control_plane, f"/api/organisations/{org}/usage/records", mcp_tool="fetch")
    (item,) = page["items"]
    assert (item["provider"], item["model"]) == ("mcp", None)
    assert (item["mcp_server_id"], item["mcp_server"], item["mcp_method"], item["mcp_tool"]) == (
        "mcp-fetch",
        "fetch",
        "tools/call",
        "fetch",
    )
    assert item["mcp_tool_calls"] == 1
    detail = get(control_plane, f"/api/organisations/{org}/usage/records/{row['id']}")
    assert detail["mcp_transport"] == "streamable_http"
    assert (detail["bytes_in"], detail["bytes_out"]) == (120, 9000)
    assert detail["billing"]["mcp"]["output_cost_nanos_usd"] == 27_000
    assert detail["total_cost_nanos_usd"] == 1000 + 240 + 27_000
    llm = next(r for r in rows if not is_mcp(r))
    llm_detail = get(control_plane, f"/api/organisations/{org}/usage/records/{llm['id']}")
    assert (llm_detail["mcp_server_id"], llm_detail["mcp_transport"], llm_detail["mcp_tool_calls"]) == (
        None,
        None,
        0,
    )


# --- analytics --------------------------------------------------------------------------------


def analytics(control_plane: ControlPlaneUnderTest, org: str, **params: Any) -> dict[str, Any]:
    """The analytics answer over :data:`RANGE`."""
    return get(control_plane, f"/api/organisations/{org}/usage/analytics", **{**RANGE, **params})


def test_totals_split_ai_and_mcp(
    control_plane: ControlPlaneUnderTest, mixed: tuple[str, list[dict[str, Any]]]
) -> None:
    """Totals, series buckets and the gateway filter split requests, cost and tool calls AI vs MCP."""
    org, rows = mixed
    mcp, llm = [r for r in rows if is_mcp(r)], [r for r in rows if not is_mcp(r)]
    body = analytics(control_plane, org)
    totals = body["totals"]
    assert (totals["requests"], totals["llm_requests"], totals["mcp_requests"]) == (
        len(rows),
        len(llm),
        len(mcp),
    )
    assert totals["mcp_cost_nanos_usd"] == cost_of(mcp)
    assert totals["llm_cost_nanos_usd"] == cost_of(llm)
    assert totals["cost_nanos_usd"] == cost_of(rows)
    assert totals["tool_calls"] == sum(r["mcp_tool_calls"] for r in mcp) == 7
    day = next(b for b in body["series"] if b["requests"])
    assert (day["llm_requests"], day["mcp_requests"]) == (len(llm), len(mcp))
    only_mcp = analytics(control_plane, org, gateway="mcp")["totals"]
    assert (only_mcp["requests"], only_mcp["llm_requests"], only_mcp["cost_nanos_usd"]) == (
        len(mcp),
        0,
        cost_of(mcp),
    )
    only_llm = analytics(control_plane, org, gateway="llm")
    assert only_llm["totals"]["requests"] == len(llm)
    assert only_llm["mcp_top_tools"] == []
    assert analytics(control_plane, org, gateway="all")["totals"]["requests"] == len(rows)
    response = control_plane.admin.get(
        f"/api/organisations/{org}/usage/analytics", params={"gateway": "llm", "kind": "mcp"}
    )
    assert response.status_code == 422


def test_breakdowns_by_mcp_server_and_tool(
    control_plane: ControlPlaneUnderTest, mixed: tuple[str, list[dict[str, Any]]]
) -> None:
    """The MCP server and MCP tool breakdowns group MCP records only, labelled by slug and server / tool."""
    org, rows = mixed
    mcp = [r for r in rows if is_mcp(r)]
    servers = analytics(control_plane, org, group_by="mcp_server", metric="cost")["breakdown"]
    assert {e["key"]: (e["label"], e["requests"], e["cost_nanos_usd"]) for e in servers} == {
        sid: (
            slug,
            sum(1 for r in mcp if r["mcp_server_id"] == sid),
            cost_of([r for r in mcp if r["mcp_server_id"] == sid]),
        )
        for sid, slug in SERVERS.items()
    }
    assert [e["cost_nanos_usd"] for e in servers] == sorted(
        (e["cost_nanos_usd"] for e in servers), reverse=True
    )
    tools = analytics(control_plane, org, group_by="mcp_tool", metric="tool_calls")["breakdown"]
    expected: dict[str, int] = {}
    for r in mcp:
        label = f"{r['mcp_server']} / {r['mcp_tool'] or r['mcp_method']}"
        expected[label] = expected.get(label, 0) + 1
    assert {e["label"]: e["requests"] for e in tools} == expected
    assert tools[0]["label"] == "time / get_current_time"
    assert tools[0]["tool_calls"] == 5
    breakdown = get(
        control_plane,
        f"/api/organisations/{org}/usage/analytics/breakdown",
        **RANGE,
        group_by="mcp_server",
        top=1,
    )["entries"]
    assert [e["other"] for e in breakdown] == [False, True]
    assert sum(e["requests"] for e in breakdown) == len(mcp)


def test_mcp_top_tools(control_plane: ControlPlaneUnderTest, mixed: tuple[str, list[dict[str, Any]]]) -> None:
    """The top tools rank by calls, with requests, errors, mean latency, bytes and cost of each."""
    org, rows = mixed
    top = analytics(control_plane, org)["mcp_top_tools"]
    assert [t["label"] for t in top[:3]] == [
        "time / get_current_time",
        "fetch / fetch",
        "time / convert_time",
    ]
    assert {t["label"] for t in top[3:]} == {"time / tools/list", "fetch / initialize"}
    first = top[0]
    timed = [r for r in rows if r.get("mcp_tool") == "get_current_time"]
    assert (first["server_id"], first["server"], first["tool"]) == ("mcp-time", "time", "get_current_time")
    assert (first["requests"], first["tool_calls"], first["errors"]) == (5, 5, 1)
    assert first["average_latency_ms"] == pytest.approx(sum(r["latency_ms"] for r in timed) / 5)
    assert (first["bytes_in"], first["bytes_out"]) == (5 * 120, 5 * 480)
    assert first["cost_nanos_usd"] == cost_of(timed)
    assert len(analytics(control_plane, org, top=2)["mcp_top_tools"]) == 2
    narrowed = analytics(control_plane, org, mcp_server_id="mcp-fetch")["mcp_top_tools"]
    assert {t["label"] for t in narrowed} == {"fetch / fetch", "fetch / initialize"}


# --- invoices ---------------------------------------------------------------------------------


def test_invoice_mcp_lines(
    control_plane: ControlPlaneUnderTest, mixed: tuple[str, list[dict[str, Any]]]
) -> None:
    """The invoice splits LLM / MCP cost and lists MCP cost by server and by tool; models exclude MCP."""
    org, rows = mixed
    mcp, llm = [r for r in rows if is_mcp(r)], [r for r in rows if not is_mcp(r)]
    body = get(
        control_plane,
        f"/api/organisations/{org}/invoices/preview",
        **{"from": BASE_TIME.isoformat(), "to": (BASE_TIME + timedelta(days=31)).isoformat()},
    )
    totals = body["totals"]
    assert (totals["llm_cost_nanos_usd"], totals["mcp_cost_nanos_usd"]) == (cost_of(llm), cost_of(mcp))
    assert {line["key"] for line in body["by_model"]} == {"gpt-4o", "claude"}
    servers = {line["key"]: line for line in body["by_mcp_server"]}
    assert set(servers) == set(SERVERS)
    for sid, slug in SERVERS.items():
        mine = [r for r in mcp if r["mcp_server_id"] == sid]
        line = servers[sid]
        assert (line["label"], line["server"], line["tool"]) == (slug, slug, None)
        assert (line["requests"], line["cost_nanos_usd"]) == (len(mine), cost_of(mine))
        assert line["tool_calls"] == sum(r["mcp_tool_calls"] for r in mine)
        assert (line["bytes_in"], line["bytes_out"]) == (
            sum(r["bytes_in"] for r in mine),
            sum(r["bytes_out"] for r in mine),
        )
    tools = {line["label"]: line["cost_nanos_usd"] for line in body["by_mcp_tool"]}
    assert sum(tools.values()) == cost_of(mcp)
    assert tools["time / get_current_time"] == cost_of(
        [r for r in mcp if r["mcp_tool"] == "get_current_time"]
    )
    assert tools["fetch / initialize"] == cost_of([r for r in mcp if r["mcp_method"] == "initialize"])
    costs = [line["cost_nanos_usd"] for line in body["by_mcp_server"]]
    assert costs == sorted(costs, reverse=True)


def test_invoice_pdf_lists_mcp_servers(
    control_plane: ControlPlaneUnderTest, mixed: tuple[str, list[dict[str, Any]]]
) -> None:
    """The PDF invoice has the MCP server and tool tables (their text is in the document)."""
    org, _ = mixed
    response = control_plane.admin.get(
        f"/api/organisations/{org}/invoices/invoice.pdf",
        params={"from": BASE_TIME.isoformat(), "to": (BASE_TIME + timedelta(days=31)).isoformat()},
    )
    assert response.status_code == 200
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(response.content)).pages)
    assert "Cost by MCP server" in text
    assert "Cost by MCP tool" in text
    assert "time / get_current_time" in text
