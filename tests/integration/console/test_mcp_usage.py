"""MCP calls on the console's usage, analytics and invoices pages, in a real browser.

The records are written as the MCP gateway writes them (tests/support/mcp_usage_records.py) at
the current time, so they fall in the analytics page's last 7 days and the invoice's month.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from odock.db.base import utcnow
from odock.usage.invoices import usd9
from odock.web.console.pages import usd
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.identity import Account
from tests.support.mcp_usage_records import mcp_row
from tests.support.usage_records import seed, usage_row


@pytest.fixture
def mixed(console: ControlPlaneUnderTest, org_admin: tuple[str, Account]) -> dict[str, Any]:
    """An organisation with one model call and four MCP calls (three tool calls, one tools/list)."""
    org, admin = org_admin
    now = utcnow()
    # The first of the month at 00:00 would put "a minute ago" in the previous month: stay inside.
    at = max(now - timedelta(minutes=1), now.replace(day=1, hour=0, minute=0, second=1, microsecond=0))
    llm = [usage_row(org, timestamp=at, total_cost_nanos_usd=5_000)]
    mcp = [
        mcp_row(org, "mcp-time", "tools/call", "get_current_time", timestamp=at, latency_ms=12.0),
        mcp_row(org, "mcp-time", "tools/call", "get_current_time", timestamp=at, latency_ms=14.0),
        mcp_row(org, "mcp-fetch", "tools/call", "fetch", timestamp=at, bytes_out=9000),
        mcp_row(org, "mcp-time", "tools/list", None, timestamp=at),
    ]
    seed(console.gateway, llm)
    seed(console.gateway, mcp)
    return {"org": org, "admin": admin, "llm": llm, "mcp": mcp}


def test_records_show_mcp_server_and_tool_and_the_detail_card(
    page: Page, sign_in: SignIn, mixed: dict[str, Any]
) -> None:
    """The MCP filter lists MCP rows as server / tool; the detail has the MCP card with its cost formula."""
    org, mcp = mixed["org"], mixed["mcp"]
    sign_in(mixed["admin"]).open(f"/o/{org}/usage?kind=mcp")
    rows = page.all("table[data-testid=usage-table] tbody tr")
    assert {r.get_attribute("data-request-id") for r in rows} == {r["request_id"] for r in mcp}
    fetch = next(r for r in mcp if r["mcp_tool"] == "fetch")
    cell = page.find(f'tr[data-request-id="{fetch["request_id"]}"] td[data-mcp]').text
    assert "MCP" in cell
    assert "fetch / fetch" in cell
    listing = next(r for r in mcp if r["mcp_method"] == "tools/list")
    assert (
        "time / tools/list" in page.find(f'tr[data-request-id="{listing["request_id"]}"] td[data-mcp]').text
    )

    page.click('a[href="?mcp_server_id=mcp-fetch"]')
    page.wait_path(lambda p: "mcp_server_id=mcp-fetch" in p)
    assert [r.get_attribute("data-request-id") for r in page.all("tbody tr")] == [fetch["request_id"]]

    page.click(f'tr[data-request-id="{fetch["request_id"]}"] a.mono')
    page.wait_path(lambda p: p == f"/o/{org}/usage/{fetch['id']}")
    card = page.find("[data-testid=mcp-card]").text
    assert "streamable_http" in card
    assert "tools/call" in card
    cost = page.find("[data-testid=mcp-cost]").text
    assert "1 \N{MULTIPLICATION SIGN} 1,000 = 1,000" in cost
    assert "9,000 \N{MULTIPLICATION SIGN} 3 = 27,000" in cost
    assert f"total {fetch['total_cost_nanos_usd']:,}" in cost


def test_analytics_split_ai_and_mcp_and_list_top_tools(
    page: Page, sign_in: SignIn, mixed: dict[str, Any]
) -> None:
    """KPIs split AI / MCP, the MCP tab narrows, the MCP tool breakdown and the top tools table show."""
    org, mcp = mixed["org"], mixed["mcp"]
    sign_in(mixed["admin"]).open(f"/o/{org}/analytics")
    assert page.find("[data-testid=kpi-mcp]").text.count("4 requests") == 1
    assert "1 requests" in page.find("[data-testid=kpi-llm]").text
    assert "3 tool calls" in page.find("[data-testid=kpi-mcp]").text
    top = page.find("table[data-testid=mcp-top-tools] tbody tr").text
    assert "time / get_current_time" in top

    page.click('[data-testid=gateway-tabs] a[href$="gateway=mcp"]')
    page.wait_path(lambda p: "gateway=mcp" in p)
    assert page.find("[data-testid=kpi-requests]").text.endswith("4")
    page.open(f"/o/{org}/analytics?group_by=mcp_tool&metric=cost")
    labels = [
        row.find_element("css selector", "td").text
        for row in page.all("table[data-testid=breakdown] tbody tr")
    ]
    assert labels[0] == "fetch / fetch"
    assert set(labels) == {"fetch / fetch", "time / get_current_time", "time / tools/list"}
    assert usd(sum(r["total_cost_nanos_usd"] for r in mcp)) in page.find("[data-testid=kpi-mcp]").text


def test_invoice_lists_cost_by_mcp_server_and_tool(
    page: Page, sign_in: SignIn, mixed: dict[str, Any]
) -> None:
    """The invoice page's MCP tables: one line per server and per tool, with the MCP total."""
    org, mcp = mixed["org"], mixed["mcp"]
    sign_in(mixed["admin"]).open(f"/o/{org}/invoices")
    total = sum(r["total_cost_nanos_usd"] for r in mcp)
    assert usd9(total) in page.find("[data-testid=mcp-cost]").text
    servers = page.all("table[data-testid=by-mcp-server] tbody tr")
    assert len(servers) == 2
    time_cost = sum(r["total_cost_nanos_usd"] for r in mcp if r["mcp_server_id"] == "mcp-time")
    time_line = next(row.text for row in servers if row.text.startswith("time"))
    assert usd9(time_cost) in time_line
    tools = {
        row.find_element("css selector", "td").text
        for row in page.all("table[data-testid=by-mcp-tool] tbody tr")
    }
    assert tools == {"time / get_current_time", "fetch / fetch", "time / tools/list"}
    models = page.find("table[data-testid=by-model]").text
    assert "fetch" not in models
