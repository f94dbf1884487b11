"""The embedded usage queue: an append-only journal of JSON lines in the data directory.

Each process is one *owner* (``<pid>-<random>``) writing its own segments
``<owner>.<seq>.jsonl``, one event per line, with a plain ``os.write`` on an ``O_APPEND``
descriptor. When ``append`` returns, the line is in the kernel's page cache, so it survives the
process being killed (SIGKILL, OOM killer, a crash) without an fsync per request.

Flow::

    append  ─► <owner>.<seq>.jsonl            (a new segment every segment_bytes)
    read    ─► lines past each segment's read cursor, oldest segment first
    ack     ─► segment fully acknowledged: delete it; otherwise append the acknowledged byte
               spans to <owner>.<seq>.jsonl.ack, so a replay skips them
    recover ─► adopt the segments of every owner whose lock is free (its process is gone)

Liveness is an exclusive ``flock`` on ``<owner>.lock``, held while the owner lives and released
by the kernel however the process ends, so several processes may share a data directory and
only the segments of dead ones are replayed. The lock file is created under a hidden name and
renamed once locked: a visible lock file is never unlocked while its owner lives. An adopter
holds the dead owner's lock until all of its segments are deleted; if the adopter dies too, the
next process adopts them again. Replay is safe because the store inserts idempotently by id.

With ``hand_over`` set, the journal also keeps the event objects it appended (up to that many,
until read), so a reader in the same process does not decode its own lines back: as the queue
itself (embedded) :meth:`JournalQueue.read` takes them; as the spool of the Redis stream,
:meth:`JournalQueue.take_appended` hands them to the pump. Lines beyond that, and every line
after a restart, are decoded from the file.

Intents (:mod:`odock.usage.intent`) are lines too, marked by a leading ``?``: an admitted
request's intent is appended before its upstream call, and its record (same id) is appended when
it finishes. The reader passes intent lines by without delivering them, and acknowledging the
record acknowledges its intent (the intent's span is logged first, so a crash between the two
logs never leaves a retired intent looking open). When a dead owner's segments are replayed, an
intent whose record is among them is retired with it; once all of that owner's segments are
read, each intent left is delivered as an ``interrupted`` record under the intent's receipt.

Not covered: a kernel crash or power loss can lose lines not yet written back to disk (there is
no fsync). A torn last line (a process killed inside ``write``) is skipped on replay. If the
journal cannot be written (disk full), events are held in memory, up to ``max_in_memory``.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import secrets
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from odock.usage.intent import INTENT_MARK, UsageIntent
from odock.usage.orphans import OrphanIntents
from odock.usage.queue import Delivery, decode_entries
from odock.usage.record import UsageEvent

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
ACK_SUFFIX = ".jsonl.ack"
LOCK_SUFFIX = ".lock"
_TMP_SUFFIX = ".tmp"
_MEMORY = "memory"
_SPAN = struct.Struct("<QQ")  # an acknowledged [start, end) byte span of a segment
_READ_CHUNK = 256 * 1024
_FLAGS = os.O_CLOEXEC
# An active segment fully acknowledged is deleted once it holds at least this much.
_RETIRE_ACTIVE_BYTES = 256 * 1024


@dataclass(eq=False)
class _Segment:
    """One journal file and how far it has been read and acknowledged."""

    name: str
    path: Path
    own: bool
    size: int = 0
    read_offset: int = 0
    sealed: bool = False
    write_fd: int = -1
    read_fd: int = -1
    ack_fd: int = -1
    in_flight: dict[int, int] = field(default_factory=dict)  # start → end of delivered lines
    acked_starts: list[int] = field(default_factory=list)  # spans acknowledged before a crash
    acked_ends: list[int] = field(default_factory=list)

    @property
    def ack_path(self) -> Path:
        return self.path.with_name(self.name + ACK_SUFFIX)

    @property
    def owner(self) -> str:
        return self.name.split(".", 1)[0]

    def was_acked(self, start: int, end: int) -> bool:
        """True when a previous owner acknowledged the line at [start, end)."""
        i = bisect.bisect_right(self.acked_starts, start) - 1
        return i >= 0 and self.acked_ends[i] >= end

    def load_acks(self) -> None:
        """Read the acknowledged spans a previous owner logged."""
        try:
            data = self.ack_path.read_bytes()
        except FileNotFoundError:
            return
        whole = len(data) - len(data) % _SPAN.size  # a torn last record is ignored
        spans = sorted(_SPAN.iter_unpack(data[:whole]))
        for start, end in _merge(spans):
            self.acked_starts.append(start)
            self.acked_ends.append(end)

    def close_fds(self) -> None:
        for fd in (self.write_fd, self.read_fd, self.ack_fd):
            if fd >= 0:
                os.close(fd)
        self.write_fd = self.read_fd = self.ack_fd = -1


class JournalQueue:
    """Usage events in an append-only local journal (the embedded :class:`UsageQueue`)."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 4 * 1024 * 1024,
        max_in_memory: int = 100_000,
        hand_over: int = 0,
    ) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._max_in_memory = max_in_memory
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_fd = -1
        self._segments: dict[str, _Segment] = {}  # oldest first
        self._adopted: dict[str, int] = {}  # dead owner → its lock, held while replaying
        self._active: _Segment | None = None
        self._seq = 0
        self._memory: deque[UsageEvent] = deque()  # events the journal could not take
        self._memory_in_flight: dict[int, UsageEvent] = {}
        self._memory_seq = 0
        # Receipt → the event appended as that line (see hand_over in the module docstring).
        self._appended: dict[str, UsageEvent] = {}
        self._hand_over = hand_over
        self._own_unacked = 0
        # Intents (see the module docstring): record id → its intent's receipt, until the record
        # is appended; a record's receipt → the intent it retires, until acknowledged; own intent
        # lines the reader passed by; dead owners' intents not yet matched to a record.
        self._open_intents: dict[str, str] = {}
        self._retires: dict[str, str] = {}
        self._held_intents = 0
        self._orphans = OrphanIntents()
        self._dropped = 0
        self.torn_lines = 0
        self.corrupt_lines = 0

    # --- UsageQueue -----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Events appended by this instance and not yet acknowledged."""
        return self._own_unacked + len(self._memory) + len(self._memory_in_flight)

    @property
    def backlog(self) -> int:
        """Events appended by this instance and not yet stored (as :attr:`pending`)."""
        return self.pending

    @property
    def settled(self) -> bool:
        """True when every segment (own or adopted) and every memory-held event is acknowledged."""
        segments = self._segments.values()
        # Own intents of requests still in flight are not this queue's to deliver.
        delivered = sum(len(seg.in_flight) for seg in segments) == self._held_intents
        drained = delivered and all(seg.read_offset >= seg.size for seg in segments)
        return drained and not self._memory and not self._memory_in_flight

    @property
    def dropped(self) -> int:
        """Events lost because the journal failed and the memory fallback was full."""
        return self._dropped

    async def open(self) -> None:
        """Take this process's lock and adopt what dead processes left."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._take_own_lock()
        self.recover_now()

    def append(self, event: UsageEvent) -> None:
        """Write the event as one line; on an I/O error hold it in memory instead."""
        if self._lock_fd < 0:
            self._hold_in_memory(event, "the journal is not open")
            return
        line = event.to_json() + b"\n"
        try:
            receipt = self._write(line)
        except OSError as exc:
            self._hold_in_memory(event, f"journal write failed: {exc}")
            return
        self._own_unacked += 1
        if len(self._appended) < self._hand_over:
            self._appended[receipt] = event
        if self._open_intents and (intent := self._open_intents.pop(event.id, None)) is not None:
            self._retires[receipt] = intent

    def append_intent(self, intent: UsageIntent) -> None:
        """Write an intent line; it stays until the record with its id is acknowledged."""
        if self._lock_fd < 0:
            return
        try:
            receipt = self._write(intent.to_line() + b"\n")
        except OSError:
            # Not logged per request: the record that follows meets the same error and is held
            # in memory, which is logged. Only a crash before it would lose this request's usage.
            return
        self._open_intents[intent.id] = receipt

    async def read(self, limit: int) -> list[Delivery]:
        """Decode the next lines; undecodable ones are logged and acknowledged away."""
        deliveries, corrupt = await decode_entries(self.read_lines(limit), self._appended)
        if corrupt:
            self.corrupt_lines += len(corrupt)
            self.ack_receipts(corrupt)
        return deliveries

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge stored events."""
        self.ack_receipts([d.receipt for d in deliveries])

    async def recover(self) -> int:
        """Adopt the journals of dead processes; return how many were adopted."""
        return self.recover_now()

    async def close(self) -> None:
        """Release the lock; un-acknowledged lines stay for the next process to replay."""
        if self._lock_fd < 0:
            return
        self._spill_memory()
        self._reap(closing=True)
        own_left = False
        for seg in self._segments.values():
            seg.close_fds()
            own_left = own_left or seg.own
        self._segments.clear()
        self._appended.clear()
        self._open_intents.clear()
        self._retires.clear()
        self._orphans = OrphanIntents()
        self._held_intents = 0
        self._active = None
        for fd in self._adopted.values():
            os.close(fd)  # their remaining segments are adopted again by the next process
        self._adopted.clear()
        if own_left:
            log.warning("usage journal: un-stored records left in %s for the next start", self.directory)
        else:
            (self.directory / (self.owner + LOCK_SUFFIX)).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = -1

    # --- raw lines (also the spool of the Redis queue) ---------------------------------------
    def take_appended(self, receipt: str) -> UsageEvent | None:
        """The event appended as the line ``receipt``, if still held (see ``hand_over``); forgets it."""
        return self._appended.pop(receipt, None)

    def read_lines(self, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` undelivered lines as (receipt, JSON bytes), oldest first."""
        out: list[tuple[str, bytes]] = []
        for seg in list(self._segments.values()):
            if len(out) >= limit:
                break
            self._read_segment(seg, limit, out)
        if self._orphans:
            self._orphans.deliver(self._fully_read, limit, out)
        if self._orphans.retired_now:
            retired, self._orphans.retired_now = self._orphans.retired_now, []
            self.ack_receipts(retired)
        while self._memory and len(out) < limit:
            event = self._memory.popleft()
            self._memory_seq += 1
            self._memory_in_flight[self._memory_seq] = event
            out.append((f"{_MEMORY}:{self._memory_seq}", event.to_json()))
        self._reap()
        return out

    def ack_receipts(self, receipts: Sequence[str]) -> None:
        """Acknowledge lines by receipt, and the intents they retire; delete segments fully acknowledged."""
        spans: dict[str, list[tuple[int, int]]] = {}
        if self._retires:
            # Intents first: their spans are logged before their records' (module docstring).
            for receipt in receipts:
                if (intent := self._retires.pop(receipt, None)) is not None:
                    self._take_span(intent, spans, intent=True)
        for receipt in receipts:
            self._take_span(receipt, spans, intent=False)
        # Segments done are deleted before the others' spans are logged, for the same reason.
        self._reap()
        for name, acked in spans.items():
            seg = self._segments.get(name)
            if seg is not None:
                self._log_acks(seg, acked)

    def _take_span(self, receipt: str, spans: dict[str, list[tuple[int, int]]], *, intent: bool) -> None:
        """Stop holding the line ``receipt`` as delivered; add its span to ``spans`` to log."""
        name, _, position = receipt.rpartition(":")
        if name == _MEMORY:
            self._memory_in_flight.pop(int(position), None)
            return
        seg = self._segments.get(name)
        end = seg.in_flight.pop(int(position), None) if seg else None
        if seg is None or end is None:
            return  # already acknowledged
        if seg.own and intent:
            self._held_intents -= 1
        elif seg.own:
            self._own_unacked -= 1
        spans.setdefault(name, []).append((int(position), end))

    def recover_now(self) -> int:
        """Adopt the segments of every owner whose lock is free; return how many owners."""
        if self._lock_fd < 0:
            return 0
        owners: set[str] = set()
        for entry in os.listdir(self.directory):
            if entry.startswith("."):
                self._clear_stale_lock(entry)
            elif entry.endswith((SEGMENT_SUFFIX, ACK_SUFFIX, LOCK_SUFFIX)):
                owner = entry.split(".", 1)[0]
                if owner != self.owner and owner not in self._adopted:
                    owners.add(owner)
        return sum(1 for owner in sorted(owners) if self._adopt(owner))

    # --- writing ------------------------------------------------------------------------------
    def _take_own_lock(self) -> None:
        hidden = self.directory / f".{self.owner}{LOCK_SUFFIX}{_TMP_SUFFIX}"
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FLAGS, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(hidden, self.directory / (self.owner + LOCK_SUFFIX))
        self._lock_fd = fd

    def _write(self, line: bytes) -> str:
        """Append one line; return its receipt."""
        seg = self._active or self._start_segment()
        receipt = f"{seg.name}:{seg.size}"
        view = memoryview(line)
        try:
            while view:
                written = os.write(seg.write_fd, view)
                seg.size += written
                view = view[written:]
        except OSError:
            if len(view) != len(line):
                self._seal(seg)  # a torn line must be the last thing in its segment
            raise
        if seg.size >= self._segment_bytes:
            self._seal(seg)
        return receipt

    def _start_segment(self) -> _Segment:
        self._seq += 1
        name = f"{self.owner}.{self._seq:010d}"
        path = self.directory / (name + SEGMENT_SUFFIX)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _FLAGS, 0o600)
        seg = _Segment(name=name, path=path, own=True, write_fd=fd)
        self._segments[name] = seg
        self._active = seg
        return seg

    def _seal(self, seg: _Segment) -> None:
        if seg.write_fd >= 0:
            os.close(seg.write_fd)
            seg.write_fd = -1
        seg.sealed = True
        if self._active is seg:
            self._active = None

    def _hold_in_memory(self, event: UsageEvent, reason: str) -> None:
        # Logged once per streak: a full disk must not also flood the log at request rate.
        if len(self._memory) + len(self._memory_in_flight) >= self._max_in_memory:
            if not self._dropped:
                log.error(
                    "usage records are being lost: %s and %d are already held in memory",
                    reason,
                    self._max_in_memory,
                )
            self._dropped += 1
            return
        if not self._memory:
            log.error("usage records held in memory only, from %s on: %s", event.id, reason)
        self._memory.append(event)

    def _spill_memory(self) -> None:
        """On close, give events held in memory one more chance to reach the journal."""
        held = list(self._memory_in_flight.values()) + list(self._memory)
        self._memory.clear()
        self._memory_in_flight.clear()
        for event in held:
            self.append(event)
        if self._memory:
            self._dropped += len(self._memory)
            log.error(
                "%d usage records lost at shutdown: the journal in %s cannot be written",
                len(self._memory),
                self.directory,
            )
            self._memory.clear()

    # --- reading and acknowledging ---------------------------------------------------------------
    def _read_segment(self, seg: _Segment, limit: int, out: list[tuple[str, bytes]]) -> None:
        if seg.read_offset >= seg.size:
            return
        if seg.read_fd < 0:
            seg.read_fd = os.open(seg.path, os.O_RDONLY | _FLAGS)
        want = _READ_CHUNK
        while len(out) < limit and seg.read_offset < seg.size:
            remaining = seg.size - seg.read_offset
            chunk = os.pread(seg.read_fd, min(want, remaining), seg.read_offset)
            consumed = self._take_lines(seg, chunk, limit, out)
            if consumed:
                seg.read_offset += consumed
                want = _READ_CHUNK
            elif chunk and len(chunk) < remaining:
                want *= 2  # one line longer than the chunk
            else:
                if seg.sealed or not chunk:
                    self.torn_lines += 1
                    log.warning(
                        "usage journal %s ends in a torn line (%d bytes): skipped", seg.path.name, remaining
                    )
                    seg.read_offset = seg.size
                return

    def _take_lines(self, seg: _Segment, chunk: bytes, limit: int, out: list[tuple[str, bytes]]) -> int:
        """Move complete lines of ``chunk`` into ``out`` (intents are held); return the bytes consumed."""
        pos = 0
        while len(out) < limit:
            newline = chunk.find(b"\n", pos)
            if newline < 0:
                break
            start = seg.read_offset + pos
            end = seg.read_offset + newline + 1
            if chunk.startswith(INTENT_MARK, pos):
                self._hold_intent(seg, start, end, chunk[pos:newline])
            elif not seg.own:
                self._replay_line(seg, start, end, chunk[pos:newline], out)
            else:
                seg.in_flight[start] = end
                out.append((f"{seg.name}:{start}", chunk[pos:newline]))
            pos = newline + 1
        return pos

    def _hold_intent(self, seg: _Segment, start: int, end: int, line: bytes) -> None:
        """Keep an intent line undelivered until its record is acknowledged (or it is found orphaned)."""
        if seg.was_acked(start, end):
            return
        seg.in_flight[start] = end
        if seg.own:
            self._held_intents += 1
        else:
            self._orphans.hold(seg.owner, f"{seg.name}:{start}", line)

    def _replay_line(
        self, seg: _Segment, start: int, end: int, line: bytes, out: list[tuple[str, bytes]]
    ) -> None:
        """Deliver a dead owner's record line unless acknowledged before; either way it retires its intent."""
        acked = seg.was_acked(start, end)
        receipt = f"{seg.name}:{start}"
        if self._orphans and (intent := self._orphans.retire(seg.owner, line, acked=acked)) is not None:
            self._retires[receipt] = intent
        if not acked:
            seg.in_flight[start] = end
            out.append((receipt, line))

    def _fully_read(self, owner: str) -> bool:
        """True when every segment of ``owner`` has been read to its end."""
        return all(seg.read_offset >= seg.size for seg in self._segments.values() if seg.owner == owner)

    def _is_done(self, seg: _Segment, *, closing: bool = False) -> bool:
        fully_read = seg.read_offset >= seg.size and not seg.in_flight
        if seg.sealed or closing:
            return fully_read and (seg.sealed or seg.size > 0)
        # A fully acknowledged active segment is retired too, so idle files stay small; but not
        # before it holds some lines, or a reader that keeps up (every line acknowledged right
        # after it is written) would create and delete a file per request.
        return fully_read and seg.size >= min(_RETIRE_ACTIVE_BYTES, self._segment_bytes)

    def _reap(self, *, closing: bool = False) -> None:
        for seg in [s for s in self._segments.values() if self._is_done(s, closing=closing)]:
            self._delete(seg)

    def _delete(self, seg: _Segment) -> None:
        self._seal(seg)
        seg.close_fds()
        seg.path.unlink(missing_ok=True)
        seg.ack_path.unlink(missing_ok=True)
        del self._segments[seg.name]
        owner = seg.owner
        if owner in self._adopted and not any(s.owner == owner for s in self._segments.values()):
            (self.directory / (owner + LOCK_SUFFIX)).unlink(missing_ok=True)
            os.close(self._adopted.pop(owner))

    def _log_acks(self, seg: _Segment, spans: list[tuple[int, int]]) -> None:
        data = b"".join(_SPAN.pack(start, end) for start, end in _merge(sorted(spans)))
        try:
            if seg.ack_fd < 0:  # kept open with the segment: acknowledgements come at request rate
                seg.ack_fd = os.open(seg.ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _FLAGS, 0o600)
            os.write(seg.ack_fd, data)
        except OSError as exc:
            # Only costs a re-delivery after a crash, which the idempotent store absorbs.
            log.warning("could not log usage acknowledgements for %s: %s", seg.path.name, exc)

    # --- recovery -----------------------------------------------------------------------------
    def _adopt(self, owner: str) -> bool:
        lock_path = self.directory / (owner + LOCK_SUFFIX)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o600)
        # Another adopter may have finished and unlinked the file after we opened it.
        if not _lock_if_free(fd) or not _is_linked_as(fd, lock_path):
            os.close(fd)
            return False  # alive, or being replayed by another process
        names = sorted(n for n in os.listdir(self.directory) if n.startswith(owner + "."))
        segments = [n for n in names if n.endswith(SEGMENT_SUFFIX)]
        for name in names:  # acknowledgement logs whose segment is already gone
            if name.endswith(ACK_SUFFIX) and name.removesuffix(".ack") not in segments:
                (self.directory / name).unlink(missing_ok=True)
        if not segments:
            lock_path.unlink(missing_ok=True)
            os.close(fd)
            return False
        self._adopted[owner] = fd
        for name in segments:
            path = self.directory / name
            seg = _Segment(name=name.removesuffix(SEGMENT_SUFFIX), path=path, own=False, sealed=True)
            seg.size = path.stat().st_size
            seg.load_acks()
            self._segments[seg.name] = seg
        log.warning(
            "replaying the usage journal of a process that is gone (%s): %d segment(s)", owner, len(segments)
        )
        return True

    def _clear_stale_lock(self, entry: str) -> None:
        """Remove a hidden lock file whose process died before renaming it."""
        if not entry.endswith(LOCK_SUFFIX + _TMP_SUFFIX):
            return
        path = self.directory / entry
        try:
            fd = os.open(path, os.O_RDWR | _FLAGS)
        except FileNotFoundError:
            return
        try:
            if _lock_if_free(fd):  # not locked: its process died before renaming it
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _lock_if_free(fd: int) -> bool:
    """Take an exclusive flock without waiting; False when another open file holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_linked_as(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd``."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Coalesce sorted, touching or overlapping spans."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
