"""One contract for the login throttle's failure counters: the in-process twin and Redis alike.

The counters (``FailureCounters``) are fixed windows opened by a key's first count; the
``LoginThrottle`` on top refuses sign-ins past ``max_failures`` per e-mail or per client IP.
Every test runs on both implementations. Expiry is driven by an injected clock for the twin and
observed by polling with a deadline for Redis, whose clock is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from odock.errors import LoginThrottled
from odock.identity.throttle import (
    Count,
    FailureCounters,
    LoginThrottle,
    MemoryFailureCounters,
    RedisFailureCounters,
)
from tests.support import services

WINDOW = 900.0  # seconds: a window no test outlives unless it lets time pass on purpose
SHORT_WINDOW = 0.2  # seconds: a window the Redis tests wait out
DEADLINE = 5.0  # seconds: how long a closed window may take to be observed before the test fails


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """Failure counters of one implementation, and a way to let one of their windows close."""

    counters: FailureCounters
    clock: FakeClock | None = None
    redis: Redis | None = None
    prefix: str = ""

    @property
    def window(self) -> float:
        """A window length the test can wait out: long on the fake clock, short in real time."""
        return WINDOW if self.clock is not None else SHORT_WINDOW

    async def count_after_the_window(self, key: str) -> Count:
        """Let ``key``'s window close, then count once more (the first count of a new window).

        The fake clock jumps past the window; against Redis the key is counted again until its
        count starts over, which it must within the deadline (counting never extends a window).
        """
        if self.clock is not None:
            self.clock.now += self.window
            [count] = await self.counters.increment([key], self.window)
            return count
        started = time.monotonic()
        while True:
            [count] = await self.counters.increment([key], self.window)
            if count.value == 1 or time.monotonic() - started > DEADLINE:
                return count
            await asyncio.sleep(0.01)

    def throttle(self, max_failures: int, window: float | None = None) -> LoginThrottle:
        """A login throttle over these counters."""
        return LoginThrottle(self.counters, max_failures=max_failures, window_seconds=window or WINDOW)


@contextlib.asynccontextmanager
async def redis_backend() -> AsyncIterator[Backend]:
    """Redis counters in a namespace of their own, removed afterwards."""
    services.require_services()
    redis = Redis.from_url(services.REDIS_URL)
    prefix = services.unique_name("odock_contract_login") + ":"
    try:
        yield Backend(RedisFailureCounters(redis, prefix), redis=redis, prefix=prefix)
    finally:
        await services.delete_redis_prefix(prefix)
        await redis.aclose()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Fresh counters of each implementation."""
    if request.param == "memory":
        clock = FakeClock()
        yield Backend(MemoryFailureCounters(clock), clock)
        return
    async with redis_backend() as built:
        yield built


@pytest.fixture
async def redis_only() -> AsyncIterator[tuple[Backend, Redis]]:
    """Redis counters and the client to inspect what they stored."""
    async with redis_backend() as built:
        assert built.redis is not None
        yield built, built.redis


# --- the counters ------------------------------------------------------------------------------


async def test_each_key_counts_on_its_own(backend: Backend) -> None:
    """Counting several keys at once adds one to each and answers in the order asked."""
    counters = backend.counters
    await counters.increment(["a"], WINDOW)
    counts = await counters.increment(["a", "b"], WINDOW)
    assert [c.value for c in counts] == [2, 1]


async def test_the_window_opens_at_the_first_count(backend: Backend) -> None:
    """The first count opens a window of the given length; later counts do not extend it."""
    counters = backend.counters
    [first] = await counters.increment(["a"], WINDOW)
    assert 0 < first.seconds_left <= WINDOW
    [second] = await counters.increment(["a"], WINDOW * 2)
    assert second.value == 2
    assert second.seconds_left <= first.seconds_left


async def test_parallel_counts_are_never_lost(backend: Backend) -> None:
    """Fifty counts sent at once end as fifty distinct values: no increment overwrites another."""
    counts = await asyncio.gather(*(backend.counters.increment(["a"], WINDOW) for _ in range(50)))
    assert sorted(c.value for [c] in counts) == list(range(1, 51))


async def test_a_refund_takes_one_back(backend: Backend) -> None:
    """A refund lowers the key's count by one and keeps its window."""
    counters = backend.counters
    [opened] = await counters.increment(["a"], WINDOW)
    await counters.increment(["a"], WINDOW)
    await counters.refund("a")
    [count] = await counters.increment(["a"], WINDOW)
    assert count.value == 2
    assert count.seconds_left <= opened.seconds_left


async def test_refunding_the_last_count_forgets_the_key(backend: Backend) -> None:
    """Refunding a key's only count (or a key never counted) leaves nothing: the next count is 1."""
    counters = backend.counters
    await counters.increment(["a"], WINDOW)
    await counters.refund("a")
    await counters.refund("never-counted")
    counts = await counters.increment(["a", "never-counted"], WINDOW)
    assert [c.value for c in counts] == [1, 1]


