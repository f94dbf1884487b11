"""The usage event the pipeline produces for every request, its row form and its queue form.

The queue form is one JSON object (orjson) per event: it is what the usage journal writes as a
line and what the Redis stream carries, so a record survives the process that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import orjson

# Values orjson cannot encode natively (e.g. a Decimal in a provider's usage) are kept as text
# rather than failing the record; non-string keys are stringified the way json.dumps does.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
USAGE_METADATA_SCHEMA = "usage_metadata_v1"  # the version of a record's metadata layout


class UsageEventDecodeError(ValueError):
    """Bytes from a usage queue are not a usage event."""


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
    trace_id: str | None = None  # the request's trace (32 hex) when tracing sampled it
    bytes_in: int = 0
    bytes_out: int = 0
    tokens: dict[str, Any] = field(default_factory=dict)
    billing: dict[str, Any] = field(default_factory=dict)
    provider_usage: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    mcp_server_id: str | None = None
    mcp_server: str | None = None
    mcp_transport: str | None = None
    mcp_method: str | None = None
    mcp_tool: str | None = None
    mcp_tool_calls: int = 0
    # Budget/quota settlements this request makes (odock.budgets.ledger.Settlement as dicts):
    # written in the same transaction as the record, so they are as durable as it is.
    settlements: list[dict[str, Any]] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        """Column values for the usage_records table (a shallow copy: no deep-copying on the loop)."""
        row = {name: getattr(self, name) for name in _ROW_FIELDS}
        row["metadata_"] = row.pop("metadata")
        return row

    def to_json(self) -> bytes:
        """The queue form: one JSON object, no trailing newline."""
        try:
            return orjson.dumps(self, default=str, option=_JSON_OPTIONS)
        except orjson.JSONEncodeError:
            # Only an integer orjson cannot encode (past 64 bits, e.g. in a provider's usage) gets
            # here: it is kept as text, like other values orjson cannot encode, so the record lives.
            return orjson.dumps(_with_wide_integers_as_text(self), default=str, option=_JSON_OPTIONS)

    @classmethod
    def from_json(cls, data: bytes) -> UsageEvent:
        """Decode the queue form; fields this version does not know are ignored."""
        try:
            raw = orjson.loads(data)
            if not isinstance(raw, dict):
                raise UsageEventDecodeError("a usage event is a JSON object")
            if not raw.keys() <= _FIELD_NAMES:
                raw = {k: v for k, v in raw.items() if k in _FIELD_NAMES}
            raw["timestamp"] = datetime.fromisoformat(raw["timestamp"])
            return cls(**raw)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UsageEventDecodeError(f"not a usage event: {exc}") from exc


def _with_wide_integers_as_text(event: UsageEvent) -> dict[str, Any]:
    """The event's fields, with every integer outside orjson's 64-bit range as its decimal text."""
    return {f.name: _narrowed(getattr(event, f.name)) for f in fields(UsageEvent)}


def _narrowed(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if isinstance(value, dict):
        return {key: _narrowed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_narrowed(item) for item in value]
    return value


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_FIELD_NAMES = frozenset(f.name for f in fields(UsageEvent))
_ROW_FIELDS = tuple(f.name for f in fields(UsageEvent) if f.name != "settlements")
