"""api key search trigram indexes (PostgreSQL)

The key search ``q`` matches a substring of the name or the masked preview
(``lower(column) LIKE '%q%'``, :mod:`odock.web.api.search`), which no B-tree serves: at 100,000
keys it read the whole table. On PostgreSQL, GIN trigram indexes on ``lower(name)`` and
``lower(key_preview)`` (extension ``pg_trgm``) serve it. Creating the extension needs the CREATE
privilege on the database (``pg_trgm`` is a trusted extension since PostgreSQL 13) or a superuser;
when it cannot be created the upgrade carries on without the indexes (search still works, by
scanning) and logs the statements an administrator can run later. SQLite: nothing to do.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 03:00:00.000000
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("odock.db.migrate")

# (index, column): the columns the key search matches with a substring.
TRIGRAM_INDEXES = (("ix_api_keys_name_trgm", "name"), ("ix_api_keys_key_preview_trgm", "key_preview"))


def _create_index(name: str, column: str) -> str:
    return f"CREATE INDEX IF NOT EXISTS {name} ON api_keys USING gin (lower({column}) gin_trgm_ops)"


def _has_trigram_extension(bind: sa.Connection) -> bool:
    """Whether ``pg_trgm`` is installed in this database, installing it when allowed."""
    try:
        with bind.begin_nested():  # a refusal must not abort the migration's transaction
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        statements = "; ".join(
            ["CREATE EXTENSION pg_trgm", *(_create_index(n, c) for n, c in TRIGRAM_INDEXES)]
        )
        log.warning(
            "pg_trgm could not be created (%s): API key search will scan the table. "
            "As a database owner or superuser, run: %s",
            str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
            statements,
        )
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _has_trigram_extension(bind):
        return
    for name, column in TRIGRAM_INDEXES:
        op.execute(_create_index(name, column))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _ in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    # pg_trgm stays: other schemas of the database may use it.
