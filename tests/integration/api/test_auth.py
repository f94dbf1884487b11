"""Password sign-in, cookies, CSRF, logout, password change, the bootstrap admin and throttling."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pytest
from pydantic import SecretStr

from odock.tenancy.tables import Role
from tests.conftest import BACKEND, GatewayFactory, SettingsFactory
from tests.support.api import ControlPlaneUnderTest
from tests.support.identity import CHEAP_HASHING, PASSWORD, password_account, sign_in

BOOTSTRAP_EMAIL = "root@example.test"
BOOTSTRAP_PASSWORD = "bootstrap-password-1"


@pytest.fixture
def cp(gateway_factory: GatewayFactory, make_settings: SettingsFactory) -> Iterator[ControlPlaneUnderTest]:
    """A control plane with cheap password hashing and a low login-failure limit."""
    plane = ControlPlaneUnderTest(gateway_factory(make_settings(login_max_failures=3, **CHEAP_HASHING)))
    yield plane
    plane.close()


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """The raw Set-Cookie header of each cookie the response sets, by name."""
    found: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        name = next(iter(SimpleCookie(header)))
        found[name] = header
    return found


def test_login_sets_httponly_lax_session_cookie_and_returns_csrf(cp: ControlPlaneUnderTest) -> None:
    """A good password answers 200 with the user and a CSRF token, an HttpOnly SameSite=Lax session cookie."""
    account = password_account(cp, Role.SUPER_ADMIN)
    response = cp.client().post(
        "/api/auth/login", json={"email": account.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["id"] == account.user_id
    assert body["csrf_token"]
    cookies = _set_cookies(response)
    session = cookies["odock_session"].lower()
    assert "httponly" in session
    assert "samesite=lax" in session
    assert "path=/" in session
    assert "secure" not in session  # plain http here; https or the setting turns it on
    csrf = cookies["odock_csrf"].lower()
    assert "httponly" not in csrf
    assert body["csrf_token"] in cookies["odock_csrf"]
    assert cp.user_row(account.user_id).last_login_at is not None


def test_secure_cookie_setting(gateway_factory: GatewayFactory, make_settings: SettingsFactory) -> None:
    """With session_cookie_secure on, both cookies are marked Secure."""
    plane = ControlPlaneUnderTest(gateway_factory(make_settings(session_cookie_secure=True, **CHEAP_HASHING)))
    try:
        account = password_account(plane)
        response = plane.client().post("/api/auth/login", json={"email": account.email, "password": PASSWORD})
        cookies = _set_cookies(response)
        assert "secure" in cookies["odock_session"].lower()
        assert "secure" in cookies["odock_csrf"].lower()
    finally:
        plane.close()


def test_wrong_password_and_unknown_email_answer_alike(cp: ControlPlaneUnderTest) -> None:
    """A wrong password and an unknown e-mail both answer 401 invalid_credentials with one message."""
    account = password_account(cp)
    wrong = cp.client().post("/api/auth/login", json={"email": account.email, "password": "x" * 12})
    unknown = cp.client().post("/api/auth/login", json={"email": "nobody@example.test", "password": "x" * 12})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"] == unknown.json()["error"]
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    assert "set-cookie" not in wrong.headers


def test_session_reports_signed_in_user(cp: ControlPlaneUnderTest) -> None:
    """GET /api/auth/session answers the signed-in user with role, organisation and teams."""
    org = cp.organisation()
    account = password_account(cp, Role.ORG_ADMIN, org)
    browser = sign_in(cp, account.email)
    body = browser.get("/api/auth/session").json()
    assert body["via"] == "session"
    assert body["user"]["email"] == account.email
    assert body["user"]["organisation_id"] == org
    assert body["user"]["role"] == "ORG_ADMIN"
    assert body["user"]["must_change_password"] is False
    assert body["user"]["teams"] == []


def test_cookie_writes_need_the_csrf_header(cp: ControlPlaneUnderTest) -> None:
    """A cookie-authenticated write without (or with a wrong) X-CSRF-Token is 403 csrf_failed."""
    account = password_account(cp, Role.SUPER_ADMIN)
    browser = sign_in(cp, account.email)
    missing = browser.client.post("/api/auth/tokens", json={"name": "ci"})
    wrong = browser.client.post("/api/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": "nope"})
    assert missing.status_code == wrong.status_code == 403
    assert missing.json()["error"]["code"] == wrong.json()["error"]["code"] == "csrf_failed"
    assert browser.write("POST", "/api/auth/tokens", json={"name": "ci"}).status_code == 201


def test_token_calls_need_no_csrf(cp: ControlPlaneUnderTest) -> None:
    """A bearer admin token writes without any CSRF header."""
    assert cp.admin.post("/api/auth/tokens", json={"name": "automation"}).status_code == 201


def test_logout_ends_the_session(cp: ControlPlaneUnderTest) -> None:
    """After logout the same cookie is refused (401) and the cookies are cleared."""
    account = password_account(cp)
    browser = sign_in(cp, account.email)
    cookie = browser.client.cookies["odock_session"]
    response = browser.write("POST", "/api/auth/logout")
    assert response.status_code == 204
    replay = cp.client(cookies={"odock_session": cookie}).get("/api/auth/session")
    assert replay.status_code == 401


def test_password_change_revokes_other_sessions_and_rotates_this_one(cp: ControlPlaneUnderTest) -> None:
    """Changing the password ends every other session; the caller gets a fresh session and CSRF token."""
    account = password_account(cp)
    first, second = sign_in(cp, account.email), sign_in(cp, account.email)
    old_cookie = first.client.cookies["odock_session"]
    new_password = "a brand new password"
    changed = first.write(
        "POST", "/api/auth/password", json={"current_password": PASSWORD, "new_password": new_password}
    )
    assert changed.status_code == 200, changed.text
    assert second.get("/api/auth/session").status_code == 401
    assert cp.client(cookies={"odock_session": old_cookie}).get("/api/auth/session").status_code == 401
    first.csrf = changed.json()["csrf_token"]
    assert first.get("/api/auth/session").status_code == 200
    assert (
        cp.client().post("/api/auth/login", json={"email": account.email, "password": PASSWORD}).status_code
        == 401
    )
    sign_in(cp, account.email, new_password)


def test_password_change_checks_current_and_length(cp: ControlPlaneUnderTest) -> None:
    """A wrong current password is 401; a new password under 12 characters is 422 naming the field."""
    account = password_account(cp)
    browser = sign_in(cp, account.email)
    wrong = browser.write(
        "POST", "/api/auth/password", json={"current_password": "nope" * 3, "new_password": "x" * 20}
    )
    assert wrong.status_code == 401
    short = browser.write(
        "POST", "/api/auth/password", json={"current_password": PASSWORD, "new_password": "short"}
    )
    assert short.status_code == 422
    assert short.json()["error"]["param"] == "new_password"


def test_sessions_list_and_revoke_one(cp: ControlPlaneUnderTest) -> None:
    """A user lists their own live sessions (current one marked) and can end another one."""
    account = password_account(cp)
    first, second = sign_in(cp, account.email), sign_in(cp, account.email)
    items = first.get("/api/auth/sessions").json()["items"]
    assert len(items) == 2
    current = [s for s in items if s["current"]]
    assert len(current) == 1
    other = next(s["id"] for s in items if not s["current"])
    assert first.write("DELETE", f"/api/auth/sessions/{other}").status_code == 204
    assert second.get("/api/auth/session").status_code == 401
    assert first.get("/api/auth/session").status_code == 200


def test_cannot_revoke_someone_elses_session(cp: ControlPlaneUnderTest) -> None:
    """Another user's session id is 404 and stays alive."""
    mine, theirs = password_account(cp), password_account(cp)
    me, them = sign_in(cp, mine.email), sign_in(cp, theirs.email)
    their_id = them.get("/api/auth/session").json()["session_id"]
    assert me.write("DELETE", f"/api/auth/sessions/{their_id}").status_code == 404
    assert them.get("/api/auth/session").status_code == 200


