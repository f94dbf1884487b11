"""Rejections raised by the rate-limit gates (to be merged into :mod:`odock.errors`).

Where each class hangs in the one exception tree::

    OdockError
    ├── InvalidRequest                 400 invalid_request
    │   └── MaxTokensExceeded          400 max_tokens_exceeded
    ├── Forbidden                      403 forbidden
    │   ├── IpBlocked                  403 ip_blocked       (client IP in a blocklist)
    │   └── IpNotAllowed               403 ip_not_allowed   (client IP outside an allowlist)
    ├── PayloadTooLarge                413 payload_too_large (odock.errors; reused as is)
    ├── PayloadSizeUnknown             411 payload_size_unknown
    ├── UnprocessableEntity            422 validation_error
    │   └── InvalidPolicy              422 invalid_policy   (``param`` names the field)
    ├── RateLimited                    429 rate_limit_exceeded
    │   ├── RpsExceeded                429 rps_exceeded
    │   ├── BurstExceeded              429 burst_exceeded
    │   ├── RpmExceeded                429 rpm_exceeded
    │   ├── TpmExceeded                429 tpm_exceeded
    │   └── ConcurrencyExceeded        429 concurrency_exceeded
    └── DependencyUnavailable          503 dependency_unavailable
        └── RateLimiterUnavailable     503 ratelimit_unavailable

Why two payload statuses differ from 413: a body whose size cannot be known is answered
411 Length Required (the client must send ``Content-Length``), and a ``max_tokens`` above the
policy is a parameter the client must change, so 400 with ``param="max_tokens"``.
"""

from __future__ import annotations

from odock.errors import (
    DependencyUnavailable,
    Forbidden,
    InvalidRequest,
    OdockError,
    UnprocessableEntity,
)


class MaxTokensExceeded(InvalidRequest):
    """The request asks for more output tokens than a policy allows."""

    code = "max_tokens_exceeded"
    default_message = "max_tokens exceeds the limit set by policy"


class IpBlocked(Forbidden):
    """The client IP is in a blocklist."""

    code = "ip_blocked"
    default_message = "client IP address is blocked"


class IpNotAllowed(Forbidden):
    """The client IP is outside an allowlist."""

    code = "ip_not_allowed"
    default_message = "client IP address is not allowed"


class PayloadSizeUnknown(OdockError):
    """A request-size limit applies but the request does not declare its length."""

    status = 411
    code = "payload_size_unknown"
    type = "invalid_request_error"
    default_message = "request size unknown: send a Content-Length header"


class InvalidPolicy(UnprocessableEntity):
    """A policy envelope failed validation; ``param`` is the dotted path of the bad field."""

    code = "invalid_policy"
    default_message = "invalid policy"


class RateLimited(OdockError):
    """A rate limit refused the request."""

    status = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"
    default_message = "rate limit exceeded"


class RpsExceeded(RateLimited):
    """Too many requests per second."""

    code = "rps_exceeded"
    default_message = "requests per second limit exceeded"


class BurstExceeded(RateLimited):
    """The request burst allowance is used up."""

    code = "burst_exceeded"
    default_message = "request burst limit exceeded"


class RpmExceeded(RateLimited):
    """Too many requests in the last minute."""

    code = "rpm_exceeded"
    default_message = "requests per minute limit exceeded"


class TpmExceeded(RateLimited):
    """Too many tokens in the last minute."""

    code = "tpm_exceeded"
    default_message = "tokens per minute limit exceeded"


class ConcurrencyExceeded(RateLimited):
    """Too many requests in flight."""

    code = "concurrency_exceeded"
    default_message = "concurrent request limit exceeded"


class RateLimiterUnavailable(DependencyUnavailable):
    """The rate-limit store (Redis) failed; the caller applies fail-closed or fail-open."""

    code = "ratelimit_unavailable"
    default_message = "rate limiting is unavailable"
