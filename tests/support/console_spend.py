"""Spend-page fixtures: an organisation with real governed calls through a fake OpenAI upstream.

The calls go through the gateway's pipeline with the official ``openai`` SDK, so the usage
records, costs and budgets the pages show are the ones the gateway wrote; tests compare the
pages with those records as the API returns them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from odock.tenancy.tables import Role
from tests.conftest import Tenant
from tests.fakes.openai_server import FakeOpenAI, running_fake_openai
from tests.integration.conftest import MESSAGES, openai_tenant, sdk, usage_records
from tests.support.api import Caller, ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.identity import Account, password_account

PRICING = {"input": {"text_cost_per_1k_tokens": 0.002}, "output": {"text_cost_per_1k_tokens": 0.008}}


@dataclass
class Billed:
    """An organisation whose key made governed calls, its ORG_ADMIN, and the records they left."""

    console: ControlPlaneUnderTest
    fake: FakeOpenAI
    tenant: Tenant
    admin: Account
    api: Caller  # an ORG_ADMIN API caller of the same organisation
    request_ids: list[str] = field(default_factory=list)

    @property
    def org(self) -> str:
        """The organisation's id."""
        return self.tenant.organisation_id

    def call(self, count: int = 1) -> list[str]:
        """Make ``count`` chat completions with the tenant's key; their request ids (records flushed)."""
        client = sdk(self.console.gateway, self.tenant.secret)
        made = []
        for _ in range(count):
            # A small output allowance keeps the budget reservation near the actual cost.
            answer = client.chat.completions.with_raw_response.create(
                model=self.tenant.model, messages=MESSAGES, max_tokens=16
            )
            request_id = answer.headers["x-request-id"]
            assert usage_records(self.console.gateway, request_id), f"no usage record for {request_id}"
            made.append(request_id)
        self.request_ids.extend(made)
        return made

    def records(self) -> list[dict[str, Any]]:
        """Every usage record of the organisation, as the API lists them (newest first)."""
        answer = self.api.get(f"/api/organisations/{self.org}/usage/records", params={"limit": 200})
        answer.raise_for_status()
        return list(answer.json()["items"])


@pytest.fixture(scope="module")
def billed(console: ControlPlaneUnderTest) -> Iterator[Billed]:
    """A module's organisation with two governed calls already recorded."""
    with running_fake_openai() as fake:
        tenant = openai_tenant(console.gateway, fake, pricing=PRICING)
        admin = password_account(console, Role.ORG_ADMIN, tenant.organisation_id)
        made = Billed(console, fake, tenant, admin, console.caller(Role.ORG_ADMIN, tenant.organisation_id))
        made.call(2)
        yield made


def download(page: Page, url: str) -> httpx.Response:
    """GET the link ``url`` (as a page holds it) with the browser's cookies, as a click would."""
    with httpx.Client(base_url=page.base_url, cookies=page.cookies()) as client:
        return client.get(url)
