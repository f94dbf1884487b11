"""Console fixtures: one Chromium per test process, one gateway per module, signed-in pages.

Tests stay independent by working in organisations and users they create themselves. Signing
in through the form is tested once (``test_sign_in.py``); other tests sign in over the API and
hand the session cookies to the browser, which is what the form does too.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from odock.tenancy.tables import Role
from tests.integration.api.conftest import module_gateway_factory as module_gateway_factory
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page, require_chromium, start_chromium
from tests.support.identity import CHEAP_HASHING, Account, password_account


@pytest.fixture(scope="session")
def chromium() -> Iterator[WebDriver]:
    """The test process's browser."""
    browser, driver = require_chromium()
    chrome = start_chromium(browser, driver)
    yield chrome
    chrome.quit()


@pytest.fixture(scope="module")
def console(
    module_gateway_factory: Callable[..., Any], provider_keypair: Any
) -> Iterator[ControlPlaneUnderTest]:
    """One gateway + control plane for the module (provider keys can be stored), with a super admin."""
    cp = ControlPlaneUnderTest(
        module_gateway_factory(
            provider_key_encryption_key_id=provider_keypair.key_id,
            provider_key_encryption_private_key=provider_keypair.private_pem,
            **CHEAP_HASHING,
        )
    )
    yield cp
    cp.close()


@pytest.fixture
def page(chromium: WebDriver, console: ControlPlaneUnderTest) -> Iterator[Page]:
    """The browser at the module's server, signed out, at desktop size."""
    chromium.set_window_size(1280, 900)
    chromium.get(console.base_url + "/static/console.css")  # a same-origin document to clear cookies on
    chromium.delete_all_cookies()
    page = Page(chromium, console.base_url)
    page.console_errors()  # drop what earlier tests left in the log
    yield page
    # A refused API call (4xx) is logged by the browser but is an answer the page shows; a 5xx,
    # a script error or a CSP refusal is a failure.
    errors = [e for e in page.console_errors() if "with a status of 4" not in e]
    assert not errors, f"the browser console reported errors: {errors}"


SignIn = Callable[[Account], Page]


@pytest.fixture
def sign_in(page: Page, console: ControlPlaneUnderTest) -> SignIn:
    """Sign ``account`` in (over the API, as the form does) and give the browser its cookies."""

    def signed_in(account: Account) -> Page:
        with httpx.Client(base_url=console.base_url) as client:
            answer = client.post(
                "/api/auth/login", json={"email": account.email, "password": account.password}
            )
            answer.raise_for_status()
            for name, value in client.cookies.items():
                page.driver.add_cookie({"name": name, "value": value, "path": "/"})
        return page

    return signed_in


@pytest.fixture
def org_admin(console: ControlPlaneUnderTest) -> tuple[str, Account]:
    """A new organisation and its ORG_ADMIN, who signs in with a password."""
    org = console.admin.post("/api/admin/organisations", json={"name": f"org-{secrets.token_hex(4)}"}).json()
    return org["id"], password_account(console, Role.ORG_ADMIN, org["id"])
