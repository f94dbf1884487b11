"""The order of the stages: the lifecycle of a model call as one list (see :mod:`odock.pipeline`).

This is wiring, not a stage: it imports every feature's stage and the counters they enforce
with, and the runtime calls :func:`build_pipeline` once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.meters import MeterStore
from odock.budgets.stage import BudgetGate
from odock.keys.directory import KeyDirectory
from odock.keys.stage import Authenticate
from odock.limits.limiter import RateLimiter
from odock.limits.policy import PolicyResolver
from odock.limits.stage import EarlyGate, FinalGate, PreAuthGate
from odock.pipeline.runner import Concurrently, Pipeline, Stage
from odock.providers.adapters.base import Adapter, Timeouts
from odock.providers.catalog import ModelCatalog
from odock.providers.stage import CallUpstream, ResolveModel, ResolveProvider
from odock.providers.vault import ProviderKeyVault
from odock.routing.breakers import Breakers
from odock.routing.planner import InFlight, RoutePlanner
from odock.routing.stage import PlanRoute, RoutedCall
from odock.routing.store import RoutingStore
from odock.settings import Settings
from odock.surfaces.stage import DecodeRequest, EstimateTokens
from odock.telemetry.prompts import LogPrompts
from odock.usage.recorder import UsageRecorder
from odock.usage.stage import RecordIntent, RecordUsage

if TYPE_CHECKING:  # imported by the runtime only when tracing is on (it imports OpenTelemetry)
    from odock.telemetry.tracing import Tracing


@dataclass
class Governance:
    """The shared counters that enforce limits, budgets and quotas."""

    limiter: RateLimiter
    resolver: PolicyResolver
    meters: MeterStore
    sessions: async_sessionmaker[AsyncSession]
    routing: RoutingStore  # circuit breakers and round-robin turns
    remote: bool = False  # the counters live in Redis (every operation is a round trip)


def build_pipeline(
    keys: KeyDirectory,
    models: ModelCatalog,
    adapters: dict[str, Adapter],
    vault: ProviderKeyVault,
    recorder: UsageRecorder,
    governance: Governance,
    settings: Settings,
    tracing: Tracing | None = None,
) -> Pipeline:
    """The lifecycle of a model call, in order (with spans when ``tracing`` is given)."""
    limits = {"fail_open": settings.governance_fail_open}
    final_gate = FinalGate(governance.limiter, governance.resolver, **limits)
    budget_gate = BudgetGate(
        governance.meters,
        governance.sessions,
        fail_open=settings.governance_fail_open,
        reservation_ttl=settings.budget_reservation_ttl_seconds,
        unpriced_reservation_nanos=settings.unpriced_reservation_nanos,
    )
    # With Redis, the final gate and the budget reservation (and later their post-flights) are
    # one round trip instead of two; in-process they do no I/O, so running them in turn is cheaper.
    last_gates: list[Stage] = (
        [Concurrently(final_gate, budget_gate)] if governance.remote else [final_gate, budget_gate]
    )
    breakers = Breakers(
        governance.routing,
        threshold=settings.routing_breaker_failures,
        window_seconds=settings.routing_breaker_window_seconds,
        cooldown_seconds=settings.routing_breaker_cooldown_seconds,
        max_cooldown_seconds=settings.routing_breaker_max_cooldown_seconds,
        refresh_seconds=settings.routing_breaker_refresh_seconds,
        probe_lease_seconds=settings.routing_breaker_probe_seconds,
        error_rate=settings.routing_breaker_error_rate,
        min_calls=settings.routing_breaker_min_calls,
    )
    in_flight = InFlight()
    planner = RoutePlanner(models, breakers, in_flight)
    resolve_provider = ResolveProvider(adapters, vault, Timeouts.from_settings(settings))
    call: Stage = CallUpstream() if tracing is None else tracing.upstream(CallUpstream())
    stages: list[Stage] = [
        RecordUsage(recorder, settings.log_requests),
        PreAuthGate(governance.limiter, governance.resolver, **limits),
        Authenticate(keys),
        EarlyGate(governance.limiter, governance.resolver, **limits),
        DecodeRequest(),
        *([LogPrompts()] if settings.log_prompts else []),
        ResolveModel(models),
        PlanRoute(planner, breakers),
        resolve_provider,
        EstimateTokens(settings.default_max_output_tokens),
        *last_gates,
        RecordIntent(recorder, budget_gate.held_settlements),
        RoutedCall(call, resolve_provider, final_gate, budget_gate, planner, breakers, in_flight),
    ]
    return Pipeline(stages) if tracing is None else tracing.pipeline(stages)
