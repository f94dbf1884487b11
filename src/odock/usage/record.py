"""The usage event the pipeline produces for every request, and its row form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class UsageEvent:
    """One request's usage, ready to be written as a :class:`UsageRecord` row."""

    id: str
    request_id: str
    timestamp: datetime
    endpoint: str
    status: str  # success | error | client_disconnected
    http_status: int
    stream: bool = False
    organisation_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model_id: str | None = None
    model: str | None = None
    provider_id: str | None = None
    provider: str | None = None
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    billable_tokens: int = 0
    total_cost_nanos_usd: int | None = None
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    upstream_latency_ms: float | None = None
    gateway_overhead_ms: float = 0.0
    provider_request_id: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    tokens: dict[str, Any] = field(default_factory=dict)
    billing: dict[str, Any] = field(default_factory=dict)
    provider_usage: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """Column values for the usage_records table."""
        row = asdict(self)
        row["metadata_"] = row.pop("metadata")
        return row
