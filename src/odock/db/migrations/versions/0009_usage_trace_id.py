"""usage trace id

``usage_records.trace_id``: the W3C trace id (32 hex) of a request that tracing sampled, so the
console can link a usage record to its trace (docs/observability.md#traces). Nullable: existing
records, and every record made with tracing off or not sampled, have none. No index: the trace is
read from its record, never searched by.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-20 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("trace_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("trace_id")
