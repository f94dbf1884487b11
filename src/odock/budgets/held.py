"""What a request holds while it runs: one reserved line per budget or quota window it matches."""

from __future__ import annotations

from dataclasses import dataclass

from odock.budgets.specs import MeterSpec
from odock.budgets.windows import Window


@dataclass(slots=True)  # per request and meter, never changed: not frozen (see odock.limits.decision)
class HeldLine:
    """One reserved counter line of a request."""

    spec: MeterSpec
    window: Window
    key: str
    amount: int
    limit: int
