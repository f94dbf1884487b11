"""Helpers of the providers and models console tests: a spy on what the page sends, and API setup."""

from __future__ import annotations

from typing import Any

from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page

# Records every fetch() the page makes (console.js sends API calls with fetch) before sending it,
# in sessionStorage: the record outlives the reload that follows a successful form.
_SPY = """
sessionStorage.setItem("odock-sent", "[]");
const original = window.fetch;
window.fetch = function (url, init) {
  const sent = JSON.parse(sessionStorage.getItem("odock-sent"));
  sent.push({url: String(url), method: (init && init.method) || "GET", body: (init && init.body) || null});
  sessionStorage.setItem("odock-sent", JSON.stringify(sent));
  return original.apply(this, arguments);
};
"""


def spy_on_requests(page: Page) -> None:
    """Start recording the requests the current document sends with ``fetch``."""
    page.driver.execute_script(_SPY)


def sent_requests(page: Page) -> list[dict[str, Any]]:
    """The requests recorded since :func:`spy_on_requests` (url, method, body text)."""
    sent: list[dict[str, Any]] = page.driver.execute_script(
        'return JSON.parse(sessionStorage.getItem("odock-sent") || "[]");'
    )
    return sent


def api_provider(console: ControlPlaneUnderTest, org: str, **body: Any) -> dict[str, Any]:
    """A provider activated over the API (as the super admin)."""
    answer = console.admin.post(f"/api/organisations/{org}/providers", json=body)
    assert answer.status_code == 201, answer.text
    provider: dict[str, Any] = answer.json()
    return provider


def api_provider_key(
    console: ControlPlaneUnderTest, org: str, provider_id: str, secret: str
) -> dict[str, Any]:
    """A provider key stored over the API (plaintext, encrypted by the server)."""
    answer = console.admin.post(
        f"/api/organisations/{org}/providers/{provider_id}/keys", json={"name": "api-key", "secret": secret}
    )
    assert answer.status_code == 201, answer.text
    key: dict[str, Any] = answer.json()
    return key
