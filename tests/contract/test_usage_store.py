"""Contract of the usage store, over SQLite and a fresh PostgreSQL database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from odock.db.engine import session_factory
from odock.usage.bulk import RecordsRefused
from odock.usage.record import UsageEvent
from odock.usage.store import UsageStore
from tests.support import services


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UsageStore]:
    """A migrated, empty database of the parametrized kind behind a UsageStore."""
    async with services.migrated_engine(request.param, "odock_test_usage_store", tmp_path) as engine:
        store = UsageStore(session_factory(engine))
        yield store
        await store.close()


def event(**fields: Any) -> UsageEvent:
    """A usage event with unique ids; ``fields`` override the defaults."""
    values: dict[str, Any] = {
        "id": secrets.token_hex(16),
        "request_id": "req-" + secrets.token_hex(4),
        "timestamp": datetime.now(UTC),
        "endpoint": "/v1/chat/completions",
        "status": "success",
        "http_status": 200,
    }
    values.update(fields)
    return UsageEvent(**values)


async def only_record(store: UsageStore, request_id: str) -> Any:
    """The single stored record of ``request_id``."""
    records = await store.by_request_id(request_id)
    assert len(records) == 1
    return records[0]


async def test_insert_many_is_idempotent_by_id(store: UsageStore) -> None:
    """Re-inserting a batch stores nothing twice and reports only the rows that were new."""
    batch = [event() for _ in range(3)]
    assert await store.insert_many(batch) == 3
    newcomer = event()
    assert await store.insert_many([*batch, newcomer]) == 1
    assert await store.insert_many(batch) == 0
    assert await store.count() == 4


async def test_insert_many_keeps_the_first_version_of_an_id(store: UsageStore) -> None:
    """A replayed event with an id already stored does not overwrite the stored row."""
    first = event(prompt_tokens=1)
    await store.insert_many([first])
    replay = event(id=first.id, request_id=first.request_id, prompt_tokens=999)
    assert await store.insert_many([replay]) == 0
    assert (await only_record(store, first.request_id)).prompt_tokens == 1


async def test_empty_batch_is_a_no_op(store: UsageStore) -> None:
    """Inserting nothing writes nothing and returns zero."""
    assert await store.insert_many([]) == 0
    assert await store.count() == 0


async def test_timestamps_come_back_timezone_aware_utc(store: UsageStore) -> None:
    """A timestamp given in any offset is stored as the same instant and read back in UTC."""
    paris = timezone(timedelta(hours=2))
    moment = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=paris)
    stored = event(timestamp=moment)
    await store.insert_many([stored])
    record = await only_record(store, stored.request_id)
    assert record.timestamp == moment
    assert record.timestamp.utcoffset() == timedelta(0)
    assert record.timestamp.hour == 12


async def test_naive_timestamps_are_refused(store: UsageStore) -> None:
    """A naive timestamp is an error, never silently taken as local time."""
    with pytest.raises(RecordsRefused, match="naive datetime"):
        await store.insert_many([event(timestamp=datetime(2025, 1, 1))])  # naive on purpose


async def test_json_columns_round_trip(store: UsageStore) -> None:
    """Nested JSON (unicode, nulls, booleans, lists, floats, big integers) comes back as written."""
    billing = {
        "total_cost_nanos_usd": 2**53 + 1,
        "total_cost_usd": "9007199.254740993",
        "pricing": {"input": {"text_cost_per_1k_tokens": 0.002}, "cached_input_discount_percent": 50},
    }
    metadata = {"schema_version": "usage_metadata_v1", "user_agent": "naïve-client ✓ 漢字", "error": None}
    provider_usage = {"prompt_tokens_details": {"cached_tokens": 0}, "flags": [True, None], "ratio": 0.125}
    tokens = {"output_details": {"reasoning": 7}, "units": []}
    routing = {"attempts": [{"provider": "a", "outcome": "failed"}, {"provider": "b", "outcome": "success"}]}
    stored = event(
        billing=billing, metadata=metadata, provider_usage=provider_usage, tokens=tokens, routing=routing
    )
    await store.insert_many([stored])
    record = await only_record(store, stored.request_id)
    assert record.billing == billing
    assert record.metadata_ == metadata
    assert record.provider_usage == provider_usage
    assert record.tokens == tokens
    assert record.routing == routing


async def test_an_event_is_stored_as_its_queue_form_would_be(store: UsageStore) -> None:
    """Values JSON cannot hold and non-string keys are stored as the queue form encodes them.

    The embedded writer is handed the events themselves, the production writer decodes them from
    the queue: both must store the same record.
    """
    provider_usage = {"cost": Decimal("0.0125"), 7: "seven", "nested": {2: [Decimal("1.5")]}}
    handed = event(provider_usage=provider_usage)
    decoded = UsageEvent.from_json(event(provider_usage=provider_usage).to_json())
    await store.insert_many([handed, decoded])
    as_handed = await only_record(store, handed.request_id)
    as_decoded = await only_record(store, decoded.request_id)
    assert as_handed.provider_usage == as_decoded.provider_usage == decoded.provider_usage
    assert as_handed.provider_usage == {"cost": "0.0125", "7": "seven", "nested": {"2": ["1.5"]}}


async def test_nul_characters_are_stored_as_replacement_characters(store: UsageStore) -> None:
    """A NUL (which PostgreSQL refuses in text and JSON) in any text or JSON value is stored as U+FFFD.

    A client can send one as the model name (valid JSON: "\\u0000"); refusing it would fail the
    whole batch on every retry and stop usage recording for everyone.
    """
    clean = event()
    dirty = event(
        model="gpt\x00x",
        error_code="bad\x00",
        metadata={"error_message": "model 'gpt\x00x' not found", "k\x00": ["\x00", 1], "raw": "\\u0000"},
        provider_usage={7: "seven\x00"},
    )
    await store.insert_many([clean, dirty])
    record = await only_record(store, dirty.request_id)
    assert (record.model, record.error_code) == ("gpt\ufffdx", "bad\ufffd")
    assert record.metadata_ == {
        "error_message": "model 'gpt\ufffdx' not found",
        "k\ufffd": ["\ufffd", 1],
        "raw": "\\u0000",  # a literal backslash-u0000 is text, not a NUL: unchanged
    }
    assert record.provider_usage == {"7": "seven\ufffd"}
    assert await store.count() == 2


async def test_text_longer_than_its_column_is_cut_to_the_column_on_both_backends(store: UsageStore) -> None:
    """A model name past the column's 200 characters is stored as its first 200 (not refused, not whole)."""
    long = event(model="m" * 150 + "é" * 100)
    await store.insert_many([long])
    assert (await only_record(store, long.request_id)).model == "m" * 150 + "é" * 50


