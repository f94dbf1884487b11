"""The budget gate: what it reserves on each window, when it refuses, and how ``after`` settles or
releases. Driven with the in-process meter store over a migrated SQLite ledger; the fail modes with
a Redis store whose server cannot be reached."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.ledger import window_row
from odock.budgets.meters import MemoryMeterStore, MeterReading, MeterStore
from odock.budgets.redis_meters import RedisMeterStore
from odock.budgets.specs import MeterSpec
from odock.budgets.stage import BudgetGate
from odock.budgets.tables import MeterWindow
from odock.errors import (
    BudgetExceeded,
    MeterStoreUnavailable,
    ModelPricingMissing,
    QuotaExceeded,
    UpstreamTimeout,
)
from odock.llm.upstream import Endpoint, Usage
from odock.pipeline.exchange import Exchange
from odock.surfaces.stage import estimate
from tests.support.metrics import counted
from tests.support.stages import (
    INPUT_TOKEN_NANOS,
    OUTPUT_TOKEN_NANOS,
    copied_database,
    exchange,
    meter,
    principal,
    refusal,
    resolved_model,
)

PROMPT_TOKENS = 6  # the estimate for the default body's one "hello" message
DEFAULT_OUTPUT = 50
DECISIONS = "gateway_budget_decisions_total"


@pytest.fixture
async def sessions(migrated_sqlite: Path, tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a migrated SQLite ledger of the test's own."""
    async with copied_database(migrated_sqlite, tmp_path) as made:
        yield made


@pytest.fixture
def store() -> MemoryMeterStore:
    """The in-process counter store."""
    return MemoryMeterStore()


@pytest.fixture
async def unreachable() -> AsyncIterator[RedisMeterStore]:
    """A Redis meter store whose server refuses connections: every call is MeterStoreUnavailable."""
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        yield RedisMeterStore(client, "odock-unreachable:")
    finally:
        await client.aclose()


def gate(
    store: MeterStore,
    sessions: async_sessionmaker[AsyncSession],
    *,
    fail_open: bool = False,
    unpriced: int | None = None,
) -> BudgetGate:
    """A budget gate with a one-minute reservation lifetime."""
    return BudgetGate(
        store,
        sessions,
        fail_open=fail_open,
        reservation_ttl=60,
        unpriced_reservation_nanos=unpriced,
    )


def request(*meters: MeterSpec, max_tokens: int | None = 10, **model: Any) -> Exchange:
    """A resolved chat request of a key limited by ``meters``, asking for ``max_tokens``."""
    payload: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    ex = exchange(principal=principal(meters=meters), payload=payload, model=resolved_model(**model))
    estimate(ex, DEFAULT_OUTPUT)  # what EstimateTokens does before the budget gate
    return ex


def counter_key(spec: MeterSpec, ex: Exchange) -> str:
    """The counter of ``spec``'s window holding the request."""
    window = spec.schedule().window_at(ex.received_at)
    assert window is not None
    return spec.counter_key(window)


async def reading(store: MeterStore, spec: MeterSpec, ex: Exchange) -> MeterReading:
    """The counter of ``spec``'s current window."""
    key = counter_key(spec, ex)
    return (await store.snapshot([key]))[key]


def answered(ex: Exchange, usage: Usage | None, *, outcome: str = "success") -> Exchange:
    """``ex`` as it stands after an upstream call that reported ``usage``."""
    ex.timings.upstream_started = ex.timings.upstream_answered = time.perf_counter()
    ex.usage = usage
    ex.outcome = outcome
    ex.timings.finished = time.perf_counter()
    return ex


ESTIMATE_NANOS = PROMPT_TOKENS * INPUT_TOKEN_NANOS + 10 * OUTPUT_TOKEN_NANOS  # max_tokens 10


