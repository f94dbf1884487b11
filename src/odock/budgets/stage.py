"""The budget and quota stage: reserve before the upstream call, settle or release after.

Flow (spec §5.3)::

    before:  lines = current window of every meter on the key's chain x its estimate
             store.reserve(record_id, lines)      one call, all or nothing, idempotent
               COLD     → prime each cold counter from the ledger (cold path only), retry
               REJECTED → 402 budget_exceeded / 429 quota_exceeded, before any upstream call
    after:   upstream was called → store.settle(record_id, actuals); the settlements ride on
             the usage record into the ledger (same transaction, idempotent)
             otherwise          → store.release(record_id)

Estimates: cost = estimated input tokens x input price + output allowance x output price
(unpriced models reserve ``unpriced_reservation_nanos`` or are refused); REQUESTS = 1;
TOKENS/TOKENS_IN/TOKENS_OUT from the same token estimate; ERRORS reserves one error and settles
1 or 0. When the counter store is unreachable, ``fail_open`` decides (503 when closed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.aio import ready
from odock.billing import cost_nanos
from odock.budgets.held import HeldLine
from odock.budgets.ledger import Settlement, window_state
from odock.budgets.meters import MAX_AMOUNT, MeterLine, MeterStore, ReserveOutcome, ReserveResult
from odock.budgets.specs import BUDGET, MeterSpec
from odock.budgets.windows import Schedule, Window
from odock.errors import BudgetExceeded, MeterStoreUnavailable, ModelPricingMissing, OdockError, QuotaExceeded
from odock.ids import RequestId, ordered_hex_id
from odock.llm.upstream import Endpoint, Usage
from odock.pipeline.exchange import Exchange, Metered
from odock.pipeline.runner import SplitStage
from odock.telemetry import metrics

log = logging.getLogger(__name__)


class BudgetGate(SplitStage):
    """Reserves against every matching budget and quota window; settles or releases after."""

    name = "budgets"

    def __init__(
        self,
        store: MeterStore,
        sessions: async_sessionmaker[AsyncSession],
        *,
        fail_open: bool,
        reservation_ttl: float,
        unpriced_reservation_nanos: int | None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._fail_open = fail_open
        self._ttl = reservation_ttl
        self._unpriced = unpriced_reservation_nanos
        self._schedules: dict[tuple[str, int], Schedule] = {}
        self._limits: dict[str, int] = {}  # effective limits learned when priming (rollover)
        self._current: dict[tuple[str, int], tuple[Window, str]] = {}  # (meter, version) → window, key
        self._settlements: dict[str, tuple[int, MeterSpec, dict[str, Any]]] = {}  # key → limit, spec, row

    def start_before(self, ex: Exchange) -> Awaitable[None]:
        """Reserve the model call's estimate on every applicable window (sent now)."""
        assert ex.tokens is not None
        tokens_in, tokens_out = ex.tokens.input, ex.tokens.output
        return self.reserve(ex, lambda metric: self._estimate(ex, metric, tokens_in, tokens_out))

    def reserve(self, ex: Metered, estimate: Callable[[str], int]) -> Awaitable[None]:
        """Reserve ``estimate(metric)`` on every applicable window, all or nothing (sent now).

        Only a window whose effective limit must first be read from the ledger (a rollover
        meter, once per window and process) waits for that read before its reservation leaves.
        """
        assert ex.principal is not None
        if not ex.principal.meters:
            return ready(None)
        lines = self._lines(ex, estimate)
        if not lines:
            return ready(None)
        if any(line.spec.rollover and line.key not in self._limits for line in lines):
            return self._reserve_after_learning(ex, lines)
        return self._held(ex, lines, self._send_reserve(ex, lines))

    async def _reserve_after_learning(self, ex: Metered, lines: list[HeldLine]) -> None:
        await self._learn_rolled_over_limits(lines)
        await self._held(ex, lines, self._send_reserve(ex, lines))

    async def _held(self, ex: Metered, lines: list[HeldLine], sent: Awaitable[ReserveResult]) -> None:
        """Judge the reservation ``sent`` (priming cold windows first); keep the lines if it holds."""
        if await self._judged(ex, lines, self._primed(ex, lines, sent)) is not None:
            ex.meter_lines = lines

    async def _primed(
        self, ex: Metered, lines: list[HeldLine], sent: Awaitable[ReserveResult]
    ) -> ReserveResult:
        result = await sent
        if result.outcome is ReserveOutcome.COLD:
            result = await self._prime_and_reserve(ex, lines, result.cold_keys)
        return result

    async def _judged(
        self, ex: Metered, lines: list[HeldLine], sent: Awaitable[ReserveResult]
    ) -> ReserveResult | None:
        """The reservation ``sent`` once it held; None when the store did not answer and the gate
        fails open; the refusal raised (and the decision counted in the metrics either way)."""
        try:
            result = await sent
        except MeterStoreUnavailable:
            if not self._fail_open:
                metrics.budget_decision("reject")
                raise
            metrics.budget_decision("fail_open")
            ex.governance.budgets_unavailable = True
            log.warning("budget store unavailable; admitting request %s (fail-open)", ex.request_id)
            return None
        if result.outcome is ReserveOutcome.REJECTED:
            metrics.budget_decision("reject")
            raise _rejection(result, lines)
        metrics.budget_decision("allow")
        return result

    def start_after(self, ex: Exchange) -> Awaitable[None]:
        """Settle the model call's actual usage, or release when the upstream was not called (sent now)."""
        if not ex.meter_lines:
            return ready(None)
        return self.settle(ex, self._actuals(ex))

    def settle(self, ex: Metered, actual: Mapping[str, int]) -> Awaitable[None]:
        """Settle ``actual`` (an amount per metric) when the upstream was called, else release the
        reservation (sent now); the settlements ride on the usage record."""
        lines: list[HeldLine] = ex.meter_lines
        if not lines:
            return ready(None)
        record = RequestId(ex.record_id)
        if ex.timings.upstream_started is None:
            return self._finished(ex, self._store.release(record))
        actuals = {line.key: min(actual[line.spec.metric], MAX_AMOUNT) for line in lines}
        ex.settlements = [
            {**self._settlement_of(line), "request_key": ex.record_id, "amount": actuals[line.key]}
            for line in lines
        ]
        return self._finished(ex, self._store.settle(record, actuals))

    async def top_up(self, ex: Exchange, held: dict[str, int]) -> str | None:
        """Hold what ``ex.model``'s estimate exceeds of what the request already holds (``held``:
        the amount per counter, updated here), for a further attempt on a pricier model.

        The extra is a reservation of its own, all or nothing (402/429 when it does not fit); its
        id is returned for :meth:`release_top_up` once the request ends, while the request's own
        reservation is settled at what the model finally used. None when nothing more is needed.
        """
        assert ex.tokens is not None
        tokens_in, tokens_out = ex.tokens.input, ex.tokens.output
        extra: list[HeldLine] = []
        for line in ex.meter_lines:
            wanted = min(self._estimate(ex, line.spec.metric, tokens_in, tokens_out), MAX_AMOUNT)
            more = wanted - held.get(line.key, line.amount)
            if more > 0:
                extra.append(replace(line, amount=more))
        if not extra:
            return None
        reservation = ordered_hex_id()
        result = await self._judged(ex, extra, self._send_reserve_as(reservation, extra))
        if result is None or result.outcome is not ReserveOutcome.RESERVED:
            return None  # fail-open, or a counter gone cold mid-request: the settlement counts the actual
        for line in extra:
            held[line.key] = held.get(line.key, 0) + line.amount
        return reservation

    async def release_top_up(self, ex: Metered, reservation: str) -> None:
        """Drop a top-up once its request has ended (the request's own reservation settles)."""
        await self._finished(ex, self._store.release(RequestId(reservation)))

    def held_settlements(self, ex: Metered) -> list[dict[str, Any]]:
        """The settlements of the request's reservation at the amounts held (what an interruption bills)."""
        lines: list[HeldLine] = ex.meter_lines
        key = ex.record_id
        return [{**self._settlement_of(line), "request_key": key, "amount": line.amount} for line in lines]

    @staticmethod
    async def _finished(ex: Metered, sent: Awaitable[object]) -> None:
        try:
            await sent
        except MeterStoreUnavailable:
            # The reconciliation worker settles or releases it once the store is back.
            log.warning("could not settle budgets of %s now; the reconciler will", ex.request_id)

    # --- estimates ---------------------------------------------------------------------
    def _lines(self, ex: Metered, estimate: Callable[[str], int]) -> list[HeldLine]:
        assert ex.principal is not None
        lines = []
        for spec in ex.principal.meters:
            current = self._window_at(spec, ex.received_at)
            if current is None:
                continue
            window, key = current
            # A counter holds a signed 64-bit integer: an estimate past it (a huge allowance at a
            # high price) is held as the largest amount, which only an untouched window of that size fits.
            amount = min(estimate(spec.metric), MAX_AMOUNT)
            lines.append(HeldLine(spec, window, key, amount, self._limits.get(key, spec.limit)))
        return lines

    def _window_at(self, spec: MeterSpec, instant: datetime) -> tuple[Window, str] | None:
        """The window of ``spec`` holding ``instant`` and its counter key (the current one is remembered)."""
        known = self._current.get((spec.id, spec.version))
        if known is not None and known[0].start <= instant < known[0].end:
            return known
        window = self._schedule(spec).window_at(instant)
        if window is None:
            return None
        if len(self._current) > 10_000:
            self._current.clear()
        current = self._current[(spec.id, spec.version)] = (window, spec.counter_key(window))
        return current

    def _settlement_of(self, line: HeldLine) -> dict[str, Any]:
        """The settlement record of ``line`` without its request key and amount (built once per window)."""
        known = self._settlements.get(line.key)
        if known is not None and known[0] == line.limit and known[1] is line.spec:
            return known[2]
        spec, window = line.spec, line.window
        template = Settlement(
            "", line.key, 0, spec.kind, spec.id, spec.version, window.index, window.start, window.end,
            line.limit, spec.thresholds,
        ).to_dict()  # fmt: skip
        if len(self._settlements) > 10_000:
            self._settlements.clear()
        self._settlements[line.key] = (line.limit, spec, template)
        return template

    def _estimate(self, ex: Exchange, metric: str, tokens_in: int, tokens_out: int) -> int:
        if metric == "COST":
            return self._cost_estimate(ex, tokens_in, tokens_out)
        return {
            "REQUESTS": 1,
            "ERRORS": 1,
            "TOKENS": tokens_in + tokens_out,
            "TOKENS_IN": tokens_in,
            "TOKENS_OUT": tokens_out,
        }[metric]

    def _cost_estimate(self, ex: Exchange, tokens_in: int, tokens_out: int) -> int:
        assert ex.model is not None
        if not ex.model.pricing:
            if self._unpriced is None:
                raise ModelPricingMissing(f"model '{ex.model.name}' has no pricing and a budget applies")
            return self._unpriced
        usage = Usage(tokens_in, tokens_out, tokens_in + tokens_out)
        return cost_nanos(usage, ex.model.pricing, embeddings=ex.endpoint == Endpoint.EMBEDDINGS) or 0

    def _actuals(self, ex: Exchange) -> dict[str, int]:
        usage = ex.measured_usage()
        tokens_in = usage.prompt_tokens if usage else 0
        tokens_out = usage.completion_tokens if usage else 0
        cost = ex.billing().get("total_cost_nanos_usd")
        if cost is None and usage is not None:
            cost = self._unpriced or 0
        return {
            "COST": int(cost or 0),
            "REQUESTS": 1,
            "ERRORS": 1 if ex.outcome == "error" else 0,
            "TOKENS": tokens_in + tokens_out,
            "TOKENS_IN": tokens_in,
            "TOKENS_OUT": tokens_out,
        }

    async def _learn_rolled_over_limits(self, lines: list[HeldLine]) -> None:
        """Give rollover lines their window's effective limit (amount + carry) from the ledger.

        A reservation checks against, and records, the limit it carries. For a meter that rolls
        over, that limit is only known from the ledger; a process that finds the counter already
        primed by another replica (or by itself before a restart) must not fall back to the bare
        amount, or replicas would disagree on the limit. One read per window per process.
        """
        for i, line in enumerate(lines):
            if line.spec.rollover and line.key not in self._limits:
                _, limit = await window_state(self._sessions, line.spec, line.window)
                self._limits[line.key] = limit
                lines[i] = replace(line, limit=limit)

    # --- store ---------------------------------------------------------------------------
    def _send_reserve(self, ex: Metered, lines: list[HeldLine]) -> Awaitable[ReserveResult]:
        return self._send_reserve_as(ex.record_id, lines)

    def _send_reserve_as(self, reservation: str, lines: list[HeldLine]) -> Awaitable[ReserveResult]:
        meter_lines = [MeterLine(line.key, line.amount, line.limit) for line in lines]
        return self._store.reserve(RequestId(reservation), meter_lines, self._ttl)

    async def _prime_and_reserve(
        self, ex: Metered, lines: list[HeldLine], cold_keys: Sequence[str]
    ) -> ReserveResult:
        """Create the cold counters from the ledger, then reserve again (the lines take their limits)."""
        by_key = {line.key: line for line in lines}
        for key in cold_keys:
            line = by_key[key]
            used, limit = await window_state(self._sessions, line.spec, line.window)
            self._limits[key] = limit
            ttl = (line.window.end - ex.received_at + timedelta(days=1)).total_seconds()
            await self._store.prime(key, used, 0, limit, ttl_seconds=max(ttl, 60.0))
        lines[:] = [
            HeldLine(ln.spec, ln.window, ln.key, ln.amount, self._limits.get(ln.key, ln.limit))
            for ln in lines
        ]
        return await self._send_reserve(ex, lines)

    def _schedule(self, spec: MeterSpec) -> Schedule:
        cached = self._schedules.get((spec.id, spec.version))
        if cached is None:
            cached = spec.schedule()
            if len(self._schedules) > 10_000:
                self._schedules.clear()
            self._schedules[(spec.id, spec.version)] = cached
        return cached


def _rejection(result: ReserveResult, lines: list[HeldLine]) -> OdockError:
    shortfall = result.shortfall
    assert shortfall is not None
    line = next(ln for ln in lines if ln.key == shortfall.key)
    spec = line.spec
    extra: dict[str, object] = {
        "scope": spec.owner_type.lower(),
        "owner_id": spec.owner_id,
        f"{spec.kind}_id": spec.id,
        f"{spec.kind}_name": spec.name,
        "window": {"start": line.window.start.isoformat(), "end": line.window.end.isoformat()},
        "limit": shortfall.limit,
        "used": shortfall.used,
        "reserved": shortfall.reserved,
        "requested": shortfall.requested,
    }
    if spec.kind == BUDGET:
        return BudgetExceeded(f"budget '{spec.name}' is exhausted for this window", extra=extra)
    extra["metric"] = spec.metric
    return QuotaExceeded(f"quota '{spec.name}' ({spec.metric}) is exhausted for this window", extra=extra)
