"""One governed MCP exchange: the messages of a POST bound for one upstream server, and what
they used (bytes, tool calls, cost), turned into its usage record and its intent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from odock.budgets.held import HeldLine
from odock.errors import OdockError
from odock.ids import ordered_hex_id
from odock.keys.principal import KeyPrincipal
from odock.limits.decision import Receipt
from odock.mcp.jsonrpc import TOOLS_CALL, is_request, tool_name
from odock.mcp.link import JsonRpc
from odock.mcp.resolved import ResolvedMcpServer
from odock.pipeline.exchange import GovernanceNotes, Timings
from odock.usage.intent import UsageIntent
from odock.usage.record import USAGE_METADATA_SCHEMA, UsageEvent

MCP_PROVIDER = "mcp"  # the provider named on MCP usage records


@dataclass(slots=True)
class McpExchange:
    """Everything known about one governed MCP exchange (see :mod:`odock.mcp.gateway`)."""

    request_id: str
    route: str  # the route a usage record names, e.g. /v1/mcp/{server}
    headers: dict[str, str]
    client_ip: str | None
    received_at: datetime
    timings: Timings
    principal: KeyPrincipal | None = None
    server: ResolvedMcpServer | None = None
    session_id: str | None = None
    messages: list[JsonRpc] = field(default_factory=list)  # what goes upstream (refused ones left out)
    batch: bool = False  # the client sent a JSON array
    bytes_in: int = 0
    bytes_out: int = 0
    tool_errors: int = 0  # tools/call results flagged isError
    rpc_errors: int = 0  # JSON-RPC error responses (upstream's or the gateway's refusals)
    http_status: int = 200
    outcome: str = "success"  # success | error | client_disconnected | interrupted
    error: OdockError | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    record_id: str = field(default_factory=ordered_hex_id)
    limit_receipt: Receipt | None = None
    meter_lines: list[HeldLine] = field(default_factory=list)
    settlements: list[dict[str, Any]] = field(default_factory=list)
    governance: GovernanceNotes = field(default_factory=GovernanceNotes)

    @property
    def organisation_id(self) -> str | None:
        """The calling key's organisation, once authenticated (read by log records)."""
        return self.principal.organisation_id if self.principal is not None else None

    # --- what the messages are ---------------------------------------------------------
    @property
    def method(self) -> str | None:
        """The JSON-RPC method of the exchange (the first request's; ``batch`` for several)."""
        methods = {m["method"] for m in self.messages if is_request(m)}
        if len(methods) > 1:
            return "batch"
        return methods.pop() if methods else None

    @property
    def tool(self) -> str | None:
        """The tool called, when exactly one is."""
        tools = {name for m in self.messages if (name := tool_name(m)) is not None}
        return tools.pop() if len(tools) == 1 else None

    @property
    def tool_calls(self) -> int:
        """How many ``tools/call`` requests the exchange carries."""
        return sum(1 for m in self.messages if m.get("method") == TOOLS_CALL and "id" in m)

    # --- money ---------------------------------------------------------------------------
    def cost(self, bytes_out: int) -> int:
        """What the exchange costs with ``bytes_out`` bytes of answers (nanos-USD)."""
        assert self.server is not None
        return self.server.pricing.cost(self.tool_calls, self.bytes_in, bytes_out)

    def meter_estimate(self, metric: str, output_allowance: int) -> int:
        """What a budget or quota reserves for the exchange: the calls and the request bytes, plus
        ``output_allowance`` answer bytes at the server's output price."""
        if metric == "COST":
            return self.cost(output_allowance)
        return {"REQUESTS": 1, "ERRORS": 1}.get(metric, 0)

    def meter_actuals(self) -> dict[str, int]:
        """What the exchange used, per metric (tokens are a model call's: 0)."""
        failed = self.outcome == "error" or self.rpc_errors > 0
        return {
            "COST": self.cost(self.bytes_out),
            "REQUESTS": 1,
            "ERRORS": 1 if failed else 0,
            "TOKENS": 0,
            "TOKENS_IN": 0,
            "TOKENS_OUT": 0,
        }

    def billing(self, bytes_out: int) -> dict[str, Any]:
        """The billing breakdown a usage record keeps (the pricing snapshot and each part)."""
        assert self.server is not None
        pricing = self.server.pricing
        calls = self.tool_calls
        call_cost = calls * pricing.call_nanos_usd
        input_cost = self.bytes_in * pricing.input_byte_nanos_usd
        output_cost = bytes_out * pricing.output_byte_nanos_usd
        total = call_cost + input_cost + output_cost
        return {
            "mcp": {
                "pricing": pricing.to_json(),
                "calls": calls,
                "bytes_in": self.bytes_in,
                "bytes_out": bytes_out,
                "call_cost_nanos_usd": call_cost,
                "input_cost_nanos_usd": input_cost,
                "output_cost_nanos_usd": output_cost,
                "total_cost_nanos_usd": total,
            },
            "total_cost_nanos_usd": total,
        }

    def fail(self, error: OdockError, outcome: str = "error") -> None:
        """Record that the exchange ended with ``error``."""
        self.error = error
        self.http_status = error.http_status
        self.outcome = outcome

    # --- records -------------------------------------------------------------------------
    def _metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "schema_version": USAGE_METADATA_SCHEMA,
            "route": self.route,
            "dialect": "mcp",
            "method": "POST",
            "streaming": False,
            "user_agent": self.headers.get("user-agent"),
            "client_ip": self.client_ip,
            "mcp_session": self.session_id,
        }
        methods = [m["method"] for m in self.messages if is_request(m)]
        if len(methods) > 1:
            metadata["mcp_methods"] = methods
        return metadata

    def usage_event(self) -> UsageEvent:
        """The usage record of the finished exchange."""
        principal, server = self.principal, self.server
        assert principal is not None
        assert server is not None
        now = self.timings.finished or time.perf_counter()
        upstream_ms = None
        if self.timings.upstream_started is not None:
            upstream_ms = ((self.timings.upstream_answered or now) - self.timings.upstream_started) * 1000
        called = self.timings.upstream_started is not None
        billing = self.billing(self.bytes_out) if called else {}
        metadata = self._metadata()
        if self.error is not None:
            metadata["error_message"] = self.error.message
        if self.tool_errors:
            metadata["mcp_tool_errors"] = self.tool_errors
        if self.rpc_errors:
            metadata["mcp_rpc_errors"] = self.rpc_errors
        if notes := self.governance.to_json():
            metadata["governance"] = notes
        return UsageEvent(
            id=self.record_id,
            request_id=self.request_id,
            timestamp=self.received_at,
            endpoint=self.route,
            status=self.outcome,
            http_status=self.http_status,
            organisation_id=principal.organisation_id,
            team_id=principal.team_id,
            user_id=principal.user_id,
            api_key_id=principal.key_id,
            provider=MCP_PROVIDER,
            error_code=self.error.code if self.error else None,
            total_cost_nanos_usd=billing.get("total_cost_nanos_usd"),
            latency_ms=(now - self.timings.received) * 1000,
            upstream_latency_ms=upstream_ms,
            gateway_overhead_ms=self.timings.overhead_ms(now),
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            billing=billing,
            metadata=metadata,
            settlements=self.settlements,
            mcp_server_id=server.id,
            mcp_server=server.slug,
            mcp_transport=server.transport.value,
            mcp_method=self.method,
            mcp_tool=self.tool,
            mcp_tool_calls=self.tool_calls,
        )

    def intent(self, output_allowance: int, settlements: list[dict[str, Any]]) -> UsageIntent:
        """The exchange's intent, journaled before it goes upstream: billed at the reserved
        estimate if the process dies before the usage record is written."""
        principal, server = self.principal, self.server
        assert principal is not None
        assert server is not None
        return UsageIntent(
            id=self.record_id,
            request_id=self.request_id,
            timestamp=self.received_at,
            endpoint=self.route,
            stream=False,
            organisation_id=principal.organisation_id,
            team_id=principal.team_id,
            user_id=principal.user_id,
            api_key_id=principal.key_id,
            model_id=None,
            model=None,
            provider_id=None,
            provider=MCP_PROVIDER,
            prompt_tokens=0,
            completion_tokens=0,
            embeddings=False,
            pricing={},
            settlements=settlements,
            metadata=self._metadata(),
            mcp={
                "server_id": server.id,
                "server": server.slug,
                "transport": server.transport.value,
                "method": self.method,
                "tool": self.tool,
                "tool_calls": self.tool_calls,
                "bytes_in": self.bytes_in,
                "billing": self.billing(output_allowance),
            },
        )
