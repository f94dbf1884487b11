"""Sign-in with OpenID Connect and GitHub against real fake providers: the whole redirect dance."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from odock.tenancy.tables import Role
from tests.conftest import GatewayFactory, SettingsFactory
from tests.fakes.oidc_provider import FakeIdentityProvider, FakeUser, running_fake_identity_provider
from tests.support.api import ControlPlaneUnderTest
from tests.support.identity import CHEAP_HASHING, password_account


@pytest.fixture
def idp() -> Iterator[FakeIdentityProvider]:
    """A fake OpenID Connect provider and fake GitHub on a local port."""
    with running_fake_identity_provider() as fake:
        yield fake


@pytest.fixture
def cp(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory, idp: FakeIdentityProvider
) -> Iterator[ControlPlaneUnderTest]:
    """A control plane whose OIDC and GitHub sign-in point at the fakes."""
    plane = ControlPlaneUnderTest(gateway_factory(make_settings(**idp.settings(), **CHEAP_HASHING)))
    yield plane
    plane.close()


def dance(
    cp: ControlPlaneUnderTest,
    provider: str,
    *,
    invite: str | None = None,
    browser: httpx.Client | None = None,
) -> tuple[httpx.Client, httpx.Response]:
    """Follow login → provider → callback by hand, carrying cookies; the browser and the last answer."""
    browser = browser or cp.client()
    params = {"invite": invite} if invite else {}
    start = browser.get(f"/api/auth/oauth/{provider}/login", params=params)
    assert start.status_code == 302, start.text
    with httpx.Client() as outside:
        at_provider = outside.get(start.headers["location"])
    assert at_provider.status_code == 302, at_provider.text
    callback = urlsplit(at_provider.headers["location"])
    assert callback.path == f"/api/auth/oauth/{provider}/callback"
    return browser, browser.get(f"{callback.path}?{callback.query}")


def test_providers_are_listed(cp: ControlPlaneUnderTest) -> None:
    """The configured providers are listed publicly for the sign-in page."""
    listed = cp.client().get("/api/auth/oauth/providers").json()
    assert {p["id"]: p["name"] for p in listed} == {"oidc": "Fake IdP", "github": "GitHub"}


def test_authorize_redirect_carries_state_nonce_and_pkce(cp: ControlPlaneUnderTest) -> None:
    """The login redirect sends state, nonce and an S256 PKCE challenge, and sets the state cookie."""
    response = cp.client().get("/api/auth/oauth/oidc/login")
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"][0]
    assert query["state"][0]
    assert query["code_challenge"][0]
    assert "odock_oauth_state" in response.headers["set-cookie"]
    assert "httponly" in response.headers["set-cookie"].lower()


def test_oidc_sign_in_without_invitation_creates_pending_user(
    cp: ControlPlaneUnderTest, idp: FakeIdentityProvider
) -> None:
    """A first OIDC sign-in makes a PENDING user with no organisation, who can see only their session."""
    browser, done = dance(cp, "oidc")
    assert done.status_code == 302
    assert done.headers["location"] == "/"
    session = browser.get("/api/auth/session").json()
    assert session["user"]["email"] == idp.user.email
    assert session["user"]["status"] == "PENDING"
    assert session["user"]["organisation_id"] is None
    refused = browser.get("/api/auth/tokens")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "account_not_active"


def test_second_sign_in_finds_the_linked_user(cp: ControlPlaneUnderTest) -> None:
    """Signing in again with the same provider account reaches the same user."""
    first, _ = dance(cp, "oidc")
    second, _ = dance(cp, "oidc")
    assert (
        first.get("/api/auth/session").json()["user"]["id"]
        == second.get("/api/auth/session").json()["user"]["id"]
    )


def test_oidc_sign_in_with_invitation_joins_the_organisation(
    cp: ControlPlaneUnderTest, idp: FakeIdentityProvider
) -> None:
    """With an invitation for the signed-in e-mail, the user is ACTIVE in the organisation with the role."""
    org = cp.organisation()
    invited = cp.admin.post(
        f"/api/organisations/{org}/invitations", json={"email": idp.user.email, "role": "MANAGER"}
    ).json()
    browser, done = dance(cp, "oidc", invite=invited["token"])
    assert done.status_code == 302
    user = browser.get("/api/auth/session").json()["user"]
    assert (user["status"], user["role"], user["organisation_id"]) == ("ACTIVE", "MANAGER", org)
    listed = cp.admin.get(f"/api/organisations/{org}/invitations").json()["items"]
    assert listed[0]["status"] == "ACCEPTED"
    assert browser.get(f"/api/organisations/{org}/users/{user['id']}").status_code == 200


def test_invitation_for_another_email_is_refused(
    cp: ControlPlaneUnderTest, idp: FakeIdentityProvider
) -> None:
    """Signing in with an account whose e-mail is not the invited one is 403 invitation_email_mismatch."""
    org = cp.organisation()
    invited = cp.admin.post(
        f"/api/organisations/{org}/invitations", json={"email": f"else-{idp.user.subject}@example.test"}
    ).json()
    _, done = dance(cp, "oidc", invite=invited["token"])
    assert done.status_code == 403
    assert done.json()["error"]["code"] == "invitation_email_mismatch"


def test_no_linking_to_a_password_account_by_email(
    cp: ControlPlaneUnderTest, idp: FakeIdentityProvider
) -> None:
    """An external account whose e-mail belongs to a password user is refused without an invitation."""
    account = password_account(cp, Role.ORG_ADMIN, cp.organisation())
    idp.user = FakeUser(f"takeover-{idp.user.subject}", account.email)
    browser, done = dance(cp, "oidc")
    assert done.status_code == 401
    assert done.json()["error"]["code"] == "sign_in_failed"
    assert browser.get("/api/auth/session").status_code == 401


def test_jwks_is_fetched_once_for_many_sign_ins(cp: ControlPlaneUnderTest, idp: FakeIdentityProvider) -> None:
    """The provider's JWKS is cached: three sign-ins fetch it once."""
    for _ in range(3):
        _, done = dance(cp, "oidc")
        assert done.status_code == 302
    assert idp.jwks_fetches == 1


