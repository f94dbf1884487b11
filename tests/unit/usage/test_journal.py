"""The embedded usage journal's own behaviour: files on disk, torn lines, I/O failures, ownership."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from odock.usage import journal as journal_module
from odock.usage.journal import JournalQueue
from odock.usage.record import UsageEvent


def event(n: int = 0) -> UsageEvent:
    """A small usage event."""
    return UsageEvent(
        id=secrets.token_hex(16),
        request_id=f"req-{n}",
        timestamp=datetime.now(UTC),
        endpoint="/v1/chat/completions",
        status="success",
        http_status=200,
        prompt_tokens=n,
    )


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[list[JournalQueue]]:
    """Journals opened by a test; closed at the end."""
    journals: list[JournalQueue] = []
    yield journals
    for journal in journals:
        await journal.close()


async def open_journal(opened: list[JournalQueue], directory: Path, **options: Any) -> JournalQueue:
    """Open a journal on ``directory`` and remember to close it."""
    journal = JournalQueue(directory, **options)
    await journal.open()
    opened.append(journal)
    return journal


def files(directory: Path, pattern: str = "*") -> list[str]:
    """Names of the files in ``directory`` matching ``pattern``."""
    return sorted(p.name for p in directory.glob(pattern))


def segment_files(directory: Path) -> list[str]:
    """Names of the segment files in ``directory``."""
    return files(directory, "*.jsonl")


def failing_write(fd: int, data: object) -> int:
    """An ``os.write`` on a broken disk."""
    raise OSError(errno.EIO, "Input/output error")


def leave_dead_owner(directory: Path, lines: list[bytes]) -> str:
    """Lay out the files of a process that died: an unlocked lock file and one segment."""
    directory.mkdir(parents=True, exist_ok=True)
    owner = f"999999-{secrets.token_hex(4)}"
    (directory / f"{owner}.lock").touch()
    (directory / f"{owner}.0000000001.jsonl").write_bytes(b"".join(lines))
    return owner


async def test_append_writes_one_json_line_per_event(opened: list[JournalQueue], tmp_path: Path) -> None:
    """Each event is one line in the owner's segment, readable without the queue."""
    journal = await open_journal(opened, tmp_path)
    events = [event(n) for n in range(3)]
    for e in events:
        journal.append(e)
    (segment,) = segment_files(tmp_path)
    assert segment.startswith(journal.owner + ".")
    lines = (tmp_path / segment).read_bytes().splitlines()
    assert [UsageEvent.from_json(line) for line in lines] == events


