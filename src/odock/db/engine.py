"""The async engine and session factory, configured per backend."""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

# Set by the request pipeline while a request is being handled, so that statements issued on
# behalf of a request can be told apart from background work (used by the hot-path SQL audit).
request_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "odock_request_scope", default=None
)


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """Create the async engine for ``url`` (SQLite with WAL and foreign keys, or PostgreSQL)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    engine = create_async_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(
    engine: AsyncEngine, session_class: type[Session] = Session
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit, built on ``session_class``.

    The process's own sessions audit configuration changes: they come from
    ``odock.audit.recorder.audited_session_factory``, which passes its session class here (the
    database layer does not know about the audit log).
    """
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=session_class)
