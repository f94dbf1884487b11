"""Threshold events: a budget or quota window reaching one of its percentages (e.g. 50/80/100).

Each crossing is reported exactly once per window (the ledger remembers which were reported, in
the same transaction that settled the usage): as a log line, as a count, and — when
``budget_threshold_webhook_url`` is set — as a JSON POST, sent off the request path with a few
retries.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson

from odock.budgets.ledger import ThresholdCrossing

log = logging.getLogger(__name__)

WEBHOOK_ATTEMPTS = 3


class ThresholdNotifier:
    """Logs, counts and (optionally) posts threshold crossings."""

    def __init__(self, webhook_url: str | None, session: aiohttp.ClientSession | None) -> None:
        self._url = webhook_url
        self._session = session
        self._queue: asyncio.Queue[ThresholdCrossing] = asyncio.Queue(maxsize=10_000)
        self._task: asyncio.Task[None] | None = None
        self.crossed = 0
        self.delivered = 0

    def __call__(self, crossings: list[ThresholdCrossing]) -> None:
        """Report crossings (called by the usage writer after its commit)."""
        for crossing in crossings:
            self.crossed += 1
            log.warning(
                "%s %s reached %d%% of its window limit (%d of %d) [%s]",
                crossing.meter_kind, crossing.meter_id, crossing.threshold, crossing.used, crossing.limit,
                crossing.window_key,
            )  # fmt: skip
            if self._url and not self._queue.full():
                self._queue.put_nowait(crossing)

    async def start(self) -> None:
        """Start delivering webhooks (when configured)."""
        if self._url and self._session is not None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._deliver(), name="odock-threshold-webhooks")

    async def stop(self) -> None:
        """Stop delivering."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _deliver(self) -> None:
        assert self._url is not None
        assert self._session is not None
        while True:
            crossing = await self._queue.get()
            body = orjson.dumps(crossing.to_dict())
            for attempt in range(WEBHOOK_ATTEMPTS):
                try:
                    async with self._session.post(
                        self._url, data=body, headers={"content-type": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as response:  # fmt: skip
                        if response.status < 500:
                            self.delivered += response.status < 300
                            break
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("threshold webhook failed (%s), attempt %d", exc, attempt + 1)
                await asyncio.sleep(2**attempt)
