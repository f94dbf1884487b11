"""The usage event's queue form survives values orjson cannot encode natively."""

from __future__ import annotations

from datetime import UTC, datetime

from odock.usage.record import UsageEvent


def test_an_integer_past_64_bits_is_kept_as_text_instead_of_losing_the_record() -> None:
    """An integer wider than 64 bits anywhere in an event encodes as its decimal text; the rest is intact."""
    event = UsageEvent(
        id="rec-1",
        request_id="rid-1",
        timestamp=datetime(2026, 12, 1, tzinfo=UTC),
        endpoint="/v1/chat/completions",
        status="error",
        http_status=429,
        prompt_tokens=5,
        metadata={"governance": {"tpm_estimate": 2**64 + 4, "shadow": [True, -(2**70)]}},
        provider_usage={"prompt_tokens": 5},
    )
    decoded = UsageEvent.from_json(event.to_json())
    assert decoded.metadata == {
        "governance": {"tpm_estimate": str(2**64 + 4), "shadow": [True, str(-(2**70))]}
    }
    assert (decoded.id, decoded.prompt_tokens, decoded.provider_usage) == ("rec-1", 5, {"prompt_tokens": 5})
    assert decoded.timestamp == event.timestamp


def test_an_ordinary_event_round_trips_unchanged() -> None:
    """Without wide integers the queue form decodes to an equal event."""
    event = UsageEvent("rec-2", "rid-2", datetime(2026, 12, 1, tzinfo=UTC), "/v1/embeddings", "success", 200)
    assert UsageEvent.from_json(event.to_json()) == event
