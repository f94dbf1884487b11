"""usage query indexes

The control plane lists, filters and aggregates usage records per organisation: keyset pages on
(organisation_id, timestamp, id) replace the (organisation_id, timestamp) index, and the model,
team and user filters get their own (organisation_id, column, timestamp) indexes. On PostgreSQL
the request_id index is rebuilt with text_pattern_ops, so the request-id prefix search
(``LIKE 'abc%'``) uses it under any collation (SQLite's GLOB uses the plain index).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_records_org_ts_id", ["organisation_id", "timestamp", "id"], unique=False
        )
        batch_op.create_index(
            "ix_usage_records_org_model_ts", ["organisation_id", "model", "timestamp"], unique=False
        )
        batch_op.create_index(
            "ix_usage_records_org_team_ts", ["organisation_id", "team_id", "timestamp"], unique=False
        )
        batch_op.create_index(
            "ix_usage_records_org_user_ts", ["organisation_id", "user_id", "timestamp"], unique=False
        )
        batch_op.drop_index("ix_usage_records_org_ts")
    if op.get_bind().dialect.name == "postgresql":
        # text_pattern_ops serves `LIKE 'prefix%'` under any collation, and equality as before.
        op.drop_index("ix_usage_records_request_id", table_name="usage_records")
        op.create_index(
            "ix_usage_records_request_id",
            "usage_records",
            ["request_id"],
            unique=False,
            postgresql_ops={"request_id": "text_pattern_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_usage_records_request_id", table_name="usage_records")
        op.create_index("ix_usage_records_request_id", "usage_records", ["request_id"], unique=False)
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index("ix_usage_records_org_ts", ["organisation_id", "timestamp"], unique=False)
        batch_op.drop_index("ix_usage_records_org_user_ts")
        batch_op.drop_index("ix_usage_records_org_team_ts")
        batch_op.drop_index("ix_usage_records_org_model_ts")
        batch_op.drop_index("ix_usage_records_org_ts_id")
