"""Imports every table module so ``Base.metadata`` describes the whole schema (Alembic, tests)."""

from __future__ import annotations

from odock.audit import tables as _audit  # noqa: F401
from odock.budgets import tables as _budgets  # noqa: F401
from odock.db.base import Base
from odock.identity import tables as _identity  # noqa: F401
from odock.keys import tables as _keys  # noqa: F401
from odock.mcp import tables as _mcp  # noqa: F401
from odock.providers import tables as _providers  # noqa: F401
from odock.tenancy import tables as _tenancy  # noqa: F401
from odock.usage import tables as _usage  # noqa: F401

metadata = Base.metadata

POSTGRESQL_ONLY_INDEXES = frozenset({"ix_api_keys_name_trgm", "ix_api_keys_key_preview_trgm"})
"""Indexes migrations create on PostgreSQL alone (GIN trigram indexes for the key search, 0006).

The table definitions cannot declare an index for one dialect only, so drift checks skip these.
"""
