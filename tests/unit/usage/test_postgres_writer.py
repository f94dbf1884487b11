"""The production usage writer binds a batch in slices, letting the event loop run between them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from odock.db import migrate
from odock.db.engine import create_engine
from odock.usage.postgres_writer import BIND_STEP, PostgresUsageWriter
from tests.support import services
from tests.unit.usage.test_recorder import event


@pytest.fixture
async def writer() -> AsyncIterator[PostgresUsageWriter]:
    services.require_services()
    database = services.unique_name("odock_test_pg_writer")
    engine = create_engine(await services.create_database(database))
    try:
        await migrate.upgrade(engine)
        yield PostgresUsageWriter(engine)
    finally:
        await engine.dispose()
        await services.drop_database(database)


async def test_a_big_batch_is_bound_in_slices_between_turns_of_the_event_loop(
    writer: PostgresUsageWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No more than BIND_STEP records are bound without the event loop getting a turn."""
    bound_since_turn = 0
    most_between_turns = 0
    bind = writer._usage.bind

    def counting_bind(values: Any) -> list[Any]:
        nonlocal bound_since_turn, most_between_turns
        bound_since_turn += 1
        most_between_turns = max(most_between_turns, bound_since_turn)
        return bind(values)

    monkeypatch.setattr(writer._usage, "bind", counting_bind)
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal bound_since_turn
        while not done.is_set():
            bound_since_turn = 0
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        group.create_task(ticker())
        await asyncio.sleep(0)
        inserted, _ = await writer.insert_many([event() for _ in range(10 * BIND_STEP)])
        done.set()
    assert inserted == 10 * BIND_STEP
    assert most_between_turns == BIND_STEP
