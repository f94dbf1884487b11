"""One contract for every RateLimiter: the in-process twin and Redis must behave the same.

Time-dependent behaviour is proven on the memory limiter with an injected clock; against Redis
(whose clock is its own ``TIME``) tests either do not depend on time or poll with a deadline.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from odock.cache.redis_link import RedisLink
from odock.errors import RateLimiterUnavailable
from odock.limits.decision import Decision, DenyCode, LimitName, Receipt
from odock.limits.limiter import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from odock.limits.plan import LimitCheck, checks_for
from odock.limits.policy import Scope, ScopePolicy, parse_policy
from tests.support import services


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@dataclass
class Harness:
    """A limiter under test, plus a way to let time pass for it."""

    limiter: RateLimiter
    clock: FakeClock | None = None
    prefix: str = ""
    clients: list[Redis | RedisLink] = field(default_factory=list)

    async def eventually_admitted(
        self, checks: Sequence[LimitCheck], within: float = 5.0, request_id: str = "later"
    ) -> Decision:
        """Retry until admitted: the fake clock steps forward; real time is polled with a deadline."""
        deadline = time.monotonic() + within
        while True:
            decision = await self.limiter.admit(request_id, checks)
            if decision.allowed or time.monotonic() > deadline:
                return decision
            if self.clock is not None:
                self.clock.advance(0.05)
            else:
                await asyncio.sleep(0.02)

    def peer(self) -> RedisRateLimiter:
        """A second Redis limiter on its own connection(s), sharing the namespace (a 2nd process)."""
        client = redis_link() if isinstance(self.clients[0], RedisLink) else redis_client()
        self.clients.append(client)
        return RedisRateLimiter(client, self.prefix)


def redis_client() -> Redis:
    """A client whose bounded pool makes callers wait for a connection instead of failing.

    The default pool raises MaxConnectionsError past 100 commands in flight, which a limiter
    would turn into 503s under a burst; a gateway process should use a blocking pool too.
    """
    return Redis(
        connection_pool=BlockingConnectionPool.from_url(services.REDIS_URL, max_connections=32, timeout=10)
    )


def redis_link() -> RedisLink:
    """The gateway's own client: one pipelined connection per process."""
    return RedisLink(services.REDIS_URL, timeout=10, connect_timeout=10)


