"""Odock as an MCP gateway in tests: tenants with MCP servers, and the official SDK client on it.

:func:`mcp_tenant` makes an organisation with a key (through the gateway's own control plane)
and adds MCP servers to it; :func:`connect` opens an ``mcp`` SDK client (Streamable HTTP) on
``/v1/mcp/{server}`` or the aggregate ``/v1/mcp`` with the key as its bearer token.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from odock.mcp.grant_service import WantedGrant
from tests.conftest import Gateway, Tenant, provision


@dataclass
class McpTenant:
    """An organisation with an API key, and the MCP servers added to it (by slug)."""

    gateway: Gateway
    tenant: Tenant
    servers: dict[str, str]  # slug → id

    @property
    def secret(self) -> str:
        """The key's secret."""
        return self.tenant.secret

    def add_server(
        self, slug: str, *, grant: bool = True, tools: Sequence[str] | None = None, **fields: Any
    ) -> str:
        """Add an MCP server (``fields`` as the API takes them); grant it to the key unless told not to."""
        control = self.gateway.runtime.control

        async def add() -> str:
            server = await control.mcp_servers.create(
                self.tenant.organisation_id, {"name": slug, "slug": slug, **fields}
            )
            if grant:
                await control.mcp_grants.grant(self.tenant.key_id, [WantedGrant(server.id, tools)])
            return str(server.id)

        self.servers[slug] = self.gateway.run(add())
        return self.servers[slug]

    def update_server(self, slug: str, **changes: Any) -> None:
        """Change a server through the service (the caches are invalidated as by the API)."""
        self.gateway.run(self.gateway.runtime.control.mcp_servers.update(self.servers[slug], changes))


def mcp_tenant(gateway: Gateway) -> McpTenant:
    """A fresh organisation with a key (the model of ``provision`` is not used)."""
    return McpTenant(gateway, provision(gateway), {})


def http_client(secret: str, **headers: str) -> httpx2.AsyncClient:
    """An HTTP client that presents ``secret`` as the bearer token (SSE reads may be long)."""
    return httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {secret}", **headers},
        timeout=httpx2.Timeout(30.0, read=120.0),
    )


@contextlib.asynccontextmanager
async def connect(
    base_url: str, secret: str, server: str | None = None, **options: Any
) -> AsyncIterator[Client]:
    """The SDK client on ``/v1/mcp/{server}`` (the aggregate endpoint when ``server`` is None)."""
    url = f"{base_url}/v1/mcp" + (f"/{server}" if server else "")
    async with (
        http_client(secret) as http,
        Client(streamable_http_client(url, http_client=http), **options) as client,
    ):
        yield client


@dataclass
class Refused:
    """What :func:`refused` caught: the SDK's ``MCPError`` (``.error.data`` holds Odock's code)."""

    error: Any = None

    @property
    def data(self) -> dict[str, Any]:
        """The error's ``data``: Odock's ``code`` and ``status`` (and the refusal's details)."""
        return dict(self.error.error.data)


@contextlib.asynccontextmanager
async def refused() -> AsyncIterator[Refused]:
    """Expect the block to fail with an ``MCPError`` (raised by the SDK client, possibly wrapped)."""
    caught = Refused()
    try:
        yield caught
    except BaseException as error:  # the SDK wraps it in exception groups
        caught.error = mcp_error(error)
    else:
        raise AssertionError("expected the MCP call to be refused")


def mcp_error(error: BaseException) -> Any:
    """The ``MCPError`` inside ``error`` (the SDK client raises it wrapped in exception groups)."""
    from mcp.shared.exceptions import MCPError

    pending = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, MCPError):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
    raise error


def mcp_records(
    gateway: Gateway,
    server: str,
    *,
    count: int = 1,
    timeout: float = 10.0,
    organisation_id: str | None = None,
) -> list[Any]:
    """The usage records of MCP server ``server`` (slug; of one organisation when given), oldest
    first, once ``count`` exist."""
    import time

    from sqlalchemy import select

    from odock.usage.tables import UsageRecord

    async def load() -> list[UsageRecord]:
        async with gateway.runtime.sessions() as session:
            query = select(UsageRecord).where(UsageRecord.mcp_server == server).order_by(UsageRecord.id)
            if organisation_id is not None:
                query = query.where(UsageRecord.organisation_id == organisation_id)
            return list((await session.execute(query)).scalars())

    deadline = time.monotonic() + timeout
    while True:
        gateway.flush_usage()
        rows: list[UsageRecord] = gateway.run(load())
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)
