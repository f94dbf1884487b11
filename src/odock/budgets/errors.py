"""Rejections raised by budget and quota enforcement (to be merged into :mod:`odock.errors`).

Where each class hangs in the one exception tree::

    OdockError
    └── DependencyUnavailable              503 dependency_unavailable
        └── MeterStoreUnavailable          503 budget_enforcement_unavailable

``budget_exceeded`` (402) and ``quota_exceeded`` (429) belong here too once the pipeline stage
raises them.
"""

from __future__ import annotations

from odock.errors import DependencyUnavailable


class MeterStoreUnavailable(DependencyUnavailable):
    """The counter store could not be reached, so budgets and quotas cannot be enforced."""

    code = "budget_enforcement_unavailable"
    default_message = "budget and quota enforcement is unavailable"