@pytest.fixture(params=["memory", "redis", "link"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A fresh limiter of each implementation (Redis through redis-py and through the gateway's link)."""
    if request.param == "memory":
        clock = FakeClock()
        yield Harness(MemoryRateLimiter(clock), clock)
        return
    services.require_services()
    prefix = services.unique_name("odock_rl_test") + ":"
    client = redis_client() if request.param == "redis" else redis_link()
    built = Harness(RedisRateLimiter(client, prefix), prefix=prefix, clients=[client])
    try:
        yield built
    finally:
        await services.delete_redis_prefix(prefix)
        for each in built.clients:
            if isinstance(each, RedisLink):
                await each.close()
            else:
                await each.aclose(close_connection_pool=True)


def scope(
    kind: Scope = Scope.API_KEY, scope_id: str = "k1", shadow: bool = False, **ratelimit: Any
) -> ScopePolicy:
    """A scope whose policy has the given ``ratelimit`` sections."""
    return ScopePolicy(kind, scope_id, parse_policy({"ratelimit": ratelimit, "shadow": shadow}))


def receipt_of(decision: Decision) -> Receipt:
    """The receipt of an admitted decision (fails the test if it was denied)."""
    assert decision.allowed, decision.denial
    assert decision.receipt is not None
    return decision.receipt


async def admitted_count(limiter: RateLimiter, checks: Sequence[LimitCheck], attempts: int) -> int:
    """How many of ``attempts`` concurrent admissions got through."""
    decisions = await asyncio.gather(*(limiter.admit(f"r{i}", checks) for i in range(attempts)))
    return sum(d.allowed for d in decisions)


async def test_denial_on_one_scope_takes_nothing_from_the_others(harness: Harness) -> None:
    """All or nothing: when the key refuses, the organisation's requests, tokens and leases are untouched."""
    org = scope(
        Scope.ORGANISATION,
        "o1",
        requests={"per_minute": 5},
        concurrency={"max": 1},
        tokens={"per_minute": 100},
    )
    key = scope(Scope.API_KEY, "k1", requests={"per_minute": 1})
    limiter = harness.limiter
    await limiter.release(receipt_of(await limiter.admit("a", checks_for([org, key], tokens=10))))

    denied = await limiter.admit("b", checks_for([org, key], tokens=10))

    assert denied.denial is not None
    assert denied.denial.scope is Scope.API_KEY
    assert denied.receipt is None
    alone = receipt_of(await limiter.admit("c", checks_for([org], tokens=90)))  # lease free, 90 tokens fit
    assert alone.quota is not None
    assert alone.quota.remaining == 3


async def test_requests_per_minute_exact_under_concurrency(harness: Harness) -> None:
    """N ≫ K concurrent admissions against per_minute=K admit exactly K."""
    checks = checks_for([scope(requests={"per_minute": 25})])
    assert await admitted_count(harness.limiter, checks, 200) == 25


@pytest.mark.parametrize("harness", ["redis"], indirect=True)
async def test_requests_per_minute_exact_across_two_processes(harness: Harness) -> None:
    """Two Redis limiters on separate connections share one limit: exactly K admitted in total."""
    checks = checks_for([scope(requests={"per_minute": 30})])
    counts = await asyncio.gather(
        admitted_count(harness.limiter, checks, 150), admitted_count(harness.peer(), checks, 150)
    )
    assert sum(counts) == 30


async def test_concurrency_leases_admit_max_and_release_frees_one(harness: Harness) -> None:
    """max=M admits M in flight; releasing one admits exactly one more."""
    checks = checks_for([scope(concurrency={"max": 3})])
    receipts = [receipt_of(await harness.limiter.admit(f"r{i}", checks)) for i in range(3)]
    denied = await harness.limiter.admit("r3", checks)
    assert denied.denial is not None
    assert denied.denial.code is DenyCode.CONCURRENCY_EXCEEDED

    await harness.limiter.release(receipts[0])

    assert (await harness.limiter.admit("r4", checks)).allowed
    assert not (await harness.limiter.admit("r5", checks)).allowed


async def test_release_is_idempotent(harness: Harness) -> None:
    """Releasing the same receipt twice frees only its own lease."""
    checks = checks_for([scope(concurrency={"max": 2})])
    first = receipt_of(await harness.limiter.admit("a", checks))
    receipt_of(await harness.limiter.admit("b", checks))

    await harness.limiter.release(first)
    await harness.limiter.release(first)

    assert (await harness.limiter.admit("c", checks)).allowed
    assert not (await harness.limiter.admit("d", checks)).allowed


async def test_reused_request_id_gets_its_own_lease(harness: Harness) -> None:
    """Two admissions with the same request id hold two leases (a client cannot share one)."""
    checks = checks_for([scope(concurrency={"max": 1})])
    receipt_of(await harness.limiter.admit("same", checks))
    assert not (await harness.limiter.admit("same", checks)).allowed


async def test_expired_lease_frees_its_slot(harness: Harness) -> None:
    """A lease never released frees its slot once ``lease_ttl_seconds`` has passed."""
    checks = checks_for([scope(concurrency={"max": 1, "lease_ttl_seconds": 0.2})])
    receipt_of(await harness.limiter.admit("forgotten", checks))
    assert not (await harness.limiter.admit("blocked", checks)).allowed

    assert (await harness.eventually_admitted(checks)).allowed


async def test_each_lease_expires_on_its_own(harness: Harness) -> None:
    """An expired lease frees its slot even while a longer-lived lease keeps the set alive."""
    lasting = checks_for([scope(concurrency={"max": 2, "lease_ttl_seconds": 60})])
    brief = checks_for([scope(concurrency={"max": 2, "lease_ttl_seconds": 0.2})])
    receipt_of(await harness.limiter.admit("lasting", lasting))
    receipt_of(await harness.limiter.admit("forgotten", brief))
    assert not (await harness.limiter.admit("blocked", brief)).allowed

    assert (await harness.eventually_admitted(brief)).allowed
    assert not (await harness.limiter.admit("still-full", brief)).allowed


async def test_token_reservation_and_refund(harness: Harness) -> None:
    """TPM reserves the estimate; reconciling to a smaller actual refunds so a later request fits."""
    tpm = scope(tokens={"per_minute": 1000})
    reserved = receipt_of(await harness.limiter.admit("a", checks_for([tpm], requests=False, tokens=800)))
    denied = await harness.limiter.admit("b", checks_for([tpm], requests=False, tokens=300))
    assert denied.denial is not None
    assert denied.denial.code is DenyCode.TPM_EXCEEDED

    await harness.limiter.reconcile_tokens(reserved, 100)

    assert (await harness.limiter.admit("c", checks_for([tpm], requests=False, tokens=900))).allowed
    assert not (await harness.limiter.admit("d", checks_for([tpm], requests=False, tokens=1))).allowed


async def test_reconcile_is_idempotent(harness: Harness) -> None:
    """A second reconcile of the same receipt refunds nothing more."""
    tpm = scope(tokens={"per_minute": 1000})
    reserved = receipt_of(await harness.limiter.admit("a", checks_for([tpm], requests=False, tokens=800)))

    await harness.limiter.reconcile_tokens(reserved, 100)
    await harness.limiter.reconcile_tokens(reserved, 100)

    assert (await harness.limiter.admit("b", checks_for([tpm], requests=False, tokens=900))).allowed
    assert not (await harness.limiter.admit("c", checks_for([tpm], requests=False, tokens=1))).allowed


async def test_reconcile_tops_up_when_actual_exceeds_estimate(harness: Harness) -> None:
    """Actual usage above the estimate is charged to the window."""
    tpm = scope(tokens={"per_minute": 1000})
    reserved = receipt_of(await harness.limiter.admit("a", checks_for([tpm], requests=False, tokens=500)))

    await harness.limiter.reconcile_tokens(reserved, 900)

    assert not (await harness.limiter.admit("b", checks_for([tpm], requests=False, tokens=200))).allowed
    assert (await harness.limiter.admit("c", checks_for([tpm], requests=False, tokens=100))).allowed


async def test_reconcile_clamps_buckets_at_zero(harness: Harness) -> None:
    """A refund larger than the bucket empties it instead of creating spare capacity."""
    tpm = scope(tokens={"per_minute": 1000})
    reserved = receipt_of(await harness.limiter.admit("a", checks_for([tpm], requests=False, tokens=1000)))
    oversized = replace(
        reserved, reservations=tuple(replace(r, amount=10_000) for r in reserved.reservations)
    )

    await harness.limiter.reconcile_tokens(oversized, 0)

    assert (await harness.limiter.admit("b", checks_for([tpm], requests=False, tokens=1000))).allowed
    assert not (await harness.limiter.admit("c", checks_for([tpm], requests=False, tokens=1))).allowed


async def test_finish_releases_every_receipt_and_reconciles_once(harness: Harness) -> None:
    """finish() frees the leases of several receipts and refunds TPM, and a repeat refunds nothing more."""
    conc = scope(Scope.ORGANISATION, "o1", concurrency={"max": 1})
    tpm = scope(Scope.API_KEY, "k1", tokens={"per_minute": 1000})
    early = receipt_of(await harness.limiter.admit("a", checks_for([conc])))
    final = receipt_of(await harness.limiter.admit("a", checks_for([tpm], requests=False, tokens=800)))
    assert not (await harness.limiter.admit("b", checks_for([conc]))).allowed

    await harness.limiter.finish([final, early], 100)
    await harness.limiter.finish([final, early], 100)

    assert (await harness.limiter.admit("c", checks_for([conc]))).allowed
    assert (await harness.limiter.admit("d", checks_for([tpm], requests=False, tokens=900))).allowed
    assert not (await harness.limiter.admit("e", checks_for([tpm], requests=False, tokens=1))).allowed


async def test_finish_without_leases_or_reservations_does_nothing(harness: Harness) -> None:
    """finish() of receipts that hold nothing changes no counter."""
    rpm = checks_for([scope(requests={"per_minute": 1})])
    receipt = receipt_of(await harness.limiter.admit("a", rpm))

    await harness.limiter.finish([receipt, Receipt("x", "")], 0)

    assert not (await harness.limiter.admit("b", rpm)).allowed


async def test_narrower_scope_adds_a_lower_limit(harness: Harness) -> None:
    """A key limit below the organisation's denies with scope api_key and limit requests_per_minute."""
    scopes = [scope(Scope.ORGANISATION, "o1", requests={"per_minute": 10}), scope(requests={"per_minute": 2})]
    for request_id in ("a", "b"):
        receipt_of(await harness.limiter.admit(request_id, checks_for(scopes)))

    denial = (await harness.limiter.admit("c", checks_for(scopes))).denial

    assert denial is not None
    assert (denial.code, denial.scope, denial.limit) == (
        DenyCode.RPM_EXCEEDED,
        Scope.API_KEY,
        LimitName.REQUESTS_PER_MINUTE,
    )


async def test_shadow_mode_reports_without_denying_and_still_counts(harness: Harness) -> None:
    """Shadow checks never deny but report what they would have denied, and their traffic counts."""
    shadowed = checks_for([scope(shadow=True, requests={"per_minute": 1})])
    first = await harness.limiter.admit("a", shadowed)
    second = await harness.limiter.admit("b", shadowed)

    assert first.allowed
    assert not first.shadow_denials
    assert second.allowed
    assert [d.code for d in second.shadow_denials] == [DenyCode.RPM_EXCEEDED]
    enforced = await harness.limiter.admit("c", checks_for([scope(requests={"per_minute": 2})]))
    assert enforced.denial is not None
    assert enforced.denial.code is DenyCode.RPM_EXCEEDED


async def test_retry_after_is_a_whole_second_within_the_window(harness: Harness) -> None:
    """Denials carry retry_after ≥ 1: within a minute for RPM, one second for a 1/s bucket."""
    rpm = checks_for([scope(requests={"per_minute": 1})])
    rps = checks_for([scope(Scope.TEAM, "t1", requests={"per_second": 1})])
    await harness.limiter.admit("a", rpm)
    await harness.limiter.admit("a", rps)

    rpm_denial = (await harness.limiter.admit("b", rpm)).denial
    rps_denial = (await harness.limiter.admit("b", rps)).denial

    assert rpm_denial is not None
    assert rpm_denial.retry_after is not None
    assert 1 <= rpm_denial.retry_after <= 60
    assert rps_denial is not None
    assert (rps_denial.code, rps_denial.retry_after) == (DenyCode.RPS_EXCEEDED, 1)


async def test_estimate_above_the_limit_waits_a_whole_window(harness: Harness) -> None:
    """A token estimate that can never fit is denied with retry_after of the full window."""
    checks = checks_for([scope(tokens={"per_minute": 100})], requests=False, tokens=101)
    denial = (await harness.limiter.admit("a", checks)).denial
    assert denial is not None
    assert denial.retry_after == 60


async def test_burst_then_refill(harness: Harness) -> None:
    """A burst bucket admits ``burst`` at once, denies with burst_exceeded, then refills."""
    checks = checks_for([scope(requests={"per_second": 5, "burst": 3})])
    for request_id in ("a", "b", "c"):
        receipt_of(await harness.limiter.admit(request_id, checks))
    denial = (await harness.limiter.admit("d", checks)).denial
    assert denial is not None
    assert denial.code is DenyCode.BURST_EXCEEDED

    assert (await harness.eventually_admitted(checks)).allowed


async def test_receipt_reports_the_most_restrictive_request_limit(harness: Harness) -> None:
    """The receipt's quota is the request limit with the fewest remaining requests."""
    scopes = [
        scope(Scope.ORGANISATION, "o1", requests={"per_second": 100}),
        scope(requests={"per_minute": 5}),
    ]
    receipt = receipt_of(await harness.limiter.admit("a", checks_for(scopes)))
    assert receipt.quota is not None
    assert (receipt.quota.limit_name, receipt.quota.limit, receipt.quota.remaining) == (
        LimitName.REQUESTS_PER_MINUTE,
        5,
        4,
    )
    assert 1 <= receipt.quota.reset_seconds <= 60


async def test_no_checks_admit_without_touching_storage(harness: Harness) -> None:
    """An admission with nothing to check is allowed with an empty receipt, and post-flight is a no-op."""
    decision = await harness.limiter.admit("a", ())
    receipt = receipt_of(decision)
    await harness.limiter.reconcile_tokens(receipt, 10)
    await harness.limiter.release(receipt)
    assert receipt.leases == ()
    assert receipt.reservations == ()


async def test_a_scope_limit_may_be_checked_once_per_admission(harness: Harness) -> None:
    """Listing the same scope twice is refused: two checks of one counter could over-admit."""
    checks = checks_for([scope(requests={"per_minute": 1})] * 2)
    with pytest.raises(ValueError, match="once per admission"):
        await harness.limiter.admit("a", checks)


async def test_redis_window_forgets_seconds_that_left_the_minute(harness: Harness) -> None:
    """Counts older than the minute stop counting, and the running total drops with them."""
    if not harness.clients:
        pytest.skip("the in-process window is proven with a fake clock below")
    rpm = checks_for([scope(requests={"per_minute": 3})])
    key = rpm[0].key(harness.prefix)
    admin = redis_client()
    try:
        now = int((await admin.time())[0])
        await admin.hset(key, mapping={str(now - 70): 5, str(now - 30): 2, "n": 7, "o": now - 70})
        await admin.expire(key, 120)

        admitted = receipt_of(await harness.limiter.admit("a", rpm))
        denied = await harness.limiter.admit("b", rpm)

        fields = await admin.hgetall(key)
    finally:
        await admin.aclose(close_connection_pool=True)
    assert admitted.quota is not None
    assert admitted.quota.remaining == 0
    assert denied.denial is not None
    assert denied.denial.code is DenyCode.RPM_EXCEEDED
    assert denied.denial.retry_after is not None
    assert 25 <= denied.denial.retry_after <= 31
    assert str(now - 70).encode() not in fields
    assert int(fields[b"n"]) == 3


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_unreachable_redis_raises_rate_limiter_unavailable() -> None:
    """Every operation against an unreachable Redis raises RateLimiterUnavailable (503)."""
    # No retries: the default policy backs off for seconds first, which proves nothing more here.
    client = Redis(
        host="127.0.0.1", port=closed_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    limiter = RedisRateLimiter(client, "unused:")
    receipt = Receipt("r", "t", leases=("unused:k",))
    try:
        with pytest.raises(RateLimiterUnavailable) as caught:
            await limiter.admit("r", checks_for([scope(requests={"per_minute": 1})]))
        with pytest.raises(RateLimiterUnavailable):
            await limiter.release(receipt)
    finally:
        await client.aclose()
    assert caught.value.http_status == 503
    assert caught.value.code == "ratelimit_unavailable"


async def test_unreachable_redis_link_raises_rate_limiter_unavailable() -> None:
    """Through the gateway's pipelined link too, an unreachable Redis is a RateLimiterUnavailable."""
    link = RedisLink(f"redis://127.0.0.1:{closed_port()}/0", timeout=1, connect_timeout=1)
    limiter = RedisRateLimiter(link, "unused:")
    try:
        with pytest.raises(RateLimiterUnavailable):
            await limiter.admit("r", checks_for([scope(requests={"per_minute": 1})]))
        with pytest.raises(RateLimiterUnavailable):
            await limiter.release(Receipt("r", "t", leases=("unused:k",)))
    finally:
        await link.close()


class TestMemoryClock:
    """Time-dependent behaviour, proven on the in-process limiter with an injected clock."""

    async def test_minute_window_slides_by_whole_seconds(self) -> None:
        """A request counted at second s stops counting exactly when second s+60 begins."""
        clock = FakeClock(10.3)
        limiter = MemoryRateLimiter(clock)
        checks = checks_for([scope(requests={"per_minute": 2})])
        await limiter.admit("a", checks)
        await limiter.admit("b", checks)

        clock.now = 69.99
        assert not (await limiter.admit("c", checks)).allowed
        clock.now = 70.0
        assert (await limiter.admit("d", checks)).allowed

    async def test_no_double_burst_at_a_minute_boundary(self) -> None:
        """Unlike a fixed window, a full minute spent just before :00 still counts just after it."""
        clock = FakeClock(59.9)
        limiter = MemoryRateLimiter(clock)
        checks = checks_for([scope(requests={"per_minute": 3})])
        assert await admitted_count(limiter, checks, 3) == 3

        clock.now = 60.1
        assert await admitted_count(limiter, checks, 3) == 0

    async def test_window_retry_after_counts_down_to_the_oldest_bucket(self) -> None:
        """retry_after is the time until the oldest counted second leaves the window."""
        clock = FakeClock(10.3)
        limiter = MemoryRateLimiter(clock)
        checks = checks_for([scope(requests={"per_minute": 1})])
        await limiter.admit("a", checks)

        clock.now = 40.0
        denial = (await limiter.admit("b", checks)).denial
        assert denial is not None
        assert denial.retry_after == 30

    async def test_bucket_refills_at_the_per_second_rate(self) -> None:
        """After a burst, one request is admitted per refill interval and no sooner."""
        clock = FakeClock()
        limiter = MemoryRateLimiter(clock)
        checks = checks_for([scope(requests={"per_second": 2, "burst": 4})])
        assert await admitted_count(limiter, checks, 6) == 4

        clock.advance(0.49)
        assert not (await limiter.admit("early", checks)).allowed
        clock.advance(0.01)
        assert (await limiter.admit("on-time", checks)).allowed
        assert not (await limiter.admit("next", checks)).allowed

    async def test_lease_ttl_defaults_to_thirty_seconds(self) -> None:
        """A lease without lease_ttl_seconds is held for 30 s."""
        clock = FakeClock()
        limiter = MemoryRateLimiter(clock)
        checks = checks_for([scope(concurrency={"max": 1})])
        await limiter.admit("a", checks)

        clock.advance(29.9)
        assert not (await limiter.admit("b", checks)).allowed
        clock.advance(0.1)
        assert (await limiter.admit("c", checks)).allowed

    async def test_reconcile_after_the_window_changes_nothing(self) -> None:
        """A top-up for a bucket that already left the window is not charged to the current minute."""
        clock = FakeClock(0.5)
        limiter = MemoryRateLimiter(clock)
        tpm = scope(tokens={"per_minute": 1000})
        old = receipt_of(await limiter.admit("a", checks_for([tpm], requests=False, tokens=800)))

        clock.now = 61.0
        receipt_of(await limiter.admit("b", checks_for([tpm], requests=False, tokens=900)))
        await limiter.reconcile_tokens(old, 1000)

        assert (await limiter.admit("c", checks_for([tpm], requests=False, tokens=100))).allowed

    async def test_idle_state_is_swept(self) -> None:
        """Counters of scopes that no longer limit anything are dropped, bounding memory."""
        clock = FakeClock()
        limiter = MemoryRateLimiter(clock, sweep_every=100)
        policy = scope(requests={"per_minute": 1}).policy
        for i in range(100):
            await limiter.admit("r", checks_for([ScopePolicy(Scope.API_KEY, f"old{i}", policy)]))
        clock.advance(61)
        for i in range(100):
            await limiter.admit("r", checks_for([ScopePolicy(Scope.API_KEY, f"new{i}", policy)]))
        assert limiter.held_counters() == 100

    async def test_only_receipts_in_flight_are_remembered(self) -> None:
        """A reconciled receipt is forgotten at once; one never reconciled, once its window has passed."""
        clock = FakeClock()
        limiter = MemoryRateLimiter(clock, sweep_every=10)
        tpm = scope(tokens={"per_minute": 10**9})
        for i in range(9):
            receipt = receipt_of(await limiter.admit(f"r{i}", checks_for([tpm], requests=False, tokens=10)))
            await limiter.finish([receipt], 5)
        abandoned = receipt_of(await limiter.admit("abandoned", checks_for([tpm], requests=False, tokens=10)))
        assert limiter.remembered_receipts() == 1

        clock.advance(61)
        for i in range(10):  # the tenth admission sweeps
            await limiter.admit(f"s{i}", checks_for([scope(requests={"per_minute": 100})]))
        assert limiter.remembered_receipts() == 0
        await limiter.reconcile_tokens(abandoned, 0)  # too late to change anything: nothing happens
        assert limiter.remembered_receipts() == 0
