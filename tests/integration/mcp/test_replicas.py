"""MCP sessions and money across replicas, and a budget race through MCP.

A session opened through one replica keeps working through another (production: PostgreSQL +
Redis shared by two gateways), for each upstream transport; N ≫ K concurrent tool calls against a
budget that fits K are admitted exactly K times, on both backends (two replicas in production).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from typing import Any

import httpx
import pytest

from odock.budgets.windows import Period
from odock.settings import Settings
from tests.conftest import BACKEND, Gateway, GatewayFactory, SettingsFactory
from tests.support.mcp_gateway import McpTenant, mcp_records, mcp_tenant
from tests.support.mcp_servers import McpTestServer, time_server_command

CALL_PRICE = 1_000_000_000  # one dollar a tool call
FITS = 5
FIRED = 40
ids = itertools.count(1)


@pytest.fixture
def settings(keyed_settings: SettingsFactory) -> Settings:
    return keyed_settings(mcp_stdio_allowed_commands=[sys.executable])


@pytest.fixture
def replicas(gateway_factory: GatewayFactory, settings: Settings) -> list[Gateway]:
    """Two gateways on one deployment's stores in production; one gateway when embedded."""
    count = 2 if BACKEND == "production" else 1
    return [gateway_factory(settings) for _ in range(count)]


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": next(ids),
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


async def initialize(client: httpx.AsyncClient, url: str, secret: str) -> str:
    """Open a session (raw JSON-RPC, as any MCP client would); return its id."""
    reply = await client.post(
        url,
        headers={"Authorization": f"Bearer {secret}", "Accept": "application/json"},
        json={
            "jsonrpc": "2.0",
            "id": next(ids),
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
    )
    assert reply.status_code == 200, reply.text
    session = reply.headers["mcp-session-id"]
    await client.post(
        url,
        headers={"Authorization": f"Bearer {secret}", "Mcp-Session-Id": session},
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
    )
    return session


async def send(
    client: httpx.AsyncClient, url: str, secret: str, session: str, message: dict[str, Any]
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}", "Mcp-Session-Id": session, "Accept": "application/json"}
    return await client.post(url, headers=headers, json=message)


@pytest.mark.parametrize("transport", ["STREAMABLE_HTTP", "SSE", "STDIO"])
async def test_a_session_moves_between_replicas(
    replicas: list[Gateway], http_server: McpTestServer, sse_server: McpTestServer, transport: str
) -> None:
    if len(replicas) < 2:
        pytest.skip("replicas share sessions only on the production backend (Redis)")
    tenant = mcp_tenant(replicas[0])
    if transport == "STDIO":
        command, args = time_server_command()
        tenant.add_server("srv", transport="STDIO", stdio_command=command, stdio_args=list(args))
        message = call("get_current_time", timezone="UTC")
    else:
        url = http_server.url if transport == "STREAMABLE_HTTP" else sse_server.url
        tenant.add_server("srv", transport=transport, endpoint_url=url)
        message = call("echo", text="across")
    urls = [f"{gateway.base_url}/v1/mcp/srv" for gateway in replicas]
    async with httpx.AsyncClient(timeout=30) as client:
        session = await initialize(client, urls[0], tenant.secret)
        for url in [urls[1], urls[0], urls[1]]:
            reply = await send(client, url, tenant.secret, session, message)
            assert reply.status_code == 200, reply.text
            assert "result" in reply.json(), reply.text
            assert reply.headers["mcp-session-id"] == session
        # Ended through one replica, the session is gone for the other too.
        ended = await client.delete(
            urls[1], headers={"Authorization": f"Bearer {tenant.secret}", "Mcp-Session-Id": session}
        )
        assert ended.status_code == 204
        gone = await send(client, urls[0], tenant.secret, session, message)
    assert gone.status_code == 404
    assert gone.json()["error"]["data"]["code"] == "mcp_session_not_found"


async def test_budget_race_admits_exactly_what_fits(
    replicas: list[Gateway], http_server: McpTestServer
) -> None:
    tenant: McpTenant = mcp_tenant(replicas[0])
    tenant.add_server(
        "paid",
        transport="STREAMABLE_HTTP",
        endpoint_url=http_server.url,
        pricing={"call_nanos_usd": CALL_PRICE},
    )
    gateway = replicas[0]
    gateway.run(
        gateway.runtime.budgets.create_budget(
            tenant.tenant.organisation_id, "mcp", amount_nanos_usd=FITS * CALL_PRICE, period=Period.DAILY
        )
    )
    urls = [f"{g.base_url}/v1/mcp/paid" for g in replicas]
    limits = httpx.Limits(max_connections=FIRED + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        session = await initialize(client, urls[0], tenant.secret)
        replies = await asyncio.gather(
            *(
                send(client, urls[n % len(urls)], tenant.secret, session, call("echo", text=str(n)))
                for n in range(FIRED)
            )
        )
    admitted = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code != 200]
    assert len(admitted) == FITS, [r.text for r in replies]
    assert {r.status_code for r in refused} == {402}
    assert {r.json()["error"]["data"]["code"] for r in refused} == {"budget_exceeded"}
    records = [r for r in mcp_records(gateway, "paid", count=FIRED) if r.mcp_method == "tools/call"]
    assert len(records) == FIRED
    spend = sum(r.total_cost_nanos_usd or 0 for r in records)
    assert spend == FITS * CALL_PRICE  # exactly what fits: never more than the budget
    shape = f"{len(replicas)} replica(s)"
    print(f"MCP budget race on {shape}: fired {FIRED}, admitted {len(admitted)}, spend {spend}")
