"""budgets and quotas

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 21:39:35.879481
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "meter_reservations",
        sa.Column("request_key", sa.String(length=32), nullable=False),
        sa.Column("window_key", sa.String(length=120), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_key", "window_key", name=op.f("pk_meter_reservations")),
    )
    with op.batch_alter_table("meter_reservations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meter_reservations_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_meter_reservations_window_key"), ["window_key"], unique=False)

    op.create_table(
        "meter_settlements",
        sa.Column("request_key", sa.String(length=32), nullable=False),
        sa.Column("window_key", sa.String(length=120), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_key", "window_key", name=op.f("pk_meter_settlements")),
    )
    op.create_table(
        "meter_windows",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("meter_kind", sa.String(length=10), nullable=False),
        sa.Column("meter_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("window_index", sa.Integer(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column(
            "thresholds_crossed",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meter_windows")),
    )
    with op.batch_alter_table("meter_windows", schema=None) as batch_op:
        batch_op.create_index(
            "ix_meter_windows_meter", ["meter_kind", "meter_id", "window_index"], unique=False
        )

    op.create_table(
        "budgets",
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_nanos_usd", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "owner_type",
            sa.Enum("ORG", "TEAM", "USER", "APIKEY", name="ownertype", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("api_key_id", sa.String(length=32), nullable=True),
        sa.Column(
            "period",
            sa.Enum("DAILY", "WEEKLY", "MONTHLY", "QUARTERLY", name="period", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("rollover", sa.Boolean(), nullable=False),
        sa.Column(
            "thresholds",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_budgets_api_key_id_api_keys"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_budgets_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_budgets_team_id_teams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_budgets_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
    )
    with op.batch_alter_table("budgets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_budgets_organisation_id"), ["organisation_id"], unique=False)

    op.create_table(
        "quotas",
        sa.Column(
            "metric",
            sa.Enum(
                "REQUESTS",
                "TOKENS",
                "TOKENS_IN",
                "TOKENS_OUT",
                "ERRORS",
                "COST",
                name="quotametric",
                native_enum=False,
                length=12,
            ),
            nullable=False,
        ),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "owner_type",
            sa.Enum("ORG", "TEAM", "USER", "APIKEY", name="ownertype", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("api_key_id", sa.String(length=32), nullable=True),
        sa.Column(
            "period",
            sa.Enum("DAILY", "WEEKLY", "MONTHLY", "QUARTERLY", name="period", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("rollover", sa.Boolean(), nullable=False),
        sa.Column(
            "thresholds",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_quotas_api_key_id_api_keys"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_quotas_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_quotas_team_id_teams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_quotas_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotas")),
    )
    with op.batch_alter_table("quotas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quotas_organisation_id"), ["organisation_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("quotas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quotas_organisation_id"))

    op.drop_table("quotas")
    with op.batch_alter_table("budgets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budgets_organisation_id"))

    op.drop_table("budgets")
    with op.batch_alter_table("meter_windows", schema=None) as batch_op:
        batch_op.drop_index("ix_meter_windows_meter")

    op.drop_table("meter_windows")
    op.drop_table("meter_settlements")
    with op.batch_alter_table("meter_reservations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meter_reservations_window_key"))
        batch_op.drop_index(batch_op.f("ix_meter_reservations_expires_at"))

    op.drop_table("meter_reservations")
