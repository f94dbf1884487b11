"""The PDF invoice through the control-plane API: sections, 9-decimal totals, filters, reach."""

from __future__ import annotations

import io
from typing import Any

import pypdf

from odock.tenancy.tables import Role
from tests.integration.api.test_invoices import PERIOD, cost_of, usd9
from tests.integration.api.test_invoices import billed as billed  # the seeded organisation
from tests.support.api import ControlPlaneUnderTest

SECTIONS = (
    "Period", "Scope", "Generated", "Totals", "Cost by category", "Cost by team",
    "Direct organisation API keys", "Cost by model", "Cost by MCP server",
)  # fmt: skip


def pdf_text(content: bytes) -> str:
    """The text of every page of a PDF."""
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(content)).pages)


def test_the_pdf_holds_every_section_and_the_totals(
    control_plane: ControlPlaneUnderTest, billed: dict[str, Any]
) -> None:
    """The PDF names the period and scope and carries the total, LLM and MCP cost with 9 decimals."""
    org, rows = billed["org"], billed["rows"]
    response = control_plane.admin.get(f"/api/organisations/{org}/invoices/invoice.pdf", params=PERIOD)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert 'filename="odock-invoice-' in response.headers["content-disposition"]
    text = pdf_text(response.content)
    for section in SECTIONS:
        assert section in text, section
    total = cost_of(rows)
    mcp = cost_of([r for r in rows if r["provider"] == "mcp"])
    assert f"Total cost {usd9(total)}" in text
    assert usd9(total) == "1.506358898"
    assert f"MCP cost {usd9(mcp)}" in text
    assert f"LLM cost {usd9(total - mcp)}" in text
    assert f"organisation {org}" in text
    assert "2026-03-01 00:00:00 UTC" in text
    assert "alpha" in text
    assert "direct key" in text
    assert "gpt-4o" in text


def test_the_pdf_follows_the_filters(control_plane: ControlPlaneUnderTest, billed: dict[str, Any]) -> None:
    """A team filter narrows the PDF's totals and is printed in it."""
    org, rows = billed["org"], billed["rows"]
    params = {**PERIOD, "team_id": billed["team_b"]}
    response = control_plane.admin.get(f"/api/organisations/{org}/invoices/invoice.pdf", params=params)
    text = pdf_text(response.content)
    assert f"Total cost {usd9(cost_of([r for r in rows if r['team_id'] == billed['team_b']]))}" in text
    assert billed["team_b"] in text


def test_the_pdf_is_refused_outside_the_reach(
    control_plane: ControlPlaneUnderTest, billed: dict[str, Any]
) -> None:
    """Another organisation's admin is refused; a bad period is a 422 naming the parameter."""
    stranger = control_plane.caller(Role.ORG_ADMIN, control_plane.organisation())
    path = f"/api/organisations/{billed['org']}/invoices/invoice.pdf"
    assert stranger.get(path, params=PERIOD).status_code == 403
    refused = control_plane.admin.get(path, params={"from": PERIOD["to"], "to": PERIOD["from"]})
    assert refused.status_code == 422
    assert refused.json()["error"]["param"] == "from"
