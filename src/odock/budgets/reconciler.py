"""The reconciliation worker: no reservation outlives its request (spec §5.4).

A reservation still held after ``budget_reservation_ttl_seconds`` belongs to a request whose
gateway died (or could not reach the store) between reserve and settle. Every replica runs
this worker; the store's operations are idempotent, so replicas racing on the same request do
no harm. For each stale reservation: if the ledger holds the request's settlement (its usage
record was written, possibly replayed from a crashed process's journal), settle the counters
with those amounts; otherwise release the reservation.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.ledger import settled_amounts
from odock.budgets.meters import MeterStore
from odock.errors import MeterStoreUnavailable

log = logging.getLogger(__name__)


class BudgetReconciler:
    """Settles or releases stale reservations, periodically."""

    def __init__(
        self, store: MeterStore, sessions: async_sessionmaker[AsyncSession], interval: float
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.settled = 0
        self.released = 0

    async def run_once(self, batch: int = 500) -> int:
        """Reconcile up to ``batch`` stale reservations; return how many were handled."""
        stale = await self._store.expired(limit=batch)
        for request_id in stale:
            amounts = await settled_amounts(self._sessions, request_id)
            if amounts is not None:
                await self._store.settle(request_id, amounts)
                self.settled += 1
            else:
                await self._store.release(request_id)
                self.released += 1
        if stale:
            log.info("reconciled %d stale budget reservations", len(stale))
        return len(stale)

    async def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="odock-budget-reconciler")

    async def stop(self) -> None:
        """Stop the background loop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
            except (MeterStoreUnavailable, SQLAlchemyError, OSError) as exc:
                log.warning("budget reconciliation failed (%s); retrying next round", exc)
