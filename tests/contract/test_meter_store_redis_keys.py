"""How long the Redis meter store keeps a finished request's record (its idempotency memory).

Every request with a budget leaves a small hash in Redis; kept for an hour, that is ~150 B times
requests per second times 3,600 of memory. The gateway keeps it for the window the in-process store
uses (a few reconciliation passes), which is what these tests pin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from odock.budgets.meters import MeterLine
from odock.budgets.redis_meters import RedisMeterStore
from odock.ids import new_request_id
from odock.runtime import open_governance
from odock.settings import load_settings
from tests.support import services


@pytest.fixture
async def redis_and_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """A client on the test Redis and a key prefix of this test's own (deleted afterwards)."""
    async with services.redis_with_prefix("odock_meter_keys") as client_and_prefix:
        yield client_and_prefix


async def _finish_three(store: RedisMeterStore) -> list[str]:
    """Reserve three requests on a primed counter; settle one, release one, leave one rejected."""
    await store.prime("b", used=0, reserved=0, limit=100)
    settled, released, rejected = (new_request_id() for _ in range(3))
    assert (await store.reserve(settled, [MeterLine("b", 10, 100)], 900)).admitted
    assert (await store.reserve(released, [MeterLine("b", 10, 100)], 900)).admitted
    assert not (await store.reserve(rejected, [MeterLine("b", 1000, 100)], 900)).admitted
    await store.settle(settled, {"b": 7})
    await store.release(released)
    return [settled, released, rejected]


async def test_finished_requests_are_remembered_for_the_window_passed_in(
    redis_and_prefix: tuple[Redis, str],
) -> None:
    """A settled or released request's key expires after ``remember_seconds``, not after an hour."""
    client, prefix = redis_and_prefix
    store = RedisMeterStore(client, prefix, remember_seconds=120)
    settled, released, rejected = await _finish_three(store)
    for request_id in (settled, released):
        ttl = await client.pttl(f"{prefix}meter:r:{request_id}")
        assert 110_000 < ttl <= 120_000
    # A rejection is remembered for the reservation's time to live, as before.
    assert 890_000 < await client.pttl(f"{prefix}meter:r:{rejected}") <= 900_000


async def test_the_gateway_remembers_finished_requests_for_a_few_reconciliation_passes(
    redis_and_prefix: tuple[Redis, str], tmp_path: Path
) -> None:
    """open_governance gives the Redis store max(60 s, 3 reconcile intervals), as in-process."""
    client, prefix = redis_and_prefix
    for interval, window_ms in ((40.0, 120_000), (5.0, 60_000)):
        settings = load_settings(
            data_dir=tmp_path,
            redis_url=services.REDIS_URL,
            redis_prefix=prefix,
            budget_reconcile_interval_seconds=interval,
        )
        meters = open_governance(settings, client, sessions=None).meters  # type: ignore[arg-type]
        assert isinstance(meters, RedisMeterStore)
        settled = (await _finish_three(meters))[0]
        ttl = await client.pttl(f"{prefix}meter:r:{settled}")
        assert window_ms - 10_000 < ttl <= window_ms
