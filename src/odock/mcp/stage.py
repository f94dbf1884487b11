"""The governed MCP exchange: the request stages of spec §2.3 once the key and server are known.

admit      rate limits on every scope at once (global → organisation → team → key → MCP
           server): IP lists, payload bytes, concurrency leases, burst, RPS, RPM
screen     tool rules and the semantic filter, message by message (odock.mcp.access): a
           refused request is answered with a JSON-RPC error and not sent; when nothing is
           left to send, a single refused request is the exchange's refusal (403)
reserve    budgets and quotas (BudgetGate.reserve): the calls and request bytes, plus the
           answer-byte allowance, at the server's prices; REQUESTS 1; ERRORS 1
intend     the usage intent, journaled (a crash still leaves a record, billed at the estimate)
forward    the link of the server's transport: every reply relayed to the caller as it comes,
           ``tools/list`` answers filtered to the tools the key may call
after, on every exit path: settle the budgets on the actual bytes and calls (release when
nothing went upstream), release the concurrency leases, queue the usage record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import orjson

from odock.budgets.stage import BudgetGate
from odock.errors import McpGuardrailBlock, OdockError, RateLimiterUnavailable, ServerShuttingDown
from odock.limits.checks import check_ip, check_payload
from odock.limits.decision import Decision
from odock.limits.limiter import RateLimiter
from odock.limits.plan import CheckPlanner
from odock.limits.policy import PolicyResolver, Scope, ScopePolicy
from odock.mcp import access
from odock.mcp.exchange import McpExchange
from odock.mcp.jsonrpc import TOOLS_CALL, TOOLS_LIST, error_reply, is_request, is_response
from odock.mcp.link import Binding, JsonRpc, Link, Transport
from odock.mcp.resolved import McpGrant
from odock.usage.recorder import UsageRecorder

log = logging.getLogger(__name__)

# Receives each reply for the caller: the message and its JSON bytes.
Sink = Callable[[JsonRpc, bytes], Awaitable[None]]


class McpGovernor:
    """Governs and forwards MCP exchanges (see the module docstring)."""

    def __init__(
        self,
        limiter: RateLimiter,
        resolver: PolicyResolver,
        budgets: BudgetGate,
        recorder: UsageRecorder,
        links: Mapping[Transport, Link],
        *,
        fail_open: bool,
        output_allowance: int,
    ) -> None:
        self._limiter = limiter
        self._resolver = resolver
        self._budgets = budgets
        self._recorder = recorder
        self._links = links
        self._fail_open = fail_open
        self._allowance = output_allowance
        self._planner = CheckPlanner()

    def link(self, transport: Transport) -> Link:
        """The link of ``transport``."""
        return self._links[transport]

    @contextlib.asynccontextmanager
    async def limited(self, ex: McpExchange) -> AsyncIterator[None]:
        """Rate limits alone, for what the gateway answers itself (``initialize``)."""
        try:
            await self._admit(ex)
            yield
        finally:
            await self._release(ex)

    def pre_auth(self, client_ip: str | None) -> None:
        """The global IP lists, before the key is known."""
        scopes = self._resolver.global_scopes()
        if scopes:
            check_ip(scopes, client_ip).raise_if_denied()

    async def run(self, ex: McpExchange, grant: McpGrant, binding: Binding, sink: Sink) -> None:
        """Govern ``ex.messages`` and forward what passes; every reply goes to ``sink``.

        Raises the refusal (limits, a single refused tool call, budgets) or the upstream's failure
        before any reply was given; records the exchange whatever happens.
        """
        server = ex.server
        assert server is not None
        try:
            try:
                await self._admit(ex)
                refused = self._screen(ex, grant)
                if not refused or any(is_request(m) for m in ex.messages):
                    await self._budgets.reserve(ex, lambda metric: ex.meter_estimate(metric, self._allowance))
                    self._recorder.intend(ex.intent(self._allowance, self._budgets.held_settlements(ex)))
                    await self._forward(ex, grant, binding, sink)
                elif not ex.batch:
                    raise refused[0][1]  # one refused request: the refusal is the answer (403)
                else:
                    ex.error, ex.outcome = refused[0][1], "error"  # a batch refused whole: 200, errors
                for message_id, refusal in refused:
                    ex.rpc_errors += 1
                    reply = error_reply(message_id, refusal)
                    await sink(reply, orjson.dumps(reply))
            except OdockError as error:
                ex.fail(error)
                raise
            except asyncio.CancelledError:
                if ex.outcome == "success":  # not the client leaving (which says so first): a shutdown
                    ex.fail(ServerShuttingDown(), "interrupted")
                raise
        finally:
            ex.timings.finished = time.perf_counter()
            await self._after(ex)

    # --- the stages -------------------------------------------------------------------------
    async def _admit(self, ex: McpExchange) -> None:
        principal, server = ex.principal, ex.server
        assert principal is not None
        assert server is not None
        resource = self._resolver.resource_scope(Scope.MCP_SERVER, server.id, server.policies)
        everything: tuple[ScopePolicy, ...] = self._resolver.applicable(principal, resource)
        if not everything:
            return
        self._judge(ex, check_ip(everything, ex.client_ip))
        self._judge(ex, check_payload(everything, ex.bytes_in))
        checks = self._planner.requests(everything)
        if not checks:
            return
        try:
            # Leases are named by the exchange's own id: the aggregate endpoint runs several per request.
            decision = await self._limiter.admit(ex.record_id, checks)
        except RateLimiterUnavailable:
            if not self._fail_open:
                raise
            ex.governance.ratelimit_unavailable = True
            log.warning("rate limiter unavailable; admitting MCP request %s (fail-open)", ex.request_id)
            return
        self._judge(ex, decision)
        ex.limit_receipt = decision.receipt
        quota = decision.receipt.quota if decision.receipt is not None else None
        if quota is not None:
            ex.response_headers["x-ratelimit-limit"] = str(quota.limit)
            ex.response_headers["x-ratelimit-remaining"] = str(quota.remaining)
            ex.response_headers["x-ratelimit-reset"] = str(quota.reset_seconds)

    @staticmethod
    def _judge(ex: McpExchange, decision: Decision) -> None:
        for denial in decision.shadow_denials:
            ex.governance.shadow_denials.append(
                {
                    "stage": "mcp",
                    "code": str(denial.code),
                    "scope": str(denial.scope),
                    "limit": str(denial.limit),
                }
            )
        decision.raise_if_denied()

    @staticmethod
    def _screen(ex: McpExchange, grant: McpGrant) -> list[tuple[object, McpGuardrailBlock]]:
        """Take the refused requests out of ``ex.messages``; return them with their refusals."""
        server = ex.server
        assert server is not None
        refused: list[tuple[object, McpGuardrailBlock]] = []
        kept: list[JsonRpc] = []
        for message in ex.messages:
            refusal = access.refusal(server, grant, message) if is_request(message) else None
            if refusal is None:
                kept.append(message)
            else:
                refused.append((message["id"], refusal))
        ex.messages = kept
        return refused

    async def _forward(self, ex: McpExchange, grant: McpGrant, binding: Binding, sink: Sink) -> None:
        server = ex.server
        assert server is not None
        listings = {m["id"] for m in ex.messages if m.get("method") == TOOLS_LIST and "id" in m}
        calls = {m["id"] for m in ex.messages if m.get("method") == TOOLS_CALL and "id" in m}
        link = self._links[server.transport]
        ex.timings.upstream_started = time.perf_counter()
        async with contextlib.aclosing(link.exchange(server.target, binding, ex.messages)) as replies:
            async for reply in replies:
                if is_response(reply):
                    reply = self._screen_reply(ex, grant, reply, listings, calls)
                data = orjson.dumps(reply)
                ex.bytes_out += len(data)
                ex.timings.upstream_answered = time.perf_counter()
                await sink(reply, data)

    @staticmethod
    def _screen_reply(
        ex: McpExchange, grant: McpGrant, reply: JsonRpc, listings: set[object], calls: set[object]
    ) -> JsonRpc:
        server = ex.server
        assert server is not None
        if "error" in reply:
            ex.rpc_errors += 1
            return reply
        result = reply.get("result")
        if not isinstance(result, dict):
            return reply
        if reply["id"] in listings:
            return {**reply, "result": access.visible_tools(server, grant, result)}
        if reply["id"] in calls and result.get("isError") is True:
            ex.tool_errors += 1
        return reply

    async def _after(self, ex: McpExchange) -> None:
        await self._budgets.settle(ex, ex.meter_actuals())
        await self._release(ex)
        self._recorder.submit(ex.usage_event())

    async def _release(self, ex: McpExchange) -> None:
        receipt, ex.limit_receipt = ex.limit_receipt, None
        if receipt is not None and receipt.leases:
            try:
                await self._limiter.release(receipt)
            except RateLimiterUnavailable:
                log.warning("could not release leases of MCP request %s; they expire", ex.request_id)
