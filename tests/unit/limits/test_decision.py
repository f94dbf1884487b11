"""Denials as client-facing errors, and which denial a decision enforces."""

from __future__ import annotations

import orjson
import pytest

from odock.errors import PayloadTooLarge, RateLimited, RpmExceeded
from odock.limits.decision import Decision, Denial, DenyCode, LimitName, decide
from odock.limits.policy import Scope


def test_rate_limit_denial_renders_scope_limit_and_retry_after() -> None:
    """A 429 carries scope, limit and retry_after in the body and a Retry-After header."""
    error = Denial(DenyCode.RPM_EXCEEDED, Scope.API_KEY, "k1", LimitName.REQUESTS_PER_MINUTE, 30).error()
    body = orjson.loads(error.body())["error"]
    assert isinstance(error, RpmExceeded)
    assert isinstance(error, RateLimited)
    assert error.http_status == 429
    assert error.headers == {"Retry-After": "30"}
    assert (body["code"], body["scope"], body["limit"], body["retry_after"]) == (
        "rpm_exceeded",
        "api_key",
        "requests_per_minute",
        30,
    )
    assert body["type"] == "rate_limit_error"
    assert "k1" not in error.body().decode()  # scope ids stay in logs, not in client answers


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (DenyCode.IP_BLOCKED, 403),
        (DenyCode.IP_NOT_ALLOWED, 403),
        (DenyCode.PAYLOAD_TOO_LARGE, 413),
        (DenyCode.PAYLOAD_SIZE_UNKNOWN, 411),
        (DenyCode.MAX_TOKENS_EXCEEDED, 400),
        (DenyCode.BURST_EXCEEDED, 429),
        (DenyCode.RPS_EXCEEDED, 429),
        (DenyCode.TPM_EXCEEDED, 429),
        (DenyCode.CONCURRENCY_EXCEEDED, 429),
    ],
)
def test_every_deny_code_maps_to_its_status_and_code(code: DenyCode, status: int) -> None:
    """Each deny code becomes an error with that code and its documented HTTP status."""
    error = Denial(code, Scope.ORGANISATION, "o", LimitName.MAX_TOKENS).error()
    assert (error.http_status, error.code) == (status, code.value)
    assert "Retry-After" not in error.headers  # no retry_after given


def test_payload_too_large_reuses_the_existing_error() -> None:
    """payload_too_large is odock.errors.PayloadTooLarge, so one class serves every route."""
    error = Denial(DenyCode.PAYLOAD_TOO_LARGE, Scope.API_KEY, "k", LimitName.MAX_REQUEST_BYTES).error()
    assert type(error) is PayloadTooLarge


def test_the_longest_wait_is_enforced_and_shadows_reported() -> None:
    """Of several enforced denials the one with the longest retry_after wins; shadows ride along."""
    short = Denial(DenyCode.RPS_EXCEEDED, Scope.API_KEY, "k", LimitName.REQUESTS_PER_SECOND, 1)
    long = Denial(DenyCode.RPM_EXCEEDED, Scope.ORGANISATION, "o", LimitName.REQUESTS_PER_MINUTE, 40)
    shadow = Denial(DenyCode.TPM_EXCEEDED, Scope.TEAM, "t", LimitName.TOKENS_PER_MINUTE, 50)
    decision = decide([(short, False), (long, False), (shadow, True)])
    assert decision.denial == long
    assert decision.shadow_denials == (shadow,)


def test_raise_if_denied() -> None:
    """A denied decision raises its error; an allowed one does nothing."""
    Decision().raise_if_denied()
    with pytest.raises(RpmExceeded):
        Decision(
            Denial(DenyCode.RPM_EXCEEDED, Scope.API_KEY, "k", LimitName.REQUESTS_PER_MINUTE, 3)
        ).raise_if_denied()
