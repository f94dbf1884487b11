"""Logging setup: one JSON object per line, or a readable line for a terminal; never keys or prompts.

``ODOCK_LOG_FORMAT``: ``json`` (for a log shipper), ``console`` (``text`` is the same: one line a
record, its fields appended as ``key=value``), or ``auto`` (the default): ``console`` when stderr
is a terminal, ``json`` otherwise. Every record carries the fields of the request it was written
for (:mod:`odock.telemetry.context`: request id, organisation, route, trace and span ids) and the
structured fields its call passed as ``extra={"fields": {...}}`` (the request log's, see
:mod:`odock.telemetry.requestlog`).

What is never logged: API keys (only ids and hashes reach a log call), provider keys, passwords,
session cookies, Authorization headers, and prompts, completions or decoded payloads — those
only through :mod:`odock.telemetry.prompts` when ``ODOCK_LOG_PROMPTS`` is on. Libraries whose
records carry statement parameters or URLs (SQLAlchemy, the SQLite driver, httpx) are held at
``warning`` whatever the level.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

from odock.telemetry.context import context_fields

LogFormat = Literal["auto", "json", "console", "text"]
FIELDS = "fields"  # the record attribute of a call's structured fields: extra={"fields": {...}}
_CONTEXT = "odock_context"  # where the filter leaves the request's fields on a record
# Their records hold SQL parameters (SQLAlchemy's echo, the SQLite driver's debug) or full URLs.
_DATA_BEARING_LIBRARIES = ("sqlalchemy", "aiosqlite", "httpx", "httpcore")


class RequestContextFilter(logging.Filter):
    """Stamps each emitted record with the fields of the request being handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context (once per record, in the thread that emits it); never drops a record."""
        if not hasattr(record, _CONTEXT):
            setattr(record, _CONTEXT, context_fields())
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's request context, then its call's own fields (which win on a shared name)."""
    context = getattr(record, _CONTEXT, None)
    fields: dict[str, Any] = dict(context) if context is not None else context_fields()
    own = getattr(record, FIELDS, None)
    if isinstance(own, Mapping):
        fields.update(own)
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, then the context and fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """A readable line per record: ``ts LEVEL logger: message key=value …``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line (a traceback follows on its own lines)."""
        fields = record_fields(record).items()
        pairs = " ".join(f"{key}={_console_value(value)}" for key, value in fields if value is not None)
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if pairs:
            line = f"{line} {pairs}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _console_value(value: object) -> str:
    """A field's value as written after ``key=``: quoted when it has spaces, quotes or ``=``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if not text or any(char.isspace() or char in '"=' for char in text):
        return orjson.dumps(text).decode()
    return text


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    """The format to write: ``auto`` is ``console`` on a terminal and ``json`` otherwise."""
    if fmt == "auto":
        return "console" if _is_terminal(stream) else "json"
    return "json" if fmt == "json" else "console"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def configure_logging(level: str, fmt: LogFormat, stream: TextIO | None = None) -> None:
    """Configure the root logger once for the process (records go to ``stream``, default stderr)."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if resolve_format(fmt, out) == "json" else ConsoleFormatter())
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for name in _DATA_BEARING_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    # Python's warnings would otherwise reach stderr as bare text lines between the JSON ones.
    # Released first: a capture installed earlier may have been undone by whoever replaced
    # warnings.showwarning since (captureWarnings(True) alone would then do nothing).
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    # The demo banner is meant to be read by a person: print it without decoration.
    demo = logging.getLogger("odock.demo")
    plain = logging.StreamHandler(sys.stdout)
    plain.setFormatter(logging.Formatter("%(message)s"))
    demo.handlers[:] = [plain]
    demo.propagate = False
    demo.setLevel(logging.INFO)
