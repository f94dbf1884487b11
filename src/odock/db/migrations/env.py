"""Alembic environment: runs on a connection handed in by odock.db.migrate (sync, via run_sync)."""

from __future__ import annotations

from alembic import context

from odock.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite needs batch mode to alter tables
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
