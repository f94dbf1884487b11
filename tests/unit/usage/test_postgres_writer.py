"""The production usage writer: binds a batch in slices between turns of the event loop; reconnects."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from odock.usage import postgres_writer
from odock.usage.bulk import RecordsRefused
from odock.usage.postgres_writer import (
    BIND_SLICE_SECONDS,
    BIND_TURNS,
    INSERT_ROWS,
    PostgresUsageWriter,
    WriteFailed,
)
from tests.support import services
from tests.unit.usage.test_recorder import event
from tests.unit.usage.turns import most_bound_between_turns


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[PostgresUsageWriter]:
    async with services.migrated_engine("postgresql", "odock_test_pg_writer", tmp_path) as engine:
        writer = PostgresUsageWriter(engine)
        yield writer
        await writer.close()


# A bind costs 2**-13 s (about 0.12 ms) on the test's clock: 9 of them fill a slice of 1 ms.
PER_BIND = 2**-13


@pytest.mark.parametrize(
    ("records", "most_per_turn"),
    [
        (20, math.ceil(BIND_SLICE_SECONDS / PER_BIND)),  # a slice is a millisecond of binding
        (400, 400 // BIND_TURNS),  # a big batch takes at most BIND_TURNS turns: longer slices
    ],
)
async def test_a_batch_is_bound_in_slices_between_turns_of_the_event_loop(
    writer: PostgresUsageWriter, monkeypatch: pytest.MonkeyPatch, records: int, most_per_turn: int
) -> None:
    """Binding yields to the loop after a slice: a millisecond, or a BIND_TURNS-th of a big batch."""
    (inserted, _), most = await most_bound_between_turns(
        writer._usage, monkeypatch, lambda: writer.insert_many([event() for _ in range(records)]), PER_BIND
    )
    assert inserted == records
    assert most == most_per_turn


async def test_a_big_batch_is_inserted_in_statements_of_insert_rows(
    writer: PostgresUsageWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg encodes a statement's rows in one go: a big batch goes in as several INSERTs, one
    transaction, every record stored once."""
    statements: list[int] = []
    columns = postgres_writer._columns
    usage_width = len(writer._usage.columns)

    def counting_columns(rows: list[list[Any]], width: int) -> Any:
        if width == usage_width:  # the usage INSERT's arguments (windows and settlements are narrower)
            statements.append(len(rows))
        return columns(rows, width)

    monkeypatch.setattr(postgres_writer, "_columns", counting_columns)
    records = 3 * INSERT_ROWS + 1
    assert (await writer.insert_many([event() for _ in range(records)]))[0] == records
    assert statements == [INSERT_ROWS, INSERT_ROWS, INSERT_ROWS, 1]


async def test_a_connection_the_server_closed_is_replaced_before_the_next_batch(
    writer: PostgresUsageWriter,
) -> None:
    """The writer's own connection, closed by the server between batches, is opened anew."""
    assert (await writer.insert_many([event()]))[0] == 1
    assert writer._connection is not None
    closed = writer._connection.get_server_pid()
    admin = await asyncpg.connect(services.POSTGRES_URL)
    try:  # with a timeout, pg_terminate_backend waits until the backend has exited
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", closed)
    finally:
        await admin.close()
    assert (await writer.insert_many([event(), event()]))[0] == 2
    assert writer._connection.get_server_pid() != closed


async def test_a_refused_batch_raises_records_refused_writes_nothing_and_keeps_the_connection(
    writer: PostgresUsageWriter,
) -> None:
    """A batch the database refuses is rolled back whole and raised as RecordsRefused; the next is written."""
    good, refused = event(), event()
    refused.prompt_tokens = 2**63  # one past the largest BIGINT
    assert (await writer.insert_many([event()]))[0] == 1
    connection = writer._connection
    with pytest.raises(RecordsRefused, match="DataError"):
        await writer.insert_many([good, refused])
    assert writer._connection is connection  # the transaction was rolled back: nothing to drop
    assert (await writer.insert_many([good]))[0] == 1  # not written by the refused batch


async def test_a_server_error_outside_classes_22_and_23_raises_write_failed_to_retry(
    writer: PostgresUsageWriter,
) -> None:
    """An error that is not the rows' fault (here 42P01, the table missing until a migration runs)
    is WriteFailed, retried rather than dead-lettered; the connection is dropped."""
    assert (await writer.insert_many([event()]))[0] == 1
    assert writer._connection is not None
    await writer._connection.execute("ALTER TABLE usage_records RENAME TO usage_records_away")
    with pytest.raises(WriteFailed, match="UndefinedTableError"):
        await writer.insert_many([event()])
    assert writer._connection is None  # dropped: it could have been left inside the transaction
    restore = await writer._connected()
    await restore.execute("ALTER TABLE usage_records_away RENAME TO usage_records")
    assert (await writer.insert_many([event()]))[0] == 1
