"""``POST /api/auth/welcome``: the first-start link's API (the browser flow is in the console tests)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from tests.support.console_identity import EmptyInstall
from tests.support.console_identity import empty_install as empty_install

PASSWORD = "a long enough first password"


def test_the_link_is_no_invitation_and_bad_bodies_are_field_errors(empty_install: EmptyInstall) -> None:
    """The invitation routes refuse the first-start token; the welcome route names each bad field."""
    with empty_install() as install:
        gateway = install.gateway
        assert gateway.app.welcome_url is not None
        token = urlsplit(gateway.app.welcome_url).path.rsplit("/", 1)[1]
        with httpx.Client(base_url=gateway.base_url) as client:
            assert client.get(f"/invite/{token}").json()["error"]["code"] == "invitation_invalid"
            hijack = client.post(f"/api/invitations/{token}/accept", json={"password": PASSWORD})
            assert hijack.status_code == 404
            assert hijack.json()["error"]["code"] == "invitation_invalid"

            bad = client.post(
                "/api/auth/welcome", json={"token": token, "email": "nope", "password": PASSWORD}
            )
            assert bad.status_code == 422
            assert [f["field"] for f in bad.json()["error"]["fields"]] == ["email"]
            short = client.post(
                "/api/auth/welcome", json={"token": token, "email": "a@example.test", "password": "short"}
            )
            assert short.status_code == 422
            assert short.json()["error"]["param"] == "password"

            made = client.post(
                "/api/auth/welcome", json={"token": token, "email": "A@Example.test", "password": PASSWORD}
            )
            assert made.status_code == 201, made.text
            body = made.json()
            assert (body["user"]["email"], body["user"]["role"]) == ("a@example.test", "SUPER_ADMIN")
            assert client.cookies.get("odock_csrf") == body["csrf_token"]
            session = client.get("/api/auth/session")
            assert session.json()["user"]["email"] == "a@example.test"
