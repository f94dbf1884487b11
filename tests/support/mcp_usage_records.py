"""MCP usage records for control-plane tests, written as the MCP gateway writes them.

An MCP call is a usage record with ``provider = "mcp"``, no model, the MCP columns set and the
pricing breakdown under ``billing["mcp"]`` (cost = tool calls x call price + bytes in x input
byte price + bytes out x output byte price, integer nanos). Seed MCP rows in an insert of their
own: an executemany takes its columns from its first row.
"""

from __future__ import annotations

from typing import Any

from tests.support.usage_records import usage_row

SERVERS = {"mcp-time": "time", "mcp-fetch": "fetch"}
PRICING = {"call_nanos_usd": 1000, "input_byte_nanos_usd": 2, "output_byte_nanos_usd": 3}


def mcp_row(org: str, server_id: str, method: str, tool: str | None, **values: Any) -> dict[str, Any]:
    """An MCP usage record as the gateway writes it: provider "mcp", no model, the MCP columns set."""
    calls = 1 if method == "tools/call" else 0
    bytes_in, bytes_out = values.pop("bytes_in", 120), values.pop("bytes_out", 480)
    pricing = dict(PRICING)
    call_cost = calls * PRICING["call_nanos_usd"]
    input_cost = bytes_in * PRICING["input_byte_nanos_usd"]
    output_cost = bytes_out * PRICING["output_byte_nanos_usd"]
    cost = call_cost + input_cost + output_cost
    billing = {
        "mcp": {
            "pricing": pricing,
            "calls": calls,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "call_cost_nanos_usd": call_cost,
            "input_cost_nanos_usd": input_cost,
            "output_cost_nanos_usd": output_cost,
            "total_cost_nanos_usd": cost,
        }
    }
    row = {
        "provider": "mcp",
        "provider_id": None,
        "model": None,
        "model_id": None,
        "endpoint": f"/mcp/{SERVERS[server_id]}",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "mcp_server_id": server_id,
        "mcp_server": SERVERS[server_id],
        "mcp_transport": "streamable_http",
        "mcp_method": method,
        "mcp_tool": tool,
        "mcp_tool_calls": calls,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "total_cost_nanos_usd": cost,
        "billing": billing,
    }
    row.update(values)
    return usage_row(org, **row)