def test_login_throttled_after_failures(cp: ControlPlaneUnderTest) -> None:
    """Past login_max_failures failures for an e-mail, even the right password is 429 with Retry-After."""
    account = password_account(cp)
    client = cp.client()
    for _ in range(3):
        assert (
            client.post("/api/auth/login", json={"email": account.email, "password": "w" * 12}).status_code
            == 401
        )
    refused = client.post("/api/auth/login", json={"email": account.email, "password": PASSWORD})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "login_throttled"
    assert int(refused.headers["retry-after"]) >= 1


def test_success_clears_the_email_failure_count(cp: ControlPlaneUnderTest) -> None:
    """A successful sign-in resets the e-mail's failures: a typo afterwards is 401, not 429."""
    account = password_account(cp)
    client = cp.client()
    wrong = {"email": account.email, "password": "w" * 12}
    assert [client.post("/api/auth/login", json=wrong).status_code for _ in range(2)] == [401, 401]
    assert (
        client.post("/api/auth/login", json={"email": account.email, "password": PASSWORD}).status_code == 200
    )
    assert client.post("/api/auth/login", json=wrong).status_code == 401


@pytest.mark.skipif(
    BACKEND != "production", reason="throttling across replicas needs the shared Redis counters"
)
def test_throttling_holds_across_replicas(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory
) -> None:
    """Failures spread over two replicas add up: the limit is shared through Redis."""
    settings = make_settings(login_max_failures=3, **CHEAP_HASHING)
    one = ControlPlaneUnderTest(gateway_factory(settings))
    two = ControlPlaneUnderTest(gateway_factory(settings))
    try:
        account = password_account(one)
        wrong = {"email": account.email, "password": "w" * 12}
        assert one.client().post("/api/auth/login", json=wrong).status_code == 401
        assert two.client().post("/api/auth/login", json=wrong).status_code == 401
        assert one.client().post("/api/auth/login", json=wrong).status_code == 401
        refused = two.client().post("/api/auth/login", json={"email": account.email, "password": PASSWORD})
        assert refused.status_code == 429
    finally:
        one.close()
        two.close()


