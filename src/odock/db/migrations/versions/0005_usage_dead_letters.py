"""usage dead letters

Usage records the database refuses on their own (a constraint, a value it cannot store) are kept
in ``usage_dead_letters`` with the database's reason instead of holding back every record after
them. No foreign key: a dead letter may name an organisation that is gone. The table is small
(it only grows when something is wrong), so it has no index beyond its primary key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_dead_letters",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_dead_letters")),
    )


def downgrade() -> None:
    op.drop_table("usage_dead_letters")