async def test_segments_rotate_and_are_deleted_once_stored(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """Segments rotate at the size bound, and every segment is deleted once its events are acknowledged."""
    journal = await open_journal(opened, tmp_path, segment_bytes=1024)
    for n in range(30):
        journal.append(event(n))
    assert len(segment_files(tmp_path)) > 3
    batch = await journal.read(100)
    assert len(batch) == 30
    await journal.ack(batch)
    assert segment_files(tmp_path) == []
    assert journal.pending == 0


async def test_partly_acknowledged_segment_is_kept(opened: list[JournalQueue], tmp_path: Path) -> None:
    """A segment with unacknowledged lines stays on disk, with an acknowledgement log beside it."""
    journal = await open_journal(opened, tmp_path)
    for n in range(4):
        journal.append(event(n))
    batch = await journal.read(4)
    await journal.ack(batch[:2])
    assert len(segment_files(tmp_path)) == 1
    assert len(files(tmp_path, "*.jsonl.ack")) == 1
    await journal.ack(batch[2:])
    assert journal.settled
    await journal.close()
    assert files(tmp_path) == []


async def test_close_after_everything_is_stored_leaves_no_files(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """A clean shutdown with nothing pending removes the owner's lock and segments."""
    journal = JournalQueue(tmp_path)
    await journal.open()
    journal.append(event())
    await journal.ack(await journal.read(1))
    await journal.close()
    assert files(tmp_path) == []


async def test_torn_last_line_of_a_dead_process_is_skipped(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """Lines before a torn tail (a write cut by SIGKILL) are delivered; the fragment is skipped."""
    good = [event(1), event(2)]
    owner = leave_dead_owner(tmp_path, [good[0].to_json() + b"\n", good[1].to_json() + b"\n", b'{"id":"to'])
    journal = await open_journal(opened, tmp_path)
    batch = await journal.read(10)
    assert [d.event for d in batch] == good
    assert journal.torn_lines == 1
    await journal.ack(batch)
    assert files(tmp_path, f"{owner}*") == []


async def test_corrupt_line_is_skipped_without_blocking_the_rest(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """An undecodable line is counted and dropped; the lines after it are still delivered."""
    after = event(3)
    leave_dead_owner(tmp_path, [b"not json\n", b'{"id": "x"}\n', after.to_json() + b"\n"])
    journal = await open_journal(opened, tmp_path)
    assert [d.event for d in await journal.read(10)] == [after]
    assert journal.corrupt_lines == 2


async def test_write_failure_holds_the_event_in_memory(
    opened: list[JournalQueue], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the disk refuses a write, append does not raise and the event is still delivered."""
    journal = await open_journal(opened, tmp_path)

    def disk_full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", disk_full)
    held = event(7)
    journal.append(held)
    monkeypatch.undo()
    assert journal.pending == 1
    batch = await journal.read(10)
    assert [d.event for d in batch] == [held]
    await journal.ack(batch)
    assert journal.pending == 0


async def test_memory_fallback_is_bounded(
    opened: list[JournalQueue], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past max_in_memory, events the disk refused are counted as dropped instead of growing memory."""
    journal = await open_journal(opened, tmp_path, max_in_memory=2)
    monkeypatch.setattr(journal_module.os, "write", failing_write)
    for n in range(5):
        journal.append(event(n))
    monkeypatch.undo()
    assert journal.dropped == 3
    assert len(await journal.read(10)) == 2


async def test_a_torn_own_write_ends_its_segment(
    opened: list[JournalQueue], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails halfway seals the segment, so later lines never glue onto the fragment."""
    journal = await open_journal(opened, tmp_path)
    journal.append(event(1))
    real_write = os.write
    calls = {"n": 0}

    def half_then_fail(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[:10])
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(journal_module.os, "write", half_then_fail)
    journal.append(event(2))  # torn: 10 bytes on disk, then held in memory
    monkeypatch.undo()
    journal.append(event(3))  # a new segment
    assert len(segment_files(tmp_path)) == 2
    got = [d.event.request_id for d in await journal.read(10)]
    assert sorted(got) == ["req-1", "req-2", "req-3"]
    assert journal.torn_lines == 1


async def test_close_spills_memory_held_events_to_disk(
    opened: list[JournalQueue], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events held in memory are journaled at close when the disk works again, so a restart has them."""
    journal = JournalQueue(tmp_path)
    await journal.open()
    monkeypatch.setattr(journal_module.os, "write", failing_write)
    held = event(5)
    journal.append(held)
    monkeypatch.undo()
    await journal.close()

    successor = await open_journal(opened, tmp_path)
    assert [d.event for d in await successor.read(10)] == [held]


async def test_stale_hidden_lock_is_removed(opened: list[JournalQueue], tmp_path: Path) -> None:
    """The hidden lock file of a process that died while starting is cleaned up by recovery."""
    leave_dead_owner(tmp_path, [])
    stale = ".123-deadbeef.lock.tmp"
    (tmp_path / stale).touch()
    await open_journal(opened, tmp_path)
    assert files(tmp_path, ".*") == []


async def test_owner_lock_is_visible_only_once_held(opened: list[JournalQueue], tmp_path: Path) -> None:
    """An open journal's lock file exists under its final name and cannot be locked by anyone else."""
    journal = await open_journal(opened, tmp_path)
    lock = tmp_path / f"{journal.owner}.lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        assert not journal_module._lock_if_free(fd)
    finally:
        os.close(fd)


async def test_handing_journal_hands_over_what_it_appended_and_decodes_the_rest(
    opened: list[JournalQueue], tmp_path: Path
) -> None:
    """Up to ``hand_over`` events reach the reader as the objects appended; the rest are decoded."""
    journal = await open_journal(opened, tmp_path, hand_over=2)
    events = [event(n) for n in range(4)]
    for e in events:
        journal.append(e)
    batch = await journal.read(100)
    assert [d.event for d in batch] == events
    assert [d.event is e for d, e in zip(batch, events, strict=True)] == [True, True, False, False]
    await journal.ack(batch)
    later = event(9)
    journal.append(later)  # the hand-over has room again once its events were read
    (delivery,) = await journal.read(100)
    assert delivery.event is later
