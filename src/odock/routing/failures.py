"""What kind of failure an attempt met: which routing triggers it fires and whether it counts
against its deployment's circuit breaker (spec §9.4)."""

from __future__ import annotations

from odock.errors import (
    OdockError,
    ProviderApiKeyNotConfigured,
    ProviderApiKeyRevoked,
    ProviderApiKeyUnreadable,
    ProviderDisabled,
    ProviderHeaderUnreadable,
    ProviderNotAllowed,
    ProviderNotConfigured,
    ProviderTypeUnsupported,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
)

SERVER = "5xx"
TIMEOUT = "timeout"
RATE_LIMIT = "rate_limit"
CLIENT = "4xx"  # the upstream refused the request itself: only the ``any`` trigger moves on
SETUP = "setup"  # the candidate cannot be called as configured (disabled, no key, no codec)

_SETUP_ERRORS = (
    ProviderApiKeyNotConfigured,
    ProviderApiKeyRevoked,
    ProviderApiKeyUnreadable,
    ProviderDisabled,
    ProviderHeaderUnreadable,
    ProviderNotAllowed,
    ProviderNotConfigured,
    ProviderTypeUnsupported,
)


def kind_of(error: OdockError) -> str | None:
    """The failure's kind, or None when it is not the upstream's (the client left, a bug)."""
    if isinstance(error, UpstreamTimeout):
        return TIMEOUT
    if isinstance(error, UpstreamRateLimited):
        return RATE_LIMIT
    if isinstance(error, UpstreamRejected | UpstreamAuthFailed):
        return CLIENT
    if isinstance(error, UpstreamError):
        return SERVER  # a 5xx, an unreachable upstream, a cut stream, an unreadable answer
    if isinstance(error, _SETUP_ERRORS):
        return SETUP
    return None


def fires(error: OdockError, triggers: frozenset[str]) -> bool:
    """Whether the policy's ``failoverOn`` moves on to the next target after ``error``.

    A candidate that cannot be called as configured (``SETUP``) is always passed over: trying
    the next one cannot make things worse.
    """
    kind = kind_of(error)
    if kind is None:
        return False
    return kind == SETUP or "any" in triggers or kind in triggers


def counts_against_deployment(error: OdockError) -> bool:
    """Whether ``error`` says the deployment is unwell (its breaker counts it): server errors,
    timeouts, upstream rate limits and a provider key the upstream refuses."""
    return kind_of(error) in (SERVER, TIMEOUT, RATE_LIMIT) or isinstance(error, UpstreamAuthFailed)


def retry_after_seconds(error: OdockError) -> float | None:
    """The wait the upstream asked for (``Retry-After`` in seconds), if any."""
    value = next((v for k, v in error.headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: left to the breaker's cooldown
    return seconds if seconds >= 0 else None
