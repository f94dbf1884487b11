"""A control plane under test: a real server, a super admin, and callers of every role.

Callers authenticate with personal admin tokens (``Authorization: Bearer odk_admin_…``) so tests
can act as any role without a browser; cookie sessions are tested on their own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from odock.identity.actors import issue_admin_token
from odock.tenancy.tables import Role, TeamMember, TeamMemberRole, User


@dataclass
class Caller:
    """An HTTP client acting as one user."""

    client: httpx.Client
    user_id: str
    email: str
    role: Role
    organisation_id: str | None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """``GET path``."""
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """``POST path``."""
        return self.client.post(path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        """``PUT path``."""
        return self.client.put(path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        """``PATCH path``."""
        return self.client.patch(path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        """``DELETE path``."""
        return self.client.delete(path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Any method."""
        return self.client.request(method, path, **kwargs)


@dataclass
class ControlPlaneUnderTest:
    """A running gateway + control plane, a super admin caller, and a factory for other callers."""

    gateway: Any  # tests.conftest.Gateway (not imported: avoids a cycle)
    admin: Caller = field(init=False)
    _clients: list[httpx.Client] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.admin = self.caller(Role.SUPER_ADMIN, None)

    @property
    def base_url(self) -> str:
        """The server's URL."""
        return str(self.gateway.base_url)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An unauthenticated client for this server (closed at teardown)."""
        client = httpx.Client(base_url=self.base_url, timeout=30, **kwargs)
        self._clients.append(client)
        return client

    def caller(
        self,
        role: Role,
        organisation_id: str | None,
        *,
        teams: dict[str, TeamMemberRole] | None = None,
        email: str | None = None,
    ) -> Caller:
        """A new active user with ``role`` in ``organisation_id`` (and team memberships), with a token."""
        address = email or f"{role.value.lower()}-{secrets.token_hex(4)}@example.test"

        async def create() -> tuple[str, str]:
            runtime = self.gateway.runtime
            user = await runtime.control.users.create_user(
                address, organisation_id=organisation_id, role=role
            )
            async with runtime.sessions() as session:
                for team_id, member_role in (teams or {}).items():
                    session.add(TeamMember(team_id=team_id, user_id=user.id, role=member_role))
                await session.commit()
            issued = await issue_admin_token(runtime.sessions, user.id, "tests")
            return user.id, issued.token

        user_id, token = self.gateway.run(create())
        client = self.client(headers={"Authorization": f"Bearer {token}"})
        return Caller(client, user_id, address, role, organisation_id)

    def organisation(self, name: str | None = None) -> str:
        """A new organisation (created directly through the service layer); its id."""

        async def create() -> str:
            org = await self.gateway.runtime.control.tenancy.create_organisation(
                name or f"org-{secrets.token_hex(4)}"
            )
            return str(org.id)

        return str(self.gateway.run(create()))

    def user_row(self, user_id: str) -> User:
        """The stored user row (for assertions)."""

        async def load() -> User:
            async with self.gateway.runtime.sessions() as session:
                user = await session.get(User, user_id)
                assert user is not None
                return user

        return self.gateway.run(load())  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close every client."""
        for client in self._clients:
            client.close()
