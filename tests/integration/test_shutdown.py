"""A shutdown that runs out of grace tells the truth: real ``odock serve`` processes stopped with SIGTERM.

With ``ODOCK_SHUTDOWN_GRACE_SECONDS=1`` and requests that need longer (a slow unary answer, a slow
stream from the mock provider), the server cancels them. The proofs: the unary client gets a JSON
503 ``server_shutting_down``, the stream ends with that error event and never ``[DONE]``, each
request has one usage record saying ``interrupted`` (503), its budget reservation was settled into
the ledger, and nothing was logged as an unhandled ASGI error or a generator closed while running.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from odock.budgets.windows import Period
from odock.settings import Settings
from odock.usage.tables import UsageRecord
from tests.conftest import SettingsFactory, Tenant
from tests.support.governance import (
    NANOS_PER_TOKEN,
    Ledger,
    bearer,
    chat_body,
    eventually,
    key_self,
    meter_entry,
    operator,
    start_served,
    stop_served,
)

STREAM_WORDS = 30  # at 100 ms a word: three seconds, three times the grace period


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Fresh settings on the active backend (made before the test's event loop runs)."""
    return make_settings()


async def reserved(client: httpx.AsyncClient, base_url: str, tenant: Tenant, budget_id: str) -> int:
    """What the tenant's budget holds reserved right now (in flight past the budget gate)."""
    return int(meter_entry(await key_self(client, base_url, tenant.secret), budget_id)["reserved"])


def error_event(line: str) -> dict[str, object]:
    """The error object of an SSE error event."""
    return dict(orjson.loads(line.removeprefix("data: "))["error"])


async def test_sigterm_past_the_grace_period_records_interrupted_requests(
    settings: Settings, tmp_path: Path
) -> None:
    """Requests cut by a shutdown past its grace get a JSON 503 and are recorded interrupted, settled."""
    async with operator(settings) as admin:
        slow_unary = await admin.tenant({"latency_ms": 60_000, "completion_tokens": 10})
        slow_stream = await admin.tenant({"chunk_delay_ms": 100, "completion_tokens": STREAM_WORDS})
        budgets = {
            tenant.key_id: (
                await admin.budgets.create_budget(
                    tenant.organisation_id, "budget", amount_nanos_usd=10**6 * NANOS_PER_TOKEN,
                    period=Period.DAILY,
                )
            ).id
            for tenant in (slow_unary, slow_stream)
        }  # fmt: skip
        served = await start_served("gateway", settings, tmp_path, ODOCK_SHUTDOWN_GRACE_SECONDS="1")
        try:
            async with httpx.AsyncClient(base_url=served.base_url, timeout=60) as client:
                unary = asyncio.ensure_future(
                    client.post(
                        "/v1/chat/completions",
                        json=chat_body(slow_unary.model),
                        headers=bearer(slow_unary.secret),
                    )
                )
                body = chat_body(slow_stream.model, stream=True, max_tokens=STREAM_WORDS)
                async with client.stream(
                    "POST", "/v1/chat/completions", json=body, headers=bearer(slow_stream.secret)
                ) as reply:
                    assert reply.status_code == 200
                    lines = reply.aiter_lines()
                    events = [line async for line in _until_content(lines)]
                    budget = budgets[slow_unary.key_id]
                    await eventually(
                        lambda: reserved(client, served.base_url, slow_unary, budget),
                        "the unary call in flight",
                    )
                    served.process.send_signal(signal.SIGTERM)
                    events += [line async for line in lines if line]
                answered = await unary
            assert await asyncio.wait_for(served.process.wait(), 60) == 0, served.output()
        finally:
            await stop_served([served])

        assert answered.status_code == 503, answered.text
        assert answered.headers["content-type"] == "application/json"
        assert answered.json()["error"]["code"] == "server_shutting_down"
        assert answered.headers["x-request-id"]
        assert "data: [DONE]" not in events
        assert error_event(events[-1])["code"] == "server_shutting_down"

        ledger = Ledger(admin.sessions)
        for tenant in (slow_unary, slow_stream):
            (record,) = await ledger.records(tenant.key_id, 1)
            assert (record.status, record.http_status, record.error_code) == (
                "interrupted", 503, "server_shutting_down",
            )  # fmt: skip
            (window,) = await ledger.windows(budgets[tenant.key_id])
            assert record.id in await ledger.settlements(window.key)
        async with admin.sessions() as session:
            stream_record = await session.scalar(
                select(UsageRecord).where(UsageRecord.api_key_id == slow_stream.key_id)
            )
        assert stream_record is not None
        assert 1 <= stream_record.completion_tokens < STREAM_WORDS
        assert stream_record.metadata_["usage_estimated"] is True
    output = served.output()
    assert "Exception in ASGI application" not in output
    assert "asynchronous generator is already running" not in output


async def _until_content(lines: object) -> object:
    """Yield SSE lines up to and including the first one that carries content."""
    async for line in lines:  # type: ignore[attr-defined]
        if not line:
            continue
        yield line
        if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
            return
