"""Usage intents in the journal: retired by their record while the process lives, replayed after it dies."""

from __future__ import annotations

import secrets
import shutil
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from odock.usage.intent import INTERRUPTED, UsageIntent
from odock.usage.journal import JournalQueue
from odock.usage.record import UsageEvent

PRICING = {"input": {"text_cost_per_1k_tokens": 0.002}, "output": {"text_cost_per_1k_tokens": 0.008}}
SETTLEMENT = {
    "request_key": "",
    "window_key": "budget:b1:v1:0",
    "amount": 0,
    "meter_kind": "budget",
    "meter_id": "b1",
    "version": 1,
    "window_index": 0,
    "start": "2026-01-01T00:00:00+00:00",
    "end": "2026-02-01T00:00:00+00:00",
    "limit": 10**12,
    "thresholds": [],
}


def intent(prompt_tokens: int = 15, completion_tokens: int = 644) -> UsageIntent:
    """An intent of a priced chat request holding one budget line."""
    record_id = secrets.token_hex(16)
    return UsageIntent(
        id=record_id,
        request_id="req-" + record_id[:8],
        timestamp=datetime.now(UTC),
        endpoint="/v1/chat/completions",
        stream=True,
        organisation_id="org1",
        team_id=None,
        user_id=None,
        api_key_id="key1",
        model_id="m1",
        model="test-model",
        provider_id="p1",
        provider="mock",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        embeddings=False,
        pricing=PRICING,
        settlements=[{**SETTLEMENT, "request_key": record_id, "amount": 5_182_000}],
    )


def record_of(pending: UsageIntent) -> UsageEvent:
    """The usage record that finishes the request of ``pending``."""
    return UsageEvent(
        id=pending.id,
        request_id=pending.request_id,
        timestamp=pending.timestamp,
        endpoint=pending.endpoint,
        status="success",
        http_status=200,
        completion_tokens=16,
    )


@pytest.fixture
async def opened() -> AsyncIterator[list[JournalQueue]]:
    """Journals opened by a test; closed at the end."""
    journals: list[JournalQueue] = []
    yield journals
    for journal in journals:
        await journal.close()


async def open_journal(opened: list[JournalQueue], directory: Path, **options: Any) -> JournalQueue:
    """Open a journal on ``directory`` (adopting what dead owners left) and remember to close it."""
    journal = JournalQueue(directory, **options)
    await journal.open()
    opened.append(journal)
    return journal


def names(directory: Path, pattern: str) -> list[str]:
    """Names of the files in ``directory`` matching ``pattern``."""
    return sorted(p.name for p in directory.glob(pattern))


def crash_copy(directory: Path, into: Path) -> Path:
    """The journal files as a SIGKILL would leave them: copied as they are, their lock held by no one."""
    shutil.copytree(directory, into)
    return into


async def test_a_live_intent_is_never_delivered_and_its_record_retires_it(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """While the process lives only records are read; acknowledging the record acknowledges its intent."""
    journal = await open_journal(opened, tmp_path)
    pending = intent()
    journal.append_intent(pending)
    assert await journal.read(10) == []
    assert journal.settled  # an intent of a request in flight is not a record to deliver

    journal.append(record_of(pending))
    (delivery,) = await journal.read(10)
    assert delivery.event.status == "success"
    await journal.ack([delivery])
    assert journal.settled
    await journal.close()
    opened.remove(journal)
    assert names(tmp_path, "*") == []  # intent and record both acknowledged: nothing left


async def test_a_dead_owners_open_intent_becomes_an_interrupted_record_at_the_estimate(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """After a crash, an intent without a record is delivered as an interrupted, estimated, billed record."""
    doomed = await open_journal(opened, tmp_path / "a")
    in_flight, finished = intent(), intent()
    doomed.append_intent(in_flight)
    doomed.append_intent(finished)
    doomed.append(record_of(finished))

    survivor = await open_journal(opened, crash_copy(tmp_path / "a", tmp_path / "b"))
    deliveries = await survivor.read(10)
    by_id = {d.event.id: d.event for d in deliveries}
    assert sorted(by_id) == sorted([in_flight.id, finished.id])
    assert by_id[finished.id].status == "success"  # its intent was retired, not replayed
    interrupted = by_id[in_flight.id]
    assert interrupted.status == INTERRUPTED
    assert (interrupted.prompt_tokens, interrupted.completion_tokens) == (15, 644)
    assert interrupted.total_cost_nanos_usd == 5_182_000  # 15 x $0.002/1K + 644 x $0.008/1K
    assert interrupted.metadata["usage_estimated"] is True
    assert interrupted.settlements == in_flight.settlements
    await survivor.ack(deliveries)
    assert survivor.settled
    assert names(tmp_path / "b", "*.jsonl") == []


async def test_an_intent_whose_record_was_stored_before_the_crash_is_not_replayed(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """A record acknowledged before the crash retires its intent on replay: no interrupted twin."""
    pending, other = intent(), intent()
    intent_line = pending.to_line() + b"\n"
    record_line = record_of(pending).to_json() + b"\n"
    lines = [intent_line, record_line, record_of(other).to_json() + b"\n"]
    owner = f"999999-{secrets.token_hex(4)}"
    (tmp_path / f"{owner}.lock").touch()
    (tmp_path / f"{owner}.0000000001.jsonl").write_bytes(b"".join(lines))
    # The record's span alone was logged as acknowledged: the crash came before its intent's.
    start = len(intent_line)
    ack = struct.pack("<QQ", start, start + len(record_line))
    (tmp_path / f"{owner}.0000000001.jsonl.ack").write_bytes(ack)

    survivor = await open_journal(opened, tmp_path)
    deliveries = await survivor.read(10)
    assert [d.event.id for d in deliveries] == [other.id]
    await survivor.ack(deliveries)
    assert survivor.settled
    assert names(tmp_path, "*.jsonl") == []


async def test_an_intent_left_open_at_close_is_replayed_by_the_next_process(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """An intent still open at a graceful close is recorded as interrupted by the next start."""
    first = await open_journal(opened, tmp_path)
    pending = intent()
    first.append_intent(pending)
    await first.close()
    opened.remove(first)

    second = await open_journal(opened, tmp_path)
    (delivery,) = await second.read(10)
    assert (delivery.event.id, delivery.event.status) == (pending.id, INTERRUPTED)
