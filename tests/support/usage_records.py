"""Usage records for control-plane tests: deterministic rows written straight into the table.

Analytics, paging and invoices are checked against values the tests compute themselves from
the rows they wrote, so the rows are plain dicts of column values (``metadata`` is the column
name of ``UsageRecord.metadata_``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert

from odock.usage.tables import UsageRecord

BASE_TIME = datetime(2026, 3, 1, tzinfo=UTC)


def usage_row(organisation_id: str, **values: Any) -> dict[str, Any]:
    """A usage record's column values (a success on ``gpt-4o`` unless ``values`` say otherwise)."""
    prompt = values.pop("prompt_tokens", 10)
    completion = values.pop("completion_tokens", 5)
    row: dict[str, Any] = {
        "id": secrets.token_hex(16),
        "request_id": secrets.token_hex(16),
        "timestamp": BASE_TIME,
        "organisation_id": organisation_id,
        "team_id": None,
        "user_id": None,
        "api_key_id": "key-org",
        "model_id": "model-gpt-4o",
        "model": "gpt-4o",
        "provider_id": "provider-openai",
        "provider": "openai",
        "endpoint": "/v1/chat/completions",
        "stream": False,
        "status": "success",
        "http_status": 200,
        "error_code": None,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": prompt + completion,
        "billable_tokens": prompt + completion,
        "total_cost_nanos_usd": 1000,
        "latency_ms": 100.0,
        "time_to_first_token_ms": None,
        "upstream_latency_ms": 90.0,
        "gateway_overhead_ms": 2.0,
        "provider_request_id": "req_provider",
        "trace_id": None,
        "tokens": {"prompt_tokens": prompt, "completion_tokens": completion},
        "billing": {},
        "provider_usage": {},
        "routing": {},
        "metadata": {"schema_version": "usage_metadata_v1"},
        "bytes_in": 100,
        "bytes_out": 200,
    }
    row.update(values)
    if "billing" not in values and row["total_cost_nanos_usd"] is not None:
        row["billing"] = {"input_cost_nanos_usd": row["total_cost_nanos_usd"]}
    return row


def spread(organisation_id: str, count: int, step: timedelta, **values: Any) -> list[dict[str, Any]]:
    """``count`` rows ``step`` apart from :data:`BASE_TIME` (plus ``values`` on each)."""
    return [usage_row(organisation_id, timestamp=BASE_TIME + i * step, **values) for i in range(count)]


def seed(gateway: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` into usage_records through the gateway's own engine."""

    async def write() -> None:
        async with gateway.runtime.sessions() as session:
            await session.execute(insert(cast(Table, UsageRecord.__table__)), list(rows))
            await session.commit()

    gateway.run(write())
