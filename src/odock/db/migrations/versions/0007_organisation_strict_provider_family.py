"""organisation strict provider family

``organisations.strict_provider_family``: when on, a native endpoint (``/v1/chat/completions``,
``/v1/messages``, …) refuses with 400 ``provider_not_allowed`` a model whose provider speaks
another API family, instead of translating (issue #18). Existing organisations get the default,
off, through the server default, so the column is added NOT NULL in one step on both backends
(SQLite accepts ``ADD COLUMN … NOT NULL`` when the column has a default).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-14 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "organisations",
        sa.Column("strict_provider_family", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("strict_provider_family")
