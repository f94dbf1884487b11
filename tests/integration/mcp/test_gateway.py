"""The MCP gateway end to end: the official ``mcp`` SDK client → Odock → real MCP servers.

Servers: the SDK test server over Streamable HTTP and over the legacy SSE transport
(tests/support/mcp_servers.py), ``mcp-server-time`` from PyPI over STDIO, and a STDIO server
that crashes on demand.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import event

from odock.app import create_app
from odock.budgets.tables import QuotaMetric
from odock.budgets.windows import Period
from odock.providers.crypto import KeyPair
from tests.conftest import BACKEND, Gateway, settings_factory
from tests.integration.test_hot_path import StatementAudit
from tests.support.mcp_gateway import McpTenant, Refused, connect, mcp_records, mcp_tenant, refused
from tests.support.mcp_servers import (
    McpTestServer,
    crashing_server_command,
    start_mcp_server,
    time_server_command,
)
from tests.support.server import ThreadedServer

TRANSPORTS = ["tools-http", "tools-sse"]


@pytest.fixture(scope="module")
def mcp_gateway(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, provider_keypair: KeyPair
) -> Iterator[Gateway]:
    """One gateway for the module (each test works in an organisation of its own)."""
    settings = settings_factory(BACKEND, tmp_path_factory, request)(
        provider_key_encryption_key_id=provider_keypair.key_id,
        provider_key_encryption_private_key=provider_keypair.private_pem,
        mcp_stdio_allowed_commands=[sys.executable],
    )
    app = create_app(settings)
    gateway = Gateway(server=ThreadedServer(app).start(), app=app)
    yield gateway
    gateway.server.stop()


@pytest.fixture
def tenant(mcp_gateway: Gateway, http_server: McpTestServer, sse_server: McpTestServer) -> McpTenant:
    tenant = mcp_tenant(mcp_gateway)
    tenant.add_server("tools-http", transport="STREAMABLE_HTTP", endpoint_url=http_server.url)
    tenant.add_server("tools-sse", transport="SSE", endpoint_url=sse_server.url)
    command, args = time_server_command()
    tenant.add_server("time", transport="STDIO", stdio_command=command, stdio_args=list(args))
    return tenant


async def refusal(
    gateway: Gateway, tenant: McpTenant, server: str | None, tool: str, **arguments: object
) -> Refused:
    """What a tool call through the gateway is refused with."""
    async with refused() as caught, connect(gateway.base_url, tenant.secret, server) as client:
        await client.call_tool(tool, arguments)
    return caught


def text_of(result: object) -> str:
    return result.content[0].text  # type: ignore[attr-defined, no-any-return]


# --- every transport ----------------------------------------------------------------------------
@pytest.mark.parametrize("server", TRANSPORTS)
async def test_tools_list_and_call(mcp_gateway: Gateway, tenant: McpTenant, server: str) -> None:
    async with connect(mcp_gateway.base_url, tenant.secret, server) as client:
        listed = await client.list_tools()
        assert {"echo", "add", "slow_count", "fail"} <= {tool.name for tool in listed.tools}
        result = await client.call_tool("add", {"a": 2, "b": 40})
        assert not result.is_error
        assert "42" in text_of(result)
        failed = await client.call_tool("fail", {})
        assert failed.is_error


async def test_stdio_time_server(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    async with connect(mcp_gateway.base_url, tenant.secret, "time") as client:
        assert "get_current_time" in {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("get_current_time", {"timezone": "Europe/Paris"})
        assert not result.is_error
        assert "Europe/Paris" in text_of(result)


@pytest.mark.parametrize("server", TRANSPORTS)
async def test_resources_and_prompts_pass_through(
    mcp_gateway: Gateway, tenant: McpTenant, server: str
) -> None:
    async with connect(mcp_gateway.base_url, tenant.secret, server) as client:
        resources = await client.list_resources()
        assert "res://greeting" in {str(r.uri) for r in resources.resources}
        read = await client.read_resource("res://greeting")
        assert read.contents[0].text  # type: ignore[union-attr]
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert "Ada" in prompt.messages[0].content.text  # type: ignore[union-attr]


@pytest.mark.parametrize("server", TRANSPORTS)
async def test_progress_arrives_before_the_result(
    mcp_gateway: Gateway, tenant: McpTenant, server: str
) -> None:
    seen: list[float] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(done)

    async with connect(mcp_gateway.base_url, tenant.secret, server) as client:
        result = await client.call_tool("slow_count", {"n": 3}, progress_callback=progress)
    assert "counted 3" in text_of(result)
    assert seen == [1, 2, 3]


@pytest.mark.parametrize("server", [*TRANSPORTS, None])
async def test_cancellation_reaches_the_server(
    mcp_gateway: Gateway,
    tenant: McpTenant,
    server: str,
    http_server: McpTestServer,
    sse_server: McpTestServer,
) -> None:
    upstream = sse_server if server == "tools-sse" else http_server
    before = upstream.state.cancelled
    prefix = "tools-http__" if server is None else ""  # None: through the aggregate endpoint
    async with connect(mcp_gateway.base_url, tenant.secret, server) as client:
        started = asyncio.Event()

        async def progress(done: float, total: float | None, message: str | None) -> None:
            started.set()  # wait_forever reports once when it starts waiting

        call = asyncio.ensure_future(
            client.call_tool(f"{prefix}wait_forever", {}, progress_callback=progress)
        )
        await asyncio.wait_for(started.wait(), 20)
        call.cancel()
        with pytest.raises((asyncio.CancelledError, BaseException)):
            await call
        counted = await client.call_tool(f"{prefix}cancelled_count", {})
    assert int(text_of(counted)) > before


# --- usage ----------------------------------------------------------------------------------------
async def test_one_usage_record_per_call_with_bytes_and_cost(
    mcp_gateway: Gateway, tenant: McpTenant, http_server: McpTestServer
) -> None:
    pricing = {"call_nanos_usd": 1_000_000, "input_byte_nanos_usd": 10, "output_byte_nanos_usd": 2}
    tenant.add_server("priced", transport="STREAMABLE_HTTP", endpoint_url=http_server.url, pricing=pricing)
    async with connect(mcp_gateway.base_url, tenant.secret, "priced") as client:
        await client.call_tool("echo", {"text": "x" * 100})
    rows = mcp_records(mcp_gateway, "priced", count=2, organisation_id=tenant.tenant.organisation_id)
    calls = [r for r in rows if r.mcp_method == "tools/call"]
    assert len(calls) == 1
    call = calls[0]
    assert (call.provider, call.model, call.mcp_tool, call.mcp_tool_calls) == ("mcp", None, "echo", 1)
    assert (call.mcp_transport, call.status, call.http_status) == ("STREAMABLE_HTTP", "success", 200)
    assert call.api_key_id == tenant.tenant.key_id
    assert min(call.bytes_in, call.bytes_out) > 100
    expected = 1_000_000 + call.bytes_in * 10 + call.bytes_out * 2
    assert call.total_cost_nanos_usd == expected
    assert call.billing["mcp"]["total_cost_nanos_usd"] == expected
    assert {r.mcp_method for r in rows} >= {"tools/call"}


# --- refusals -------------------------------------------------------------------------------------
async def test_ungranted_server_is_refused(
    mcp_gateway: Gateway, tenant: McpTenant, http_server: McpTestServer
) -> None:
    tenant.add_server("secret-tools", transport="STREAMABLE_HTTP", endpoint_url=http_server.url, grant=False)
    error = await refusal(mcp_gateway, tenant, "secret-tools", "echo", text="hi")
    assert error.data["code"] == "mcp_not_allowed"
    assert error.data["status"] == 403
    assert "no grant for MCP server 'secret-tools'" in str(error)


async def test_unknown_and_disabled_servers_are_not_found(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    error = await refusal(mcp_gateway, tenant, "no-such-server", "echo")
    assert error.data["code"] == "mcp_not_found"
    tenant.update_server("tools-http", enabled=False)
    error = await refusal(mcp_gateway, tenant, "tools-http", "echo")
    assert error.data["code"] == "mcp_not_found"


@pytest.mark.parametrize("server", [*TRANSPORTS, "time"])
async def test_blocked_and_unlisted_tools_are_refused_and_hidden(
    mcp_gateway: Gateway, tenant: McpTenant, server: str
) -> None:
    if server == "time":
        tenant.update_server(server, blocked_tools=["convert_time"])
        hidden, visible = "convert_time", "get_current_time"
    else:
        tenant.update_server(server, allowed_tools=["echo", "add"], blocked_tools=["add"])
        hidden, visible = "add", "echo"
    async with connect(mcp_gateway.base_url, tenant.secret, server) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert visible in names
        assert hidden not in names
        if server != "time":
            assert "slow_count" not in names  # not among the allowed tools
    error = await refusal(mcp_gateway, tenant, server, hidden)
    assert error.data["code"] == "mcp_guardrail_block"
    assert f"tool '{hidden}'" in str(error)


async def test_key_tool_grants_deny_by_default(
    mcp_gateway: Gateway, tenant: McpTenant, http_server: McpTestServer
) -> None:
    tenant.add_server(
        "granted-tools", transport="STREAMABLE_HTTP", endpoint_url=http_server.url, tools=["echo"]
    )
    async with connect(mcp_gateway.base_url, tenant.secret, "granted-tools") as client:
        assert [tool.name for tool in (await client.list_tools()).tools] == ["echo"]
        assert "hi" in text_of(await client.call_tool("echo", {"text": "hi"}))
    error = await refusal(mcp_gateway, tenant, "granted-tools", "add", a=1, b=2)
    assert error.data["rule"] == "tool_grants"


async def test_semantic_filter(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    tenant.update_server("tools-http", semantic_filter={"blocked_keywords": ["DROP TABLE"]})
    error = await refusal(mcp_gateway, tenant, "tools-http", "echo", text="please drop table users")
    assert error.data["rule"] == "semantic_filter"
    async with connect(mcp_gateway.base_url, tenant.secret, "tools-http") as client:
        assert "harmless" in text_of(await client.call_tool("echo", {"text": "harmless"}))


async def test_budget_exhausted_is_402(
    mcp_gateway: Gateway, tenant: McpTenant, http_server: McpTestServer
) -> None:
    pricing = {"call_nanos_usd": 1_000_000_000}  # one dollar a call
    tenant.add_server("dear", transport="STREAMABLE_HTTP", endpoint_url=http_server.url, pricing=pricing)
    mcp_gateway.run(
        mcp_gateway.runtime.budgets.create_budget(
            tenant.tenant.organisation_id, "mcp", amount_nanos_usd=2_500_000_000, period=Period.DAILY
        )
    )
    async with connect(mcp_gateway.base_url, tenant.secret, "dear") as client:
        for _ in range(2):
            assert not (await client.call_tool("echo", {"text": "a"})).is_error
    error = await refusal(mcp_gateway, tenant, "dear", "echo", text="a")
    assert (error.data["code"], error.data["status"]) == ("budget_exceeded", 402)


async def test_quota_is_429(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    async with connect(mcp_gateway.base_url, tenant.secret, "tools-http") as client:
        await client.call_tool("echo", {"text": "warm"})  # the SDK lists the tools once, first
        mcp_gateway.run(
            mcp_gateway.runtime.budgets.create_quota(
                tenant.tenant.organisation_id,
                "calls",
                metric=QuotaMetric.REQUESTS,
                limit=1,
                period=Period.DAILY,
            )
        )
        await client.call_tool("echo", {"text": "first"})
        async with refused() as raised:
            await client.call_tool("echo", {"text": "second"})
    error = raised
    assert (error.data["code"], error.data["status"]) == ("quota_exceeded", 429)


async def test_rate_limit_of_the_server(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    async with connect(mcp_gateway.base_url, tenant.secret, "tools-http") as client:
        await client.call_tool("echo", {"text": "warm"})  # the SDK lists the tools once, first
        tenant.update_server("tools-http", policies={"ratelimit": {"requests": {"per_minute": 2}}})
        await client.call_tool("echo", {"text": "1"})
        await client.call_tool("echo", {"text": "2"})
        async with refused() as raised:
            await client.call_tool("echo", {"text": "3"})
    error = raised
    assert (error.data["code"], error.data["scope"]) == ("rpm_exceeded", "mcp_server")


async def test_crashed_stdio_server_is_restarted(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    command, args = crashing_server_command()
    tenant.add_server("crashy", transport="STDIO", stdio_command=command, stdio_args=list(args))
    async with connect(mcp_gateway.base_url, tenant.secret, "crashy") as client:
        assert "before" in text_of(await client.call_tool("echo", {"text": "before"}))
        async with refused() as raised:
            await client.call_tool("crash", {})
        error = raised
        assert error.data["code"] == "mcp_stdio_error"
        assert "exited" in str(error)
        assert "after" in text_of(await client.call_tool("echo", {"text": "after"}))


async def test_upstream_auth_failure(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    with start_mcp_server("streamable_http", bearer_token="right") as guarded:
        tenant.add_server(
            "guarded", transport="STREAMABLE_HTTP", endpoint_url=guarded.url,
            auth_type="BEARER", auth_config={"token": "wrong"},
        )  # fmt: skip
        error = await refusal(mcp_gateway, tenant, "guarded", "echo", text="x")
        assert (error.data["code"], error.data["status"]) == ("mcp_auth_error", 502)
        tenant.update_server("guarded", auth_config={"token": "right"})
        async with connect(mcp_gateway.base_url, tenant.secret, "guarded") as client:
            assert "ok" in text_of(await client.call_tool("echo", {"text": "ok"}))
        # Only the configured credentials went upstream, never the caller's key.
        assert set(guarded.state.authorizations) == {"Bearer wrong", "Bearer right"}


async def test_unreachable_endpoint(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    tenant.add_server("gone", transport="STREAMABLE_HTTP", endpoint_url="http://127.0.0.1:9/mcp")
    error = await refusal(mcp_gateway, tenant, "gone", "echo")
    assert (error.data["code"], error.data["status"]) == ("mcp_upstream_error", 502)


# --- the aggregate endpoint -------------------------------------------------------------------------
async def test_aggregate_endpoint(
    mcp_gateway: Gateway, tenant: McpTenant, http_server: McpTestServer
) -> None:
    tenant.add_server("not-mine", transport="STREAMABLE_HTTP", endpoint_url=http_server.url, grant=False)
    tenant.update_server("tools-sse", blocked_tools=["add"])
    async with connect(mcp_gateway.base_url, tenant.secret) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"tools-http__add", "tools-sse__echo", "time__get_current_time"} <= names
        assert "tools-sse__add" not in names
        assert not any(name.startswith("not-mine__") for name in names)
        assert "42" in text_of(await client.call_tool("tools-http__add", {"a": 40, "b": 2}))
        assert "Europe" in text_of(
            await client.call_tool("time__get_current_time", {"timezone": "Europe/Rome"})
        )
        async with refused() as raised:
            await client.call_tool("tools-sse__add", {"a": 1, "b": 1})
        assert raised.data["code"] == "mcp_guardrail_block"
        async with refused() as raised:
            await client.call_tool("not-mine__echo", {"text": "x"})
        assert raised.data["code"] == "mcp_not_found"
    calls = [
        r
        for r in mcp_records(
            mcp_gateway, "tools-http", count=1, organisation_id=tenant.tenant.organisation_id
        )
        if r.mcp_method == "tools/call"
    ]
    assert calls
    assert (calls[-1].endpoint, calls[-1].mcp_tool) == ("/v1/mcp", "add")


# --- the hot path ---------------------------------------------------------------------------------
def test_a_warm_tool_call_runs_no_sql(mcp_gateway: Gateway, tenant: McpTenant) -> None:
    """A cold MCP request reads the database (keys, servers); warm tool calls run no statement."""
    statements = StatementAudit()
    engine = mcp_gateway.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", statements)
    url = f"{mcp_gateway.base_url}/v1/mcp/tools-http"
    headers = {"Authorization": f"Bearer {tenant.secret}", "Accept": "application/json"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    try:
        with httpx.Client(timeout=30) as http:
            session: dict[str, str] = {}

            def opened() -> None:
                reply = http.post(url, headers=headers, json=initialize)
                session["id"] = reply.headers["mcp-session-id"]

            def called() -> None:
                call = {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": "x"}},
                }
                reply = http.post(url, headers={**headers, "Mcp-Session-Id": session["id"]}, json=call)
                assert "result" in reply.json(), reply.text

            cold = statements.during(opened)
            assert cold, "the cold request ran no request-scoped SQL: the audit is not seeing it"
            for _ in range(3):
                assert statements.during(called) == []
    finally:
        event.remove(engine, "before_cursor_execute", statements)
