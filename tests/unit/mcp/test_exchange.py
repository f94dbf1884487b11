"""An MCP exchange's money: estimates, actuals, billing, and the intent a crash turns into a record."""

from __future__ import annotations

from datetime import UTC, datetime

from odock.keys.principal import KeyPrincipal
from odock.mcp.exchange import McpExchange
from odock.mcp.link import Transport, UpstreamTarget
from odock.mcp.resolved import McpPricing, ResolvedMcpServer
from odock.pipeline.exchange import Timings
from odock.usage.intent import INTERRUPTED, UsageIntent

PRICING = McpPricing(call_nanos_usd=1000, input_byte_nanos_usd=3, output_byte_nanos_usd=2)


def exchange() -> McpExchange:
    target = UpstreamTarget(
        server_id="srv", slug="files", transport=Transport.SSE, version="1", endpoint_url="http://x"
    )
    server = ResolvedMcpServer(
        id="srv",
        organisation_id="org",
        slug="files",
        name="Files",
        enabled=True,
        target=target,
        pricing=PRICING,
    )
    principal = KeyPrincipal(
        key_id="key", key_hash="h", organisation_id="org", team_id=None, user_id="user", type="USER",  # type: ignore[arg-type]
        name="k", expires_at=None, revoked=False, granted=(),
    )  # fmt: skip
    calls = [
        {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "read", "arguments": {}}}
        for n in (1, 2)
    ]
    return McpExchange(
        request_id="r", route="/v1/mcp/{server}", headers={}, client_ip=None,
        received_at=datetime.now(UTC), timings=Timings(received=0.0), principal=principal,
        server=server, messages=calls, bytes_in=100, batch=True,
    )  # fmt: skip


def test_estimates_and_actuals() -> None:
    ex = exchange()
    assert (ex.method, ex.tool, ex.tool_calls) == ("tools/call", "read", 2)
    assert ex.meter_estimate("COST", 50) == 2 * 1000 + 100 * 3 + 50 * 2
    assert (ex.meter_estimate("REQUESTS", 50), ex.meter_estimate("TOKENS", 50)) == (1, 0)
    ex.bytes_out = 40
    assert ex.meter_actuals()["COST"] == 2 * 1000 + 100 * 3 + 40 * 2
    assert ex.meter_actuals()["ERRORS"] == 0
    ex.rpc_errors = 1
    assert ex.meter_actuals()["ERRORS"] == 1


def test_billing_names_every_part() -> None:
    billing = exchange().billing(40)
    assert billing["total_cost_nanos_usd"] == 2380
    assert billing["mcp"] == {
        "pricing": PRICING.to_json(), "calls": 2, "bytes_in": 100, "bytes_out": 40,
        "call_cost_nanos_usd": 2000, "input_cost_nanos_usd": 300, "output_cost_nanos_usd": 80,
        "total_cost_nanos_usd": 2380,
    }  # fmt: skip


def test_an_interrupted_intent_becomes_an_mcp_record_at_the_estimate() -> None:
    ex = exchange()
    held = [{"request_key": ex.record_id, "window_key": "w", "amount": 2400}]
    intent = UsageIntent.from_line(ex.intent(50, held).to_line())
    record = intent.interrupted()
    assert record.status == INTERRUPTED
    assert (record.provider, record.model, record.mcp_server, record.mcp_transport) == (
        "mcp",
        None,
        "files",
        "SSE",
    )
    assert (record.mcp_method, record.mcp_tool, record.mcp_tool_calls, record.bytes_in) == (
        "tools/call",
        "read",
        2,
        100,
    )
    assert record.total_cost_nanos_usd == 2000 + 300 + 100
    assert record.settlements == held
