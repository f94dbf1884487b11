"""Matching a dead process's intents with its records while its journal is replayed.

Flow (the journal feeds it, :mod:`odock.usage.journal`)::

    intent line   ─► held, by the dead owner and record id
    record line   ─► retires the held intent with the same id (acknowledged with the record, or
                     at once when the record was acknowledged before the crash)
    owner read    ─► every intent still held is an orphan: delivered as an ``interrupted`` record
                     under the intent's own receipt

A dead owner's record lines are read without decoding: orjson writes a UsageEvent's fields in
declaration order, so a line opens with its id (:func:`record_id`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from odock.usage.intent import UsageIntent
from odock.usage.record import UsageEventDecodeError

log = logging.getLogger(__name__)

_ID_PREFIX = b'{"id":"'


def record_id(line: bytes) -> str:
    """The id of a record line, read without decoding it ('' if the line does not open with one)."""
    if not line.startswith(_ID_PREFIX):
        return ""
    start = len(_ID_PREFIX)
    return line[start : line.find(b'"', start)].decode(errors="replace")


class OrphanIntents:
    """Dead owners' intents not yet matched to a record, and the receipts they retire."""

    def __init__(self) -> None:
        self._held: dict[str, dict[str, tuple[str, UsageIntent]]] = {}  # owner → id → (receipt, intent)
        self.retired_now: list[str] = []  # intent receipts to acknowledge at once
        self.corrupt = 0

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, owner: str, receipt: str, line: bytes) -> None:
        """Keep a dead owner's intent until its record, or its owner's end, is read."""
        try:
            intent = UsageIntent.from_line(line)
        except UsageEventDecodeError as exc:
            log.error("usage journal intent %s is corrupt and dropped: %s", receipt, exc)
            self.corrupt += 1
            self.retired_now.append(receipt)
            return
        self._held.setdefault(owner, {})[intent.id] = (receipt, intent)

    def retire(self, owner: str, line: bytes, *, acked: bool) -> str | None:
        """The receipt of the intent a record line retires (to acknowledge with the record), if any.

        When the record was acknowledged before the crash, its intent is acknowledged at once
        (:attr:`retired_now`) and None is returned.
        """
        held = self._held.get(owner)
        if not held or (found := held.pop(record_id(line), None)) is None:
            return None
        if acked:
            self.retired_now.append(found[0])
            return None
        return found[0]

    def deliver(self, fully_read: Callable[[str], bool], limit: int, out: list[tuple[str, bytes]]) -> None:
        """Append the orphans of owners fully read to ``out`` as interrupted records (up to ``limit``)."""
        for owner in list(self._held):
            if not fully_read(owner):
                continue
            intents = self._held[owner]
            count = len(intents)
            while intents and len(out) < limit:
                receipt, intent = intents.pop(next(iter(intents)))
                out.append((receipt, intent.interrupted().to_json()))
            if intents:
                return  # ``out`` is full
            del self._held[owner]
            log.warning(
                "usage journal of %s: %d requests were in flight when it stopped, recorded as interrupted",
                owner,
                count,
            )