async def test_clear_forgets_only_its_key(backend: Backend) -> None:
    """Clearing a key starts its count over and leaves other keys alone."""
    counters = backend.counters
    await counters.increment(["a", "b"], WINDOW)
    await counters.increment(["a", "b"], WINDOW)
    await counters.clear("a")
    counts = await counters.increment(["a", "b"], WINDOW)
    assert [c.value for c in counts] == [1, 3]


async def test_a_closed_window_starts_over(backend: Backend) -> None:
    """Once a key's window has closed, its next count is the first of a new, full window."""
    for _ in range(3):
        await backend.counters.increment(["a"], backend.window)
    count = await backend.count_after_the_window("a")
    assert count.value == 1
    assert 0 < count.seconds_left <= backend.window


# --- the throttle ------------------------------------------------------------------------------


async def test_attempts_past_the_limit_are_locked_out(backend: Backend) -> None:
    """After max_failures attempts, the next is 429 login_throttled with a Retry-After within the window."""
    throttle = backend.throttle(max_failures=3)
    for _ in range(3):
        await throttle.reserve("a@example.test", "10.0.0.1")
    with pytest.raises(LoginThrottled) as caught:
        await throttle.reserve("a@example.test", "10.0.0.1")
    error = caught.value
    assert (error.code, error.http_status) == ("login_throttled", 429)
    retry = int(error.headers["Retry-After"])
    assert 1 <= retry <= WINDOW
    assert error.extra["retry_after"] == retry


async def test_attempts_count_per_email_across_addresses(backend: Backend) -> None:
    """One e-mail's attempts from different IPs add up (differently written, the same address)."""
    throttle = backend.throttle(max_failures=2)
    await throttle.reserve("A@Example.test", "10.0.0.1")
    await throttle.reserve(" a@example.test", "10.0.0.2")
    with pytest.raises(LoginThrottled):
        await throttle.reserve("a@example.test", "10.0.0.3")


async def test_attempts_count_per_address_across_emails(backend: Backend) -> None:
    """One IP's attempts at different e-mails add up; another IP is not affected."""
    throttle = backend.throttle(max_failures=2)
    await throttle.reserve("a@example.test", "10.0.0.9")
    await throttle.reserve("b@example.test", "10.0.0.9")
    with pytest.raises(LoginThrottled):
        await throttle.reserve("c@example.test", "10.0.0.9")
    await throttle.reserve("d@example.test", "10.0.0.10")


async def test_success_clears_the_email_and_refunds_the_address(backend: Backend) -> None:
    """A sign-in that succeeds forgets the e-mail's failures and gives back its own IP count."""
    throttle = backend.throttle(max_failures=2)
    await throttle.reserve("a@example.test", "10.0.0.2")
    await throttle.reserve("a@example.test", "10.0.0.2")
    await throttle.succeeded("a@example.test", "10.0.0.2")
    await throttle.reserve("a@example.test", None)  # the e-mail starts over
    await throttle.reserve("b@example.test", "10.0.0.2")  # the IP holds one failure: one more fits
    with pytest.raises(LoginThrottled):
        await throttle.reserve("c@example.test", "10.0.0.2")


async def test_the_lockout_ends_with_the_window(backend: Backend) -> None:
    """A locked-out e-mail may try again once its window has closed."""
    throttle = backend.throttle(max_failures=1, window=backend.window)
    await throttle.reserve("a@example.test", None)
    with pytest.raises(LoginThrottled):
        await throttle.reserve("a@example.test", None)
    email_key = "email:" + hashlib.sha256(b"a@example.test").hexdigest()
    assert (await backend.count_after_the_window(email_key)).value == 1
    await backend.counters.clear(email_key)  # take back the probe's own count
    await throttle.reserve("a@example.test", None)


# --- Redis specifics ---------------------------------------------------------------------------


async def test_redis_keys_name_no_email_and_carry_a_ttl(redis_only: tuple[Backend, Redis]) -> None:
    """In Redis, the e-mail appears only hashed, under the prefix, and every counter expires."""
    backend, redis = redis_only
    await backend.throttle(max_failures=5).reserve("who@example.test", "10.0.0.7")
    keys = sorted([k.decode() async for k in redis.scan_iter(match=backend.prefix + "*")])
    digest = hashlib.sha256(b"who@example.test").hexdigest()
    assert keys == [f"{backend.prefix}login:email:{digest}", f"{backend.prefix}login:ip:10.0.0.7"]
    for key in keys:
        assert 0 < await redis.pttl(key) <= WINDOW * 1000


async def test_redis_gives_a_counter_without_expiry_a_window(redis_only: tuple[Backend, Redis]) -> None:
    """A counter found without a TTL (left by an older writer) gets one instead of living forever."""
    backend, redis = redis_only
    key = backend.prefix + "login:ip:10.0.0.8"
    await redis.set(key, 4)
    [count] = await backend.counters.increment(["ip:10.0.0.8"], WINDOW)
    assert count.value == 5
    assert 0 < await redis.pttl(key) <= WINDOW * 1000