def test_a_rotated_signing_key_is_picked_up(cp: ControlPlaneUnderTest, idp: FakeIdentityProvider) -> None:
    """After the provider rotates its key, a token under the new kid refetches the JWKS once and signs in."""
    assert dance(cp, "oidc")[1].status_code == 302
    idp.rotate_key()
    browser, done = dance(cp, "oidc")
    assert done.status_code == 302, done.text
    assert browser.get("/api/auth/session").status_code == 200
    assert dance(cp, "oidc")[1].status_code == 302
    assert idp.jwks_fetches == 2


def test_unknown_kids_refetch_at_most_once(cp: ControlPlaneUnderTest, idp: FakeIdentityProvider) -> None:
    """Tokens under made-up kids are refused, and cannot make every sign-in refetch the JWKS."""
    assert dance(cp, "oidc")[1].status_code == 302
    idp.tamper = "unknown_kid"
    for _ in range(3):
        _, done = dance(cp, "oidc")
        assert done.status_code == 401
        assert done.json()["error"]["code"] == "sign_in_failed"
    assert idp.jwks_fetches == 2  # the first sign-in's, and one refetch for all the unknown kids


@pytest.mark.parametrize("tamper", ["nonce", "audience", "issuer", "expired", "signature", "unknown_kid"])
def test_bad_id_tokens_are_rejected(
    cp: ControlPlaneUnderTest, idp: FakeIdentityProvider, tamper: str
) -> None:
    """An ID token with a wrong nonce, audience, issuer, expiry or signature signs nobody in."""
    idp.tamper = tamper
    browser, done = dance(cp, "oidc")
    assert done.status_code == 401
    assert done.json()["error"]["code"] == "sign_in_failed"
    assert "odock_session" not in browser.cookies


def test_callback_needs_the_browser_that_started(cp: ControlPlaneUnderTest) -> None:
    """A callback URL replayed in another browser (no state cookie) is refused, and a state works once."""
    browser = cp.client()
    start = browser.get("/api/auth/oauth/oidc/login")
    with httpx.Client() as outside:
        callback = urlsplit(outside.get(start.headers["location"]).headers["location"])
    url = f"{callback.path}?{callback.query}"
    assert cp.client().get(url).status_code == 401
    assert browser.get(url).status_code == 302
    assert browser.get(url).status_code == 401


def test_json_callback(cp: ControlPlaneUnderTest, idp: FakeIdentityProvider) -> None:
    """With Accept: application/json the callback answers the user and the CSRF token."""
    browser = cp.client(headers={"Accept": "application/json"})
    _, done = dance(cp, "oidc", browser=browser)
    assert done.status_code == 200, done.text
    assert done.json()["user"]["email"] == idp.user.email
    assert done.json()["csrf_token"]


def test_github_sign_in_uses_verified_primary_email(
    cp: ControlPlaneUnderTest, idp: FakeIdentityProvider
) -> None:
    """GitHub sign-in uses the numeric id and the verified primary e-mail from /user/emails."""
    browser, done = dance(cp, "github")
    assert done.status_code == 302, done.text
    user = browser.get("/api/auth/session").json()["user"]
    assert user["email"] == idp.github_user.email
    assert user["status"] == "PENDING"


def test_github_unverified_primary_email_is_refused(
    cp: ControlPlaneUnderTest, idp: FakeIdentityProvider
) -> None:
    """A GitHub account without a verified primary e-mail cannot sign in."""
    idp.github_user = FakeUser("777", f"unverified-{idp.user.subject}@example.test", email_verified=False)
    _, done = dance(cp, "github")
    assert done.status_code == 401


def test_github_invitation_and_approval(cp: ControlPlaneUnderTest) -> None:
    """A pending GitHub user approved by a super admin (after being given an organisation) becomes ACTIVE."""
    browser, _ = dance(cp, "github")
    user_id = browser.get("/api/auth/session").json()["user"]["id"]
    org = cp.organisation()
    assert cp.admin.patch(f"/api/admin/users/{user_id}", json={"organisation_id": org}).status_code == 200
    approved = cp.admin.post(f"/api/organisations/{org}/users/{user_id}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "ACTIVE"
    assert browser.get("/api/auth/tokens").status_code == 200


def test_unknown_provider_is_404(cp: ControlPlaneUnderTest) -> None:
    """A provider that is not configured is 404."""
    assert cp.client().get("/api/auth/oauth/gitlab/login").status_code == 404


def test_a_refused_callback_sends_a_browser_back_to_the_sign_in_page(cp: ControlPlaneUnderTest) -> None:
    """A browser (Accept: text/html) is sent to /sign-in, which says in its own words what failed."""
    browser = cp.client(headers={"Accept": "text/html,application/xhtml+xml"})
    refused = browser.get("/api/auth/oauth/oidc/callback?error=access_denied")
    assert refused.status_code == 303
    assert refused.headers["location"] == "/sign-in?failed=sign_in_failed"
    page = browser.get(refused.headers["location"])
    assert "did not complete" in page.text
    crafted = browser.get("/sign-in?failed=call%20this%20number")
    assert "call this number" not in crafted.text
    assert "did not complete" in crafted.text
    api_client = cp.client().get("/api/auth/oauth/oidc/callback?error=access_denied")
    assert api_client.status_code == 401
    assert api_client.json()["error"]["code"] == "sign_in_failed"
