"""What the Redis limiter leaves in its keys, which every replica (old and new) reads the same way.

A minute window is a hash of one-second buckets plus ``n`` (their total) and ``o`` (the oldest
second); replicas of other versions add to it with HINCRBY and read ``n`` and ``o`` instead of
summing buckets, so those invariants and the key's lifetime are part of the contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from odock.limits.limiter import RedisRateLimiter
from odock.limits.plan import checks_for
from odock.limits.policy import Scope, ScopePolicy, parse_policy
from tests.support import services

TPM = ScopePolicy(Scope.API_KEY, "k1", parse_policy({"ratelimit": {"tokens": {"per_minute": 10**6}}}))


@pytest.fixture
async def redis_and_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """A client on the test Redis and a key prefix of this test's own (deleted afterwards)."""
    async with services.redis_with_prefix("odock_rl_keys") as client_and_prefix:
        yield client_and_prefix


async def _now_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_a_window_outlives_its_newest_second_and_then_expires(
    redis_and_prefix: tuple[Redis, str],
) -> None:
    """After every admission the window hash expires between 60 and 62 s after its newest second began."""
    client, prefix = redis_and_prefix
    limiter = RedisRateLimiter(client, prefix)
    checks = checks_for([TPM], requests=False, tokens=10)
    key = checks[0].key(prefix)
    for request_id in ("a", "b", "c"):  # usually within one second: later counts keep the expiry
        receipt = (await limiter.admit(request_id, checks)).receipt
        assert receipt is not None
        newest = receipt.reservations[0].bucket
        expires_at = await _now_ms(client) + await client.pttl(key)
        assert (newest + 60) * 1000 <= expires_at <= (newest + 62) * 1000


async def test_a_window_total_is_the_sum_of_its_buckets_after_admits_and_reconciles(
    redis_and_prefix: tuple[Redis, str],
) -> None:
    """``n`` equals the sum of the bucket fields and ``o`` is the oldest, all stored as integers."""
    client, prefix = redis_and_prefix
    limiter = RedisRateLimiter(client, prefix)
    checks = checks_for([TPM], requests=False, tokens=700)
    receipts = []
    for request_id in ("a", "b", "c"):
        receipt = (await limiter.admit(request_id, checks)).receipt
        assert receipt is not None
        receipts.append(receipt)
    await limiter.finish(receipts[:1], 100)  # refunds 600
    await limiter.finish(receipts[1:2], 0)  # refunds all 700
    await limiter.finish(receipts[2:], 900)  # tops up 200

    fields = {
        name.decode(): int(value) for name, value in (await client.hgetall(checks[0].key(prefix))).items()
    }

    buckets = {name: count for name, count in fields.items() if name.isdigit()}
    assert fields["n"] == sum(buckets.values()) == 100 + 0 + 900
    assert fields["o"] == min(int(second) for second in buckets)
