"""Schema migrations: one Alembic chain valid on SQLite and PostgreSQL.

``status`` reports current vs head, ``upgrade`` applies pending revisions, ``check`` compares the
live schema with the code's table definitions and reports drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from odock.db.schema import POSTGRESQL_ONLY_INDEXES, metadata
from odock.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaBehind(RuntimeError):
    """The database schema is older than this code and migrating on start is off."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database stands against the migration chain."""

    current: str | None
    head: str

    @property
    def is_current(self) -> bool:
        """True when no migration is pending."""
        return self.current == self.head


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the chain."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migration chain is empty")
    return head


async def status(engine: AsyncEngine) -> SchemaStatus:
    """Report the database's revision and the chain's head."""

    def _current(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    return SchemaStatus(current=current, head=head_revision())


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply every pending migration up to ``revision``, one migrating process at a time."""

    def _upgrade(conn: Connection) -> None:
        _lock_for_migration(conn)
        command.upgrade(alembic_config(conn), revision)

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


# Any fixed 64-bit number; it only has to be the same in every Odock process.
_POSTGRES_MIGRATION_LOCK = 0x0D0C_6D69_6772_6174


def _lock_for_migration(conn: Connection) -> None:
    # Replicas (or uvicorn workers) that migrate on start may run this at the same moment; without
    # a lock both see an empty schema and all but one fail on "table already exists". The lock is
    # held until the migration transaction ends; a waiter then finds the schema at head.
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_POSTGRES_MIGRATION_LOCK})")
    elif conn.dialect.name == "sqlite":
        # Take SQLite's write lock up front (the driver would otherwise run the DDL outside any
        # transaction); waiters queue on the connection's busy timeout. The commit ends it.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _compared(name: str | None, kind: str, _parents: object) -> bool:
    """Whether drift compares this object (not the PostgreSQL-only indexes migrations add)."""
    return not (kind == "index" and name in POSTGRESQL_ONLY_INDEXES)


async def drift(engine: AsyncEngine) -> list[Any]:
    """Differences between the live schema and the code's tables (empty = no drift)."""

    def _compare(conn: Connection) -> list[Any]:
        opts = {"compare_type": True, "include_name": _compared}
        context = MigrationContext.configure(conn, opts=opts)
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(_compare)


async def prepare_schema(engine: AsyncEngine, settings: Settings) -> None:
    """Migrate on start, or refuse to serve on a schema that is behind."""
    if settings.should_migrate_on_start:
        await upgrade(engine)
        return
    state = await status(engine)
    if not state.is_current:
        raise SchemaBehind(
            f"database schema is at {state.current or 'empty'}, code needs {state.head}: "
            "run 'odock migrate upgrade' or set ODOCK_MIGRATE_ON_START=true"
        )
