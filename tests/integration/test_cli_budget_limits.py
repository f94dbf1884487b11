"""``odock budgets set-limit`` beside production gateways: the new limit keeps what their counters hold.

A gateway settles a request in its Redis counter at once and in the ledger only at the next
usage flush. The admin API's limit change reads the live counter so that use is kept; the CLI
goes through the same service and must keep it too (it used to carry the ledger only).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from odock.admin.context import open_admin
from odock.budgets.control import meter_spec
from odock.budgets.meters import MeterLine
from odock.budgets.redis_meters import RedisMeterStore
from odock.budgets.tables import Budget
from odock.budgets.windows import Period
from odock.cli import main
from odock.ids import RequestId
from odock.settings import Settings
from tests.conftest import SettingsFactory
from tests.integration.test_cli import odock_env

LIMIT = 1_000
SETTLED = 700


async def _budget_with_unflushed_use(settings: Settings) -> Budget:
    """A daily budget whose Redis counter has SETTLED nanos settled that no ledger row holds yet."""
    async with open_admin(settings) as admin:
        org = await admin.control.tenancy.create_organisation("acme")
        budget = await admin.budgets.create_budget(org.id, "b", amount_nanos_usd=LIMIT, period=Period.DAILY)
    window = meter_spec(budget).schedule().window_at(datetime.now(UTC))
    assert window is not None
    key = meter_spec(budget).counter_key(window)
    redis = Redis.from_url(settings.redis_url or "")
    try:
        meters = RedisMeterStore(redis, settings.redis_prefix)
        assert await meters.prime(key, 0, 0, LIMIT)  # what the gateway does on the window's first request
        await meters.reserve(RequestId("req-1"), [MeterLine(key, SETTLED, LIMIT)], 60)
        await meters.settle(RequestId("req-1"), {key: SETTLED})
    finally:
        await redis.aclose()
    return budget


async def _current_use(settings: Settings, budget_id: str) -> tuple[int, int]:
    """(used, limit) of the budget's current window as the ledger of its latest version holds it."""
    async with open_admin(settings) as admin:
        budget = await admin.budgets.budget(budget_id)
        window = (await admin.budgets.current_windows([budget]))[budget.id]
    assert window is not None
    return window.used, window.limit


# An embedded gateway's counters live in its own process: beside it only the ledger is shared.
@pytest.mark.parametrize("any_backend", ["production"], indirect=True)
def test_cli_set_limit_keeps_use_settled_in_redis_but_not_flushed(
    make_backend_settings: SettingsFactory,
) -> None:
    """A limit changed from the CLI keeps the window's use that only the Redis counter holds yet."""
    settings = make_backend_settings()
    budget = asyncio.run(_budget_with_unflushed_use(settings))
    assert asyncio.run(_current_use(settings, budget.id)) == (0, LIMIT)  # the ledger has not seen it

    env = {key: value for key, value in odock_env(settings).items() if key.startswith("ODOCK_")}
    result = CliRunner().invoke(main, ["budgets", "set-limit", budget.id, "--amount-nanos", "2000"], env=env)
    assert result.exit_code == 0, result.output

    assert asyncio.run(_current_use(settings, budget.id)) == (SETTLED, 2_000)
