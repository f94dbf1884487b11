"""mcp gateway

The MCP gateway (issue #20): ``mcp_servers`` (an organisation's upstream MCP servers, slug
unique per organisation; secret values stored as envelopes), ``api_key_mcp_access`` (per-key
server grants), ``api_key_mcp_tool_grants`` (per-key tool grants: deny by default once a key has
one for a server), ``mcp_stdio_commands`` (executables SUPER_ADMIN added to the STDIO
allowlist), and the MCP columns of ``usage_records`` (nullable, or 0: existing rows are model
calls) with a partial index for a server's usage (rows of MCP calls only, so model calls'
inserts do not maintain it).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 17:00:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "mcp_servers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("transport", sa.String(length=20), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2000), nullable=True),
        sa.Column("stdio_command", sa.String(length=500), nullable=True),
        sa.Column("stdio_args", _json(), nullable=False),
        sa.Column("stdio_env", _json(), nullable=False),
        sa.Column("auth_type", sa.String(length=20), nullable=False),
        sa.Column("auth_config", _json(), nullable=False),
        sa.Column("headers", _json(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("oauth_required", sa.Boolean(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("api_key_id", sa.String(length=32), nullable=True),
        sa.Column("allowed_tools", _json(), nullable=False),
        sa.Column("blocked_tools", _json(), nullable=False),
        sa.Column("semantic_filter", _json(), nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("pricing", _json(), nullable=False),
        sa.Column("policies", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organisation_id", "slug"),
    )
    op.create_index("ix_mcp_servers_team_id", "mcp_servers", ["team_id"], unique=False)
    op.create_index("ix_mcp_servers_api_key_id", "mcp_servers", ["api_key_id"], unique=False)
    op.create_table(
        "api_key_mcp_access",
        sa.Column("api_key_id", sa.String(length=32), nullable=False),
        sa.Column("mcp_server_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mcp_server_id"], ["mcp_servers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("api_key_id", "mcp_server_id"),
    )
    op.create_index(
        "ix_api_key_mcp_access_mcp_server_id", "api_key_mcp_access", ["mcp_server_id"], unique=False
    )
    op.create_table(
        "api_key_mcp_tool_grants",
        sa.Column("api_key_id", sa.String(length=32), nullable=False),
        sa.Column("mcp_server_id", sa.String(length=32), nullable=False),
        sa.Column("tool", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mcp_server_id"], ["mcp_servers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("api_key_id", "mcp_server_id", "tool"),
    )
    op.create_index(
        "ix_api_key_mcp_tool_grants_mcp_server_id", "api_key_mcp_tool_grants", ["mcp_server_id"], unique=False
    )
    op.create_table(
        "mcp_stdio_commands",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("command", sa.String(length=500), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("added_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("command"),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mcp_server_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("mcp_server", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("mcp_transport", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("mcp_method", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("mcp_tool", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("mcp_tool_calls", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    # Partial: model calls (no server) do not pay for an index they never use.
    op.create_index(
        "ix_usage_records_mcp_server_ts",
        "usage_records",
        ["mcp_server_id", "timestamp"],
        unique=False,
        sqlite_where=sa.text("mcp_server_id IS NOT NULL"),
        postgresql_where=sa.text("mcp_server_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_usage_records_mcp_server_ts", table_name="usage_records")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        for column in (
            "mcp_tool_calls",
            "mcp_tool",
            "mcp_method",
            "mcp_transport",
            "mcp_server",
            "mcp_server_id",
        ):
            batch_op.drop_column(column)
    op.drop_table("mcp_stdio_commands")
    op.drop_index("ix_api_key_mcp_tool_grants_mcp_server_id", table_name="api_key_mcp_tool_grants")
    op.drop_table("api_key_mcp_tool_grants")
    op.drop_index("ix_api_key_mcp_access_mcp_server_id", table_name="api_key_mcp_access")
    op.drop_table("api_key_mcp_access")
    op.drop_index("ix_mcp_servers_api_key_id", table_name="mcp_servers")
    op.drop_index("ix_mcp_servers_team_id", table_name="mcp_servers")
    op.drop_table("mcp_servers")
