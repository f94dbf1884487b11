"""Identity test helpers: password users, browser-like clients that sign in with cookies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from odock.identity.accounts import create_password_user
from odock.identity.passwords import Passwords
from odock.tenancy.tables import Role
from tests.support.api import ControlPlaneUnderTest

PASSWORD = "correct horse battery staple"
# Cheap argon2id parameters: tests hash many passwords; production cost is the settings default.
CHEAP_HASHING: dict[str, Any] = {"password_hash_time_cost": 1, "password_hash_memory_kib": 1024}


@dataclass
class Account:
    """A password user made for a test."""

    user_id: str
    email: str
    password: str


def password_account(
    cp: ControlPlaneUnderTest,
    role: Role = Role.USER,
    organisation_id: str | None = None,
    *,
    password: str = PASSWORD,
    must_change_password: bool = False,
) -> Account:
    """A new active user who signs in with ``password``."""
    email = f"{role.value.lower()}-{secrets.token_hex(4)}@example.test"
    settings = cp.gateway.runtime.settings
    passwords = Passwords(
        time_cost=settings.password_hash_time_cost, memory_kib=settings.password_hash_memory_kib
    )
    user = cp.gateway.run(
        create_password_user(
            cp.gateway.runtime.sessions,
            passwords,
            email=email,
            password=password,
            role=role,
            organisation_id=organisation_id,
            must_change_password=must_change_password,
        )
    )
    return Account(user.id, email, password)


@dataclass
class Browser:
    """A cookie-keeping client signed in as one account, that sends the CSRF header on writes."""

    client: httpx.Client
    csrf: str

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """``GET`` with the session cookie."""
        return self.client.get(path, **kwargs)

    def write(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A write with the session cookie and the ``X-CSRF-Token`` header."""
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)


def sign_in(cp: ControlPlaneUnderTest, email: str, password: str = PASSWORD) -> Browser:
    """A client signed in through ``POST /api/auth/login`` (asserts success)."""
    client = cp.client()
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return Browser(client, response.json()["csrf_token"])