def test_bootstrap_admin_must_change_password_in_production_mode(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory, empty_database: dict[str, str]
) -> None:
    """The bootstrap admin of a production-mode install can do nothing but change the password first."""
    settings = make_settings(
        bootstrap_admin_email=BOOTSTRAP_EMAIL,
        bootstrap_admin_password=BOOTSTRAP_PASSWORD,
        bootstrap_admin_require_password_change=True if BACKEND == "embedded" else None,
        **empty_database,
        **CHEAP_HASHING,
    )
    plane = ControlPlaneUnderTest(gateway_factory(settings))
    try:
        browser = sign_in(plane, BOOTSTRAP_EMAIL, BOOTSTRAP_PASSWORD)
        session = browser.get("/api/auth/session").json()
        assert session["user"]["role"] == "SUPER_ADMIN"
        assert session["user"]["must_change_password"] is True
        for method, path in (("GET", "/api/auth/tokens"), ("POST", "/api/auth/tokens")):
            refused = (
                browser.write(method, path, json={"name": "x"}) if method == "POST" else browser.get(path)
            )
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "password_change_required"
        changed = browser.write(
            "POST",
            "/api/auth/password",
            json={"current_password": BOOTSTRAP_PASSWORD, "new_password": "the rotated admin password"},
        )
        assert changed.status_code == 200, changed.text
        browser.csrf = changed.json()["csrf_token"]
        assert browser.get("/api/auth/tokens").status_code == 200
        assert browser.get("/api/auth/session").json()["user"]["must_change_password"] is False
    finally:
        plane.close()


def test_bootstrap_admin_only_when_no_super_admin(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory, empty_database: dict[str, str]
) -> None:
    """No bootstrap admin is created on a database that already has a super admin."""
    settings = make_settings(**empty_database, **CHEAP_HASHING)
    first = ControlPlaneUnderTest(gateway_factory(settings))  # makes a super admin (its caller)
    second = ControlPlaneUnderTest(
        gateway_factory(
            settings.model_copy(
                update={
                    "bootstrap_admin_email": BOOTSTRAP_EMAIL,
                    "bootstrap_admin_password": SecretStr(BOOTSTRAP_PASSWORD),
                }
            )
        )
    )
    try:
        login = {"email": BOOTSTRAP_EMAIL, "password": BOOTSTRAP_PASSWORD}
        assert second.client().post("/api/auth/login", json=login).status_code == 401
        users = second.admin.get("/api/admin/users", params={"q": "root@"}).json()["items"]
        assert users == []
    finally:
        first.close()
        second.close()


def test_no_secret_in_logs(cp: ControlPlaneUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    """Passwords, session tokens and CSRF tokens never reach the log."""
    caplog.set_level(logging.DEBUG)
    account = password_account(cp)
    browser = sign_in(cp, account.email)
    browser.get("/api/auth/session")
    cp.client().post("/api/auth/login", json={"email": account.email, "password": "wrong password!"})
    # Everything the server side logged (the test's own HTTP client logs its traffic: not ours).
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert f"user {account.user_id} signed in" in text  # the server's records are captured
    assert PASSWORD not in text
    assert browser.client.cookies["odock_session"] not in text
    assert browser.csrf not in text