async def test_money_is_an_exact_integer_beyond_32_bits(store: UsageStore) -> None:
    """Costs and byte counts past 2^31 (and near 2^63) are stored and read back exactly."""
    costs = [2**31, 2**40 + 7, 2**62 + 12345, None]
    events = [event(total_cost_nanos_usd=cost, bytes_out=2**33 + 1) for cost in costs]
    await store.insert_many(events)
    for stored, cost in zip(events, costs, strict=True):
        record = await only_record(store, stored.request_id)
        assert record.total_cost_nanos_usd == cost
        assert record.total_cost_nanos_usd is None or isinstance(record.total_cost_nanos_usd, int)
        assert record.bytes_out == 2**33 + 1


async def test_every_event_field_is_stored(store: UsageStore) -> None:
    """Each field of the event lands in the column of the same name."""
    stored = event(
        stream=True,
        organisation_id="o" * 32,
        team_id="t",
        user_id="u",
        api_key_id="k",
        model_id="m",
        model="gpt-x",
        provider_id="p",
        provider="openai",
        error_code="upstream_timeout",
        prompt_tokens=15,
        completion_tokens=644,
        cached_tokens=3,
        reasoning_tokens=5,
        total_tokens=659,
        billable_tokens=659,
        latency_ms=12.5,
        time_to_first_token_ms=3.25,
        upstream_latency_ms=10.0,
        gateway_overhead_ms=0.75,
        provider_request_id="prov-1",
        bytes_in=100,
    )
    await store.insert_many([stored])
    record = await only_record(store, stored.request_id)
    row = stored.to_row()
    for name, value in row.items():
        assert getattr(record, name) == value, name


async def test_duplicate_ids_within_one_batch_store_once(store: UsageStore) -> None:
    """A batch carrying the same event twice (an at-least-once redelivery) stores it once."""
    twice = event()
    assert await store.insert_many([twice, twice, event(id=twice.id, request_id=twice.request_id)]) == 1
    assert await store.count() == 1


async def test_a_batch_past_the_statement_parameter_limit_is_stored_whole(store: UsageStore) -> None:
    """2,000 rows (over 70,000 bound parameters) are all stored by one call."""
    batch = [event() for _ in range(2000)]
    assert await store.insert_many(batch) == 2000
    assert await store.count() == 2000
