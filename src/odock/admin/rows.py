"""Row helpers under their former name (they moved to :mod:`odock.db.rows`, which services import)."""

from __future__ import annotations

from odock.db.rows import commit_or_conflict, get_row, label

__all__ = ["commit_or_conflict", "get_row", "label"]
