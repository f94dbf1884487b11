"""Rows for the usage writers: column values bound once per row as the database driver takes them.

The usage writers (:mod:`odock.usage.sqlite_writer`, :mod:`odock.usage.postgres_writer`) talk to
the driver directly instead of through SQLAlchemy's statement machinery, which costs about
230 µs of CPU per record on the event loop. Values still go through the columns' own SQLAlchemy
bind processors, so they are stored exactly as the ORM stores them, except two that run on
every row and have faster exact equivalents here: JSON (orjson instead of ``json.dumps``) and
UTC timestamps.

Text that PostgreSQL cannot store is made storable rather than refused: a NUL character (which a
client can put in a JSON body, e.g. as the model name, and which PostgreSQL refuses in text and
in JSONB) is stored as U+FFFD, in text and JSON columns alike and on both backends, and text longer
than its column (a model name past 200 characters) is cut to the column's length on both. Refusing
would be worse: the batch holding the record would fail on every retry, and no usage record
after it would be written.

A value that still cannot be bound (a naive timestamp, an integer past 64 bits, a type the
driver does not take) raises :class:`RecordsRefused`, as the writers do for a batch the database
refuses: the recorder then isolates the record and stores it as a dead letter
(:mod:`odock.usage.recorder`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, String, Table
from sqlalchemy.engine import Dialect

from odock.budgets.ledger import BatchSettlements
from odock.db.base import UTCDateTime
from odock.usage.record import UsageEvent

Processor = Callable[[Any], Any]


class RecordsRefused(Exception):
    """The database (or the binding of a value) refused a record of the batch: nothing was written.

    Retrying the same batch fails the same way; the message is the database's (or the binding's)
    and names no payload beyond the offending value.
    """


NUL = "\x00"
REPLACEMENT = "\ufffd"


def without_nul(value: Any) -> Any:
    """A text value with every NUL character replaced by U+FFFD (anything else unchanged)."""
    return value.replace(NUL, REPLACEMENT) if isinstance(value, str) and NUL in value else value


def _scrubbed(value: Any) -> Any:
    """``value`` with NUL characters replaced in every string of it, keys included."""
    if isinstance(value, dict):
        return {without_nul(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return without_nul(value)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def json_text(value: Any) -> str | None:
    """JSON text of a value (None stays NULL), encoded as the usage queue encodes it.

    So a record is stored the same whether the writer decoded it from the queue or was handed
    the event itself: values JSON cannot hold become text, non-string keys are stringified, and
    NUL characters become U+FFFD (see the module's docstring).
    """
    if value is None:
        return None
    text = _dumps(value)
    # orjson writes NUL as the escape \u0000: only then is the value walked (a literal backslash
    # followed by "u0000" matches too, and comes out of the walk unchanged).
    return _dumps(_scrubbed(value)) if "\\u0000" in text else text


def sqlite_instant(value: datetime | None) -> str | None:
    """A UTC timestamp as SQLAlchemy stores it in SQLite: naive UTC text, always with microseconds."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # the usual case, 1 µs cheaper: the text without its "+00:00"
        return value.isoformat(" ", "microseconds")[:-6]
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def aware_instant(value: datetime | None) -> datetime | None:
    """A UTC timestamp for a ``timestamptz`` column: refused when naive."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


def _storable_text(value: str, length: int) -> str:
    """Text as its column can hold it: cut to ``length`` (0: any length), NUL characters replaced.

    PostgreSQL's writer casts to the column's type, which cuts over-long text silently; SQLite
    would keep it whole. Cutting here stores the same value on both backends.
    """
    text = value[:length] if length else value
    return text.replace(NUL, REPLACEMENT) if NUL in text else text


def _text_for(length: int) -> Processor:
    """The text check of :meth:`RowBinder.bind` as a processor of one value."""
    return lambda value: _storable_text(value, length) if isinstance(value, str) else value


def _then(first: Processor, second: Processor) -> Processor:
    return lambda value: second(first(value))


def _same(value: Any) -> Any:
    return value


class RowBinder:
    """Binds the values of ``columns`` of ``table`` for ``dialect``'s driver.

    Text columns the driver takes as they are (every one, with both writers' drivers) are checked
    inline rather than through a call per column: a usage row has fourteen, mostly ids and short
    names that need nothing done.
    """

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect, instant: Processor) -> None:
        self.columns = tuple(columns)
        processors: list[tuple[int, Processor]] = []
        texts: list[tuple[int, int]] = []  # (index, length; 0 when any length fits)
        for index, name in enumerate(self.columns):
            column_type = table.c[name].type
            if isinstance(column_type, JSON):
                processors.append((index, json_text))
            elif isinstance(column_type, UTCDateTime):
                processors.append((index, instant))
            else:
                process: Processor | None = column_type.dialect_impl(dialect).bind_processor(dialect)
                if isinstance(column_type, String):
                    if process is None:
                        texts.append((index, column_type.length or 0))
                        continue
                    process = _then(_text_for(column_type.length or 0), process)
                if process is not None:
                    processors.append((index, process))
        self._processors = tuple(processors)
        self._texts = tuple(texts)

    def processor(self, column: str) -> Processor:
        """The processor of one column (identity when the column needs none)."""
        index = self.columns.index(column)
        for i, length in self._texts:
            if i == index:
                return _text_for(length)
        return next((p for i, p in self._processors if i == index), _same)

    def bind(self, values: Sequence[Any]) -> list[Any]:
        """``values`` (in column order) as the driver takes them."""
        row = list(values)
        for index, length in self._texts:
            value = row[index]
            if isinstance(value, str) and (NUL in value or 0 < length < len(value)):
                row[index] = _storable_text(value, length)
        try:
            for index, process in self._processors:
                row[index] = process(row[index])
        except (ValueError, TypeError, OverflowError) as exc:
            raise RecordsRefused(f"{type(exc).__name__}: {exc}") from exc
        return row

    def bind_mapping(self, values: dict[str, Any]) -> list[Any]:
        """A dict of column values as the driver takes them."""
        return self.bind([values[c] for c in self.columns])


def quoted(names: Iterable[str]) -> str:
    """Column names quoted for SQL (``limit``, ``end`` and ``start`` are keywords)."""
    return ", ".join(f'"{n}"' for n in names)


def batch_settlements(events: Sequence[UsageEvent]) -> BatchSettlements:
    """The settlements the events carry, gathered; :class:`RecordsRefused` when one is unreadable."""
    try:
        return BatchSettlements.of(s for e in events for s in e.settlements)
    except (KeyError, TypeError, ValueError) as exc:  # e.g. a queue entry of another version
        raise RecordsRefused(f"unreadable settlement: {type(exc).__name__}: {exc}") from exc


# The columns of usage_dead_letters, in the order dead_letter_row gives them.
DEAD_LETTER_COLUMNS = ("id", "organisation_id", "request_id", "error", "event", "created_at")


def dead_letter_row(event: UsageEvent, error: str, now: datetime) -> list[Any]:
    """The usage_dead_letters values of a refused event (in :data:`DEAD_LETTER_COLUMNS` order).

    The event is kept in its queue form. Its id is the key, so a redelivered event is kept once;
    an event without a usable id (itself a reason to be refused) is keyed by its queue form's hash.
    """
    payload = event.to_json()
    key = event.id if isinstance(event.id, str) and event.id else hashlib.sha256(payload).hexdigest()[:32]
    organisation = event.organisation_id if isinstance(event.organisation_id, str) else None
    request = event.request_id if isinstance(event.request_id, str) else None
    return [key, organisation, request, error, payload.decode(), now]
