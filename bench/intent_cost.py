"""What a usage intent costs a request: building it, one journal line, and its retirement.

Run: ``.venv/bin/python -m bench.intent_cost [--requests N]``. Prints microseconds per request for
the journal append of a usage record alone (what every request paid before intents) and of an
intent plus its record, on a journal in a temporary directory (the page cache, no fsync, as in
the gateway). Numbers vary with the machine and its load; compare both lines of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from odock.usage.intent import UsageIntent
from odock.usage.journal import JournalQueue
from odock.usage.record import UsageEvent

PRICING = {"input": {"text_cost_per_1k_tokens": 0.002}, "output": {"text_cost_per_1k_tokens": 0.008}}
SETTLEMENT = {
    "window_key": "budget:0123456789abcdef0123456789:1:20260101",
    "meter_kind": "budget",
    "meter_id": "0123456789abcdef0123456789",
    "version": 1,
    "window_index": 20260101,
    "start": "2026-01-01T00:00:00+00:00",
    "end": "2026-01-02T00:00:00+00:00",
    "limit": 10**12,
    "thresholds": [50, 80],
}


def _intent(record_id: str, now: datetime) -> UsageIntent:
    """An intent shaped like a gateway's: a priced chat model and one budget line."""
    return UsageIntent(
        id=record_id,
        request_id=record_id,
        timestamp=now,
        endpoint="/v1/chat/completions",
        stream=True,
        organisation_id="0123456789abcdef0123456789",
        team_id=None,
        user_id=None,
        api_key_id="0123456789abcdef0123456789",
        model_id="0123456789abcdef0123456789",
        model="test-model",
        provider_id="0123456789abcdef0123456789",
        provider="mock",
        prompt_tokens=12,
        completion_tokens=4096,
        embeddings=False,
        pricing=PRICING,
        settlements=[{**SETTLEMENT, "request_key": record_id, "amount": 32_792_000}],
        metadata={"schema_version": "usage_metadata_v1", "route": "/v1/chat/completions", "method": "POST"},
    )


def _record(record_id: str, now: datetime) -> UsageEvent:
    return UsageEvent(
        id=record_id,
        request_id=record_id,
        timestamp=now,
        endpoint="/v1/chat/completions",
        status="success",
        http_status=200,
        prompt_tokens=12,
        completion_tokens=16,
        billing={"pricing": PRICING, "total_cost_nanos_usd": 152_000},
        metadata={"schema_version": "usage_metadata_v1", "route": "/v1/chat/completions"},
    )


async def _per_request_us(directory: Path, requests: int, *, with_intent: bool) -> float:
    """Microseconds per request of the journal work on the request path."""
    journal = JournalQueue(directory, segment_bytes=64 * 1024 * 1024)
    await journal.open()
    now = datetime.now(UTC)
    ids = [secrets.token_hex(16) for _ in range(requests)]
    records = [_record(i, now) for i in ids]
    started = time.perf_counter()
    for record_id, record in zip(ids, records, strict=True):
        if with_intent:
            journal.append_intent(_intent(record_id, now))
        journal.append(record)
    elapsed = time.perf_counter() - started
    await journal.close()
    return elapsed / requests * 1e6


def main() -> None:
    """Measure and print both costs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    # The journals are closed with their lines unstored on purpose: no warning about it.
    logging.getLogger("odock.usage.journal").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        without = asyncio.run(_per_request_us(base / "a", args.requests, with_intent=False))
        with_intent = asyncio.run(_per_request_us(base / "b", args.requests, with_intent=True))
    print(f"record only:         {without:6.2f} us/request")
    print(f"intent + record:     {with_intent:6.2f} us/request")
    print(f"cost of the intent:  {with_intent - without:6.2f} us/request")


if __name__ == "__main__":
    main()
