"""The request log line: which calls it writes at which level, and what it says (never the key)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from odock.errors import OdockError, RpmExceeded, Unauthorized, UpstreamTimeout
from odock.llm.upstream import Usage
from odock.pipeline.exchange import Exchange
from odock.telemetry import requestlog
from odock.telemetry.requestlog import log_request
from tests.support.stages import exchange, principal, resolved_model

SECRET = "odk-live-request-log-secret"


class Lines(logging.Handler):
    """Keeps the request log's records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep it."""
        self.records.append(record)

    def fields(self) -> list[dict[str, object]]:
        """Each record's structured fields."""
        return [dict(getattr(record, "fields")) for record in self.records]  # noqa: B009


@pytest.fixture
def lines() -> Iterator[Lines]:
    """The ``odock.requests`` logger at INFO, captured."""
    logger = logging.getLogger("odock.requests")
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def served() -> Exchange:
    """A finished streamed chat completion of key ``key1`` in ``org1`` with 12 tokens in, 5 out."""
    ex = exchange(
        headers={"authorization": f"Bearer {SECRET}"},
        principal=principal(),
        model=resolved_model(),
        stream=True,
        usage=Usage(prompt_tokens=12, completion_tokens=5, total_tokens=17),
    )
    ex.timings.finished = ex.timings.received + 0.25
    return ex


def failed(error: OdockError) -> Exchange:
    """A finished exchange that ended with ``error``."""
    ex = served()
    ex.fail(error)
    return ex


def test_a_success_is_written_in_all_mode_with_every_field(lines: Lines) -> None:
    """``all``: a served call is one INFO line naming key id, model, provider, decision, time and tokens."""
    ex = served()
    log_request(ex, "all")
    (record,) = lines.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == "/v1/chat/completions 200 allow"
    assert lines.fields() == [
        {
            "event": "request",
            "request_id": ex.request_id,
            "organisation_id": "org1",
            "key_id": "key1",
            "route": "/v1/chat/completions",
            "endpoint": "chat",
            "model": "m",
            "provider": "mock",
            "status": 200,
            "decision": "allow",
            "stream": True,
            "duration_ms": 250.0,
            "tokens_in": 12,
            "tokens_out": 5,
        }
    ]
    assert SECRET not in str(record.__dict__)


def test_errors_mode_skips_successes_and_writes_refusals_at_info_and_failures_at_warning(
    lines: Lines,
) -> None:
    """``errors`` (the default): nothing for a 200, INFO for a 429, WARNING for a 504."""
    log_request(served(), "errors")
    log_request(failed(RpmExceeded()), "errors")
    log_request(failed(UpstreamTimeout()), "errors")
    assert [(r.levelno, r.getMessage()) for r in lines.records] == [
        (logging.INFO, "/v1/chat/completions 429 rpm_exceeded"),
        (logging.WARNING, "/v1/chat/completions 504 upstream_timeout"),
    ]


def test_an_unauthenticated_refusal_names_no_key_and_the_model_asked_for(lines: Lines) -> None:
    """A bad key: 401 ``unauthorized``, no organisation or key id, the requested model name, no tokens."""
    ex = exchange(headers={"authorization": f"Bearer {SECRET}"}, payload={"model": "gpt-x", "messages": []})
    ex.fail(Unauthorized())
    log_request(ex, "errors")
    (fields,) = lines.fields()
    assert (fields["status"], fields["decision"], fields["model"]) == (401, "unauthorized", "gpt-x")
    assert (fields["organisation_id"], fields["key_id"], fields["tokens_in"]) == (None, None, None)
    assert SECRET not in str(lines.records[0].__dict__)


def test_a_client_that_left_is_logged_as_client_disconnected(lines: Lines) -> None:
    """A 499 without an error says why in ``decision``."""
    ex = served()
    ex.disconnected()
    log_request(ex, "errors")
    assert lines.fields()[0]["decision"] == "client_disconnected"


def test_off_writes_nothing_even_for_a_server_error(lines: Lines) -> None:
    """``off``: not even a 5xx."""
    log_request(failed(UpstreamTimeout()), "off")
    assert lines.records == []


def test_a_line_below_the_level_costs_no_field_building(
    lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At WARNING, a 4xx line is skipped before its fields are built (the hot path pays a level check)."""
    logging.getLogger("odock.requests").setLevel(logging.WARNING)

    def never(ex: Exchange) -> dict[str, object]:
        raise AssertionError("fields built for a line that is not written")

    monkeypatch.setattr(requestlog, "request_fields", never)
    log_request(failed(RpmExceeded()), "all")
    log_request(served(), "errors")
    assert lines.records == []
