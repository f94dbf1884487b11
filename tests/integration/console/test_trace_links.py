"""The console's links from usage records to their traces (ODOCK_TRACE_URL_TEMPLATE), in a real browser."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from odock.db.base import utcnow
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.identity import CHEAP_HASHING, Account
from tests.support.usage_records import seed, usage_row

TEMPLATE = "http://traces.example.test:16686/trace/{trace_id}"


@pytest.fixture(scope="module")
def console(module_gateway_factory: Callable[..., Any]) -> Iterator[ControlPlaneUnderTest]:
    """The module's control plane, with a trace viewer's URL template set."""
    cp = ControlPlaneUnderTest(module_gateway_factory(trace_url_template=TEMPLATE, **CHEAP_HASHING))
    yield cp
    cp.close()


def test_a_record_with_a_trace_id_links_to_its_trace_and_one_without_does_not(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """The record page and the dashboard's recent requests link a traced record to the viewer's
    URL for its trace id; an untraced record has no link."""
    org, admin = org_admin
    trace_id = secrets.token_hex(16)
    now = utcnow()
    traced = usage_row(org, timestamp=now - timedelta(minutes=1), trace_id=trace_id)
    untraced = usage_row(org, timestamp=now - timedelta(minutes=2))
    seed(console.gateway, [traced, untraced])
    expected = TEMPLATE.replace("{trace_id}", trace_id)

    sign_in(admin).open(f"/o/{org}/usage/{traced['id']}")
    page.wait_text(traced["request_id"], "[data-testid=request-id]")
    assert page.find("[data-testid=trace-link]").get_attribute("href") == expected
    page.open(f"/o/{org}/usage/{untraced['id']}")
    page.wait_text(untraced["request_id"], "[data-testid=request-id]")
    assert page.all("[data-testid=trace-link]") == []

    page.open(f"/o/{org}")
    recent = page.find("table[data-testid=recent-requests]")
    rows = {
        row.get_attribute("data-request-id"): row for row in recent.find_elements("css selector", "tbody tr")
    }
    assert set(rows) == {traced["request_id"], untraced["request_id"]}
    links = rows[traced["request_id"]].find_elements("css selector", "[data-testid=trace-link]")
    assert [link.get_attribute("href") for link in links] == [expected]
    assert rows[untraced["request_id"]].find_elements("css selector", "[data-testid=trace-link]") == []