async def test_a_key_without_meters_reserves_nothing(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A key with no budget or quota passes without touching the store."""
    ex = request()
    budgets = gate(store, sessions)
    await budgets.before(ex)
    await budgets.after(answered(ex, Usage(1, 1, 2)))
    assert ex.meter_lines == []
    assert ex.settlements == []
    assert store.remembered_requests() == 0


async def test_a_cold_window_is_primed_from_the_ledger_and_reserved(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The first request of a window creates its counter from the ledger and holds its cost estimate."""
    budget = meter(limit=10**12)
    ex = request(budget)
    await gate(store, sessions).before(ex)
    assert await reading(store, budget, ex) == MeterReading(0, ESTIMATE_NANOS, 10**12)
    assert [line.amount for line in ex.meter_lines] == [ESTIMATE_NANOS]


async def test_use_already_in_the_ledger_counts_against_the_limit(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A window whose ledger row is nearly used up refuses a request that would not fit in the rest."""
    budget = meter(limit=ESTIMATE_NANOS)
    ex = request(budget)
    window = budget.schedule().window_at(ex.received_at)
    assert window is not None
    row = window_row(counter_key(budget, ex), "budget", budget.id, budget.version, window, budget.limit)
    async with sessions() as session:
        session.add(MeterWindow(**{**row, "used": 1}))
        await session.commit()
    error = await refusal(gate(store, sessions), ex)
    assert type(error) is BudgetExceeded
    assert (error.extra["used"], error.extra["requested"]) == (1, ESTIMATE_NANOS)


async def test_an_exhausted_budget_is_a_402_naming_it(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A budget without room for the estimate is 402 budget_exceeded with the window's figures."""
    budget = meter(limit=ESTIMATE_NANOS)
    budgets = gate(store, sessions)
    await budgets.before(request(budget))
    ex = request(budget)
    error = await refusal(budgets, ex)
    assert type(error) is BudgetExceeded
    assert (error.code, error.http_status) == ("budget_exceeded", 402)
    expected = {"scope": "org", "budget_id": budget.id, "limit": ESTIMATE_NANOS, "used": 0}
    assert {k: error.extra[k] for k in expected} == expected
    assert (error.extra["reserved"], error.extra["requested"]) == (ESTIMATE_NANOS, ESTIMATE_NANOS)
    assert ex.meter_lines == []


async def test_an_exhausted_quota_is_a_429_naming_its_metric(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A requests quota with no room left is 429 quota_exceeded, naming the quota and its metric."""
    quota = meter("quota", "REQUESTS", limit=1)
    budgets = gate(store, sessions)
    await budgets.before(request(quota))
    error = await refusal(budgets, request(quota))
    assert type(error) is QuotaExceeded
    assert (error.code, error.http_status) == ("quota_exceeded", 429)
    assert (error.extra["quota_id"], error.extra["metric"]) == (quota.id, "REQUESTS")


async def test_a_refusal_on_one_window_holds_nothing_on_the_others(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """When the quota refuses, the budget that had room is not reserved either (all or nothing)."""
    budget, quota = meter(limit=10**12), meter("quota", "REQUESTS", limit=1)
    budgets = gate(store, sessions)
    first = request(budget, quota)
    await budgets.before(first)
    assert type(await refusal(budgets, request(budget, quota))) is QuotaExceeded
    assert (await reading(store, budget, first)).reserved == ESTIMATE_NANOS


async def test_a_request_the_upstream_never_saw_is_released(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """When the upstream was not called, ``after`` drops the reservation and settles nothing."""
    budget = meter(limit=10**12)
    budgets = gate(store, sessions)
    ex = request(budget)
    await budgets.before(ex)
    await budgets.after(ex)
    assert await reading(store, budget, ex) == MeterReading(0, 0, 10**12)
    assert ex.settlements == []


async def test_a_served_request_settles_its_actual_cost(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """After the upstream answered, the reservation becomes the billed cost, carried to the ledger."""
    budget = meter(limit=10**12)
    budgets = gate(store, sessions)
    ex = request(budget)
    await budgets.before(ex)
    await budgets.after(answered(ex, Usage(PROMPT_TOKENS, 4, PROMPT_TOKENS + 4)))
    cost = PROMPT_TOKENS * INPUT_TOKEN_NANOS + 4 * OUTPUT_TOKEN_NANOS
    assert await reading(store, budget, ex) == MeterReading(cost, 0, 10**12)
    [settlement] = ex.settlements
    expected = {"request_key": ex.record_id, "window_key": counter_key(budget, ex), "amount": cost}
    assert {k: settlement[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("metric", "outcome", "settled"),
    [
        ("TOKENS", "success", PROMPT_TOKENS + 4),
        ("TOKENS_IN", "success", PROMPT_TOKENS),
        ("TOKENS_OUT", "success", 4),
        ("REQUESTS", "success", 1),
        ("ERRORS", "success", 0),
        ("ERRORS", "error", 1),
    ],
)
async def test_quotas_settle_their_own_metric(
    store: MemoryMeterStore,
    sessions: async_sessionmaker[AsyncSession],
    metric: str,
    outcome: str,
    settled: int,
) -> None:
    """Each quota metric settles what the request actually used of it."""
    quota = meter("quota", metric, limit=10**6)
    budgets = gate(store, sessions)
    ex = request(quota)
    await budgets.before(ex)
    await budgets.after(answered(ex, Usage(PROMPT_TOKENS, 4, PROMPT_TOKENS + 4), outcome=outcome))
    assert await reading(store, quota, ex) == MeterReading(settled, 0, 10**6)


async def test_an_upstream_failure_settles_no_cost(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A call that reached the upstream but failed without usage settles zero instead of releasing."""
    budget = meter(limit=10**12)
    budgets = gate(store, sessions)
    ex = request(budget)
    await budgets.before(ex)
    ex.fail(UpstreamTimeout())
    await budgets.after(answered(ex, None, outcome="error"))
    assert await reading(store, budget, ex) == MeterReading(0, 0, 10**12)
    assert [s["amount"] for s in ex.settlements] == [0]


async def test_embeddings_reserve_no_output(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """An embeddings request reserves its input tokens only."""
    quota = meter("quota", "TOKENS", limit=10**6)
    ex = exchange(
        endpoint=Endpoint.EMBEDDINGS,
        principal=principal(meters=(quota,)),
        payload={"model": "m", "input": "x" * 40},
        model=resolved_model(),
    )
    estimate(ex, DEFAULT_OUTPUT)
    await gate(store, sessions).before(ex)
    assert (await reading(store, quota, ex)).reserved == 10


async def test_an_unpriced_model_under_a_budget_is_refused(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Without a fallback reservation, a budget cannot hold an unpriced model's cost: 400."""
    error = await refusal(gate(store, sessions), request(meter(), pricing={}))
    assert type(error) is ModelPricingMissing
    assert error.http_status == 400


async def test_an_unpriced_model_reserves_the_configured_amount(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """With ``unpriced_reservation_nanos`` set, an unpriced model reserves exactly that."""
    budget = meter(limit=10**12)
    ex = request(budget, pricing={})
    await gate(store, sessions, unpriced=777).before(ex)
    assert (await reading(store, budget, ex)).reserved == 777


async def test_a_window_outside_the_schedule_is_not_reserved(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A budget that ended before the request limits nothing."""
    ended = meter(limit=1, end_at=datetime(2021, 1, 1, tzinfo=UTC))
    ex = request(ended)
    await gate(store, sessions).before(ex)
    assert ex.meter_lines == []


async def test_fail_closed_refuses_when_the_store_is_unreachable(
    unreachable: RedisMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """With fail_open off, an unreachable counter store is 503 budget_enforcement_unavailable."""
    rejected = counted(DECISIONS, decision="reject")
    error = await refusal(gate(unreachable, sessions), request(meter()))
    assert type(error) is MeterStoreUnavailable
    assert (error.code, error.http_status) == ("budget_enforcement_unavailable", 503)
    assert counted(DECISIONS, decision="reject") == rejected + 1


async def test_fail_open_admits_and_marks_the_request(
    unreachable: RedisMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """With fail_open on, the request goes ahead unreserved and is marked for the usage record."""
    ex = request(meter())
    budgets = gate(unreachable, sessions, fail_open=True)
    admitted = counted(DECISIONS, decision="fail_open")
    await budgets.before(ex)
    assert counted(DECISIONS, decision="fail_open") == admitted + 1
    assert ex.governance.budgets_unavailable is True
    assert ex.meter_lines == []
    await budgets.after(answered(ex, Usage(1, 1, 2)))  # nothing held: nothing to settle


async def test_settling_on_a_lost_store_is_left_to_the_reconciler(
    store: MemoryMeterStore, unreachable: RedisMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """When the store goes away between reserve and settle, ``after`` returns quietly."""
    budget = meter(limit=10**12)
    ex = request(budget)
    await gate(store, sessions).before(ex)
    await gate(unreachable, sessions).after(answered(ex, Usage(1, 1, 2)))
    assert len(ex.settlements) == 1


async def test_a_rollover_budget_carries_the_previous_windows_rest(
    store: MemoryMeterStore, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A rollover budget's window holds its amount plus what the previous window left unused."""
    budget = meter(limit=ESTIMATE_NANOS - 1, rollover=True)
    ex = request(budget)
    window = budget.schedule().window_at(ex.received_at)
    assert window is not None
    previous = budget.schedule().window_at(window.start - timedelta(seconds=1))
    assert previous is not None
    row = window_row(budget.counter_key(previous), "budget", budget.id, budget.version, previous, 10)
    async with sessions() as session:
        session.add(MeterWindow(**{**row, "used": 9}))  # one nano left over
        await session.commit()
    await gate(store, sessions).before(ex)
    assert await reading(store, budget, ex) == MeterReading(0, ESTIMATE_NANOS, ESTIMATE_NANOS)
