"""The one exception tree of Odock; every rejection a client sees is one of these.

Each class carries its HTTP ``status``, its stable ``code`` and the OpenAI-style error
``type`` as class attributes, so one renderer (``OdockError.body``) serves every route and
both the OpenAI SDK and Odock clients can parse the result::

    OdockError                         500 internal_error
    ├── InvalidRequest                 400 invalid_request
    │   ├── MalformedHttpRequest       400 malformed_http_request
    │   ├── InvalidRequestBody         400 invalid_request_body
    │   ├── MaxTokensExceeded          400 max_tokens_exceeded
    │   ├── ModelPricingMissing        400 model_pricing_missing
    │   ├── ModelNotFound              400 model_not_found
    │   ├── ModelTypeMismatch          400 model_type_mismatch
    │   ├── ProviderNotConfigured      400 provider_not_configured
    │   ├── ProviderApiKeyNotConfigured 400 provider_api_key_not_configured
    │   ├── ProviderTypeUnsupported    400 provider_type_unsupported
    │   ├── ProviderNotAllowed         400 provider_not_allowed
    │   └── InvalidMcpMessage          400 invalid_mcp_message (not JSON-RPC 2.0)
    ├── Unauthorized                   401 unauthorized
    │   ├── ApiKeyExpired              401 api_key_expired
    │   ├── ApiKeyRevoked              401 api_key_revoked
    │   ├── InvalidCredentials         401 invalid_credentials
    │   └── SignInFailed               401 sign_in_failed
    ├── BudgetExceeded                 402 budget_exceeded
    ├── Forbidden                      403 forbidden
    │   ├── IpBlocked                  403 ip_blocked
    │   ├── IpNotAllowed               403 ip_not_allowed
    │   ├── ModelNotAllowed            403 model_not_allowed
    │   ├── ModelDisabled              403 model_disabled
    │   ├── OrganisationDisabled       403 organisation_disabled
    │   ├── ProviderDisabled           403 provider_disabled
    │   ├── ProviderApiKeyRevoked      403 provider_api_key_revoked
    │   ├── CsrfFailed                 403 csrf_failed
    │   ├── PasswordChangeRequired     403 password_change_required
    │   ├── AccountNotActive           403 account_not_active
    │   ├── InvitationEmailMismatch    403 invitation_email_mismatch
    │   ├── McpNotAllowed              403 mcp_not_allowed (no grant, or outside the server's scope)
    │   └── McpGuardrailBlock          403 mcp_guardrail_block (tool rules, tool grants, semantic filter)
    ├── NotFound                       404 not_found
    │   ├── InvitationInvalid          404 invitation_invalid
    │   ├── McpNotFound                404 mcp_not_found (unknown or disabled MCP server)
    │   └── McpSessionNotFound         404 mcp_session_not_found (re-initialize)
    ├── MethodNotAllowed               405 method_not_allowed
    ├── RequestTimeout                 408 request_timeout
    ├── Conflict                       409 conflict
    ├── InvitationClosed               410 invitation_closed
    ├── PayloadSizeUnknown             411 payload_size_unknown
    ├── PayloadTooLarge                413 payload_too_large
    ├── UnprocessableEntity            422 validation_error
    │   └── InvalidPolicy              422 invalid_policy
    ├── RateLimited                    429 rate_limit_exceeded
    │   ├── RpsExceeded / BurstExceeded / RpmExceeded / TpmExceeded / ConcurrencyExceeded
    │   └── LoginThrottled             429 login_throttled
    ├── QuotaExceeded                  429 quota_exceeded
    ├── RequestHeadersTooLarge         431 request_headers_too_large
    ├── ProviderApiKeyUnreadable       502 provider_api_key_unreadable
    ├── ProviderHeaderUnreadable       502 provider_header_unreadable
    ├── UpstreamError                  502 upstream_error
    │   ├── UpstreamRejected           4xx upstream_rejected (provider's status and message kept)
    │   ├── UpstreamRateLimited        429 upstream_rate_limited (Retry-After kept)
    │   ├── UpstreamAuthFailed         502 upstream_auth_failed
    │   ├── UpstreamUnavailable        502 upstream_unavailable
    │   │   └── UpstreamCoolingDown    503 upstream_cooling_down (Retry-After: the shortest wait)
    │   ├── UpstreamStreamInterrupted  502 upstream_stream_interrupted
    │   └── UpstreamTimeout            504 upstream_timeout
    ├── McpUpstreamError               502 mcp_upstream_error
    │   ├── McpAuthError               502 mcp_auth_error (upstream credentials refused or not obtained)
    │   └── McpStdioError              502 mcp_stdio_error (the server process failed or is restarting)
    ├── DependencyUnavailable          503 dependency_unavailable
    │   ├── ModelLookupUnavailable     503 model_lookup_unavailable
    │   ├── RateLimiterUnavailable     503 ratelimit_unavailable
    │   ├── MeterStoreUnavailable      503 budget_enforcement_unavailable
    │   ├── RoutingStateUnavailable    503 routing_state_unavailable
    │   └── UsageBacklog               503 usage_backlog (Retry-After)
    └── ServerShuttingDown             503 server_shutting_down

Foreign exceptions are translated at the boundary where they occur (one context manager per
adapter); nothing else catches broadly except the outermost error handler.
"""

from __future__ import annotations

from typing import ClassVar

import orjson


class OdockError(Exception):
    """Base of every error Odock reports to a client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"
    default_message: ClassVar[str] = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        """The status to answer with (a subclass may decide per instance)."""
        return self.status

    def payload(self) -> dict[str, object]:
        """The JSON error object understood by the OpenAI SDK and Odock clients."""
        error: dict[str, object] = {
            "code": self.code,
            "message": self.message,
            "type": self.type,
            "param": self.param,
        }
        error.update(self.extra)
        return {"error": error}

    def body(self) -> bytes:
        """:meth:`payload`, rendered."""
        return orjson.dumps(self.payload())


class InvalidRequest(OdockError):
    """The request cannot be served as sent."""

    status = 400
    code = "invalid_request"
    type = "invalid_request_error"
    default_message = "invalid request"


class InvalidRequestBody(InvalidRequest):
    """The body is not valid JSON of the expected shape."""

    code = "invalid_request_body"
    default_message = "invalid request body"


class UnsupportedParameter(InvalidRequest):
    """A field the client sent cannot be expressed to the model's provider (``param`` names it)."""

    code = "unsupported_parameter"
    default_message = "a field of the request cannot be sent to this model's provider"


class ModelNotFound(InvalidRequest):
    """No model of that name exists in the caller's organisation."""

    code = "model_not_found"
    default_message = "model not found"


class ModelTypeMismatch(InvalidRequest):
    """The model's type is not served by the endpoint it was called on (a chat model on embeddings)."""

    code = "model_type_mismatch"
    default_message = "the model's type is not served by this endpoint"


class ProviderNotConfigured(InvalidRequest):
    """The model has no provider attached."""

    code = "provider_not_configured"
    default_message = "the model has no provider configured"


class ProviderApiKeyNotConfigured(InvalidRequest):
    """The model's provider needs a key and none is attached."""

    code = "provider_api_key_not_configured"
    default_message = "the model has no provider API key configured"


class ProviderTypeUnsupported(InvalidRequest):
    """No adapter serves this provider type on this endpoint."""

    code = "provider_type_unsupported"
    default_message = "provider type is not supported"


class ProviderNotAllowed(InvalidRequest):
    """The endpoint is pinned to a provider family the model does not belong to."""

    code = "provider_not_allowed"
    default_message = "the model's provider cannot be called through this endpoint"


class Unauthorized(OdockError):
    """No valid API key was presented."""

    status = 401
    code = "unauthorized"
    type = "authentication_error"
    default_message = "missing or invalid API key"


class ApiKeyExpired(Unauthorized):
    """The API key is past its expiry."""

    code = "api_key_expired"
    default_message = "API key has expired"


class ApiKeyRevoked(Unauthorized):
    """The API key was revoked."""

    code = "api_key_revoked"
    default_message = "API key has been revoked"


class Forbidden(OdockError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"
    type = "permission_error"
    default_message = "forbidden"


class ModelNotAllowed(Forbidden):
    """The API key holds no grant for the model."""

    code = "model_not_allowed"
    default_message = "model not allowed"


class ModelDisabled(Forbidden):
    """The model exists but is switched off."""

    code = "model_disabled"
    default_message = "model is disabled"


class ProviderDisabled(Forbidden):
    """The model's provider is disabled."""

    code = "provider_disabled"
    default_message = "the model's provider is disabled"


class ProviderApiKeyRevoked(Forbidden):
    """The provider key attached to the model was revoked."""

    code = "provider_api_key_revoked"
    default_message = "the model's provider API key has been revoked"


class NotFound(OdockError):
    """No such route or resource."""

    status = 404
    code = "not_found"
    type = "invalid_request_error"
    default_message = "not found"


class MethodNotAllowed(OdockError):
    """The route exists but not for this method."""

    status = 405
    code = "method_not_allowed"
    type = "invalid_request_error"
    default_message = "method not allowed"


class PayloadTooLarge(OdockError):
    """The request body is larger than the configured maximum."""

    status = 413
    code = "payload_too_large"
    type = "invalid_request_error"
    default_message = "request body too large"


class Conflict(OdockError):
    """The change conflicts with existing state (e.g. a duplicate name)."""

    status = 409
    code = "conflict"
    type = "invalid_request_error"
    default_message = "conflict with existing state"


class UnprocessableEntity(OdockError):
    """A control-plane input failed validation."""

    status = 422
    code = "validation_error"
    type = "invalid_request_error"
    default_message = "validation failed"


class ProviderApiKeyUnreadable(OdockError):
    """A stored provider key cannot be decrypted with the configured private key."""

    status = 502
    code = "provider_api_key_unreadable"
    type = "server_error"
    default_message = "the provider API key cannot be decrypted by this gateway"


class ProviderHeaderUnreadable(OdockError):
    """A stored value of a provider's ``config.headers`` cannot be decrypted with the configured key."""

    status = 502
    code = "provider_header_unreadable"
    type = "server_error"
    default_message = "a header value of the provider cannot be decrypted by this gateway"


class UpstreamError(OdockError):
    """The upstream provider failed."""

    status = 502
    code = "upstream_error"
    type = "upstream_error"
    default_message = "upstream provider error"

    def __init__(
        self,
        message: str | None = None,
        *,
        upstream_status: int | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, headers=headers)
        self.upstream_status = upstream_status


class UpstreamRejected(UpstreamError):
    """The provider refused the request with a 4xx; its status and message are passed on."""

    code = "upstream_rejected"
    type = "invalid_request_error"

    @property
    def http_status(self) -> int:
        """Answer with the provider's own 4xx status."""
        return self.upstream_status or 400


class UpstreamRateLimited(UpstreamError):
    """The provider answered 429."""

    status = 429
    code = "upstream_rate_limited"
    type = "rate_limit_error"
    default_message = "upstream provider rate limit reached"


class UpstreamAuthFailed(UpstreamError):
    """The provider rejected the provider key (a gateway configuration problem)."""

    code = "upstream_auth_failed"
    default_message = "upstream provider rejected the configured provider key"


class UpstreamUnavailable(UpstreamError):
    """The provider could not be reached."""

    code = "upstream_unavailable"
    default_message = "upstream provider unreachable"


class UpstreamStreamInterrupted(UpstreamError):
    """The provider's stream ended before the answer was complete."""

    code = "upstream_stream_interrupted"
    default_message = "upstream stream ended before completion"


class UpstreamCoolingDown(UpstreamUnavailable):
    """Every deployment a routed request could use is cooling down (its circuit is open)."""

    status = 503
    code = "upstream_cooling_down"
    default_message = "every upstream deployment of this route is cooling down"


class UpstreamTimeout(UpstreamError):
    """The provider broke a bound of its timeouts (connect, first byte, idle, total)."""

    status = 504
    code = "upstream_timeout"
    default_message = "upstream provider timed out"


class DependencyUnavailable(OdockError):
    """A required dependency (database, Redis) is unavailable."""

    status = 503
    code = "dependency_unavailable"
    type = "server_error"
    default_message = "a required dependency is unavailable"


class ModelLookupUnavailable(DependencyUnavailable):
    """The model could not be looked up because the store is down."""

    code = "model_lookup_unavailable"
    default_message = "model lookup unavailable"


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


class MeterStoreUnavailable(DependencyUnavailable):
    """The counter store could not be reached, so budgets and quotas cannot be enforced."""

    code = "budget_enforcement_unavailable"
    default_message = "budget and quota enforcement is unavailable"


class RoutingStateUnavailable(DependencyUnavailable):
    """The shared routing state (circuit breakers, round-robin turns) could not be reached."""

    code = "routing_state_unavailable"
    default_message = "the shared routing state is unavailable"


class UsageBacklog(DependencyUnavailable):
    """Usage records wait to be stored past the configured bound: new requests are shed until it drains."""

    code = "usage_backlog"
    default_message = "usage records are not being stored as fast as they arrive; retry shortly"


class BudgetExceeded(OdockError):
    """A budget's current window cannot cover the request's estimated cost."""

    status = 402
    code = "budget_exceeded"
    type = "insufficient_quota"
    default_message = "budget exceeded"


class QuotaExceeded(OdockError):
    """A quota's current window cannot cover the request."""

    status = 429
    code = "quota_exceeded"
    type = "insufficient_quota"
    default_message = "quota exceeded"


class ModelPricingMissing(InvalidRequest):
    """A budget applies but the model has no pricing, and unpriced models are refused."""

    code = "model_pricing_missing"
    default_message = "the model has no pricing, so the budgets that limit this key cannot be enforced"


class InvalidCredentials(Unauthorized):
    """A sign-in failed: unknown e-mail or wrong password (deliberately the same answer)."""

    code = "invalid_credentials"
    default_message = "invalid e-mail or password"


class SignInFailed(Unauthorized):
    """An OAuth / OpenID Connect sign-in could not be completed (bad state, code or ID token)."""

    code = "sign_in_failed"
    default_message = "sign-in failed"


class CsrfFailed(Forbidden):
    """A cookie-authenticated write came without the session's ``X-CSRF-Token``."""

    code = "csrf_failed"
    default_message = "missing or wrong X-CSRF-Token header"


class PasswordChangeRequired(Forbidden):
    """The account must change its password before doing anything else."""

    code = "password_change_required"
    default_message = "change your password first (POST /api/auth/password)"


class AccountNotActive(Forbidden):
    """The account is pending approval or revoked."""

    code = "account_not_active"
    default_message = "this account is not active"


class InvitationEmailMismatch(Forbidden):
    """The signed-in account's e-mail is not the invited one."""

    code = "invitation_email_mismatch"
    default_message = "this invitation is for another e-mail address: sign in with the invited account"


class InvitationInvalid(NotFound):
    """No invitation has this token (a resent invitation's old link included)."""

    code = "invitation_invalid"
    default_message = "invitation link is not valid"


class InvitationClosed(OdockError):
    """The invitation was accepted, revoked, or has expired."""

    status = 410
    code = "invitation_closed"
    type = "invalid_request_error"
    default_message = "invitation is no longer open"


class LoginThrottled(RateLimited):
    """Too many failed sign-ins for this e-mail address or client IP; retry after ``Retry-After``."""

    code = "login_throttled"
    default_message = "too many failed sign-ins"


class OrganisationDisabled(Forbidden):
    """The key's organisation is DISABLED: none of its keys may call the gateway."""

    code = "organisation_disabled"
    default_message = "the organisation of this API key is disabled"


class MalformedHttpRequest(InvalidRequest):
    """The bytes received are not a valid HTTP/1.1 request (answered by the server, then it closes)."""

    code = "malformed_http_request"
    default_message = "malformed HTTP request"


class RequestTimeout(OdockError):
    """The client took longer than allowed to send the request's headers or body."""

    status = 408
    code = "request_timeout"
    type = "invalid_request_error"
    default_message = "the request was not received in time"


class RequestHeadersTooLarge(OdockError):
    """The request line and headers exceed the configured size or count."""

    status = 431
    code = "request_headers_too_large"
    type = "invalid_request_error"
    default_message = "request headers too large"


class ServerShuttingDown(OdockError):
    """The server stopped before the request finished (its shutdown grace period ran out)."""

    status = 503
    code = "server_shutting_down"
    type = "server_error"
    default_message = "the server shut down before the request finished; retry it"


class McpNotFound(NotFound):
    """No enabled MCP server by that slug or id in the key's organisation."""

    code = "mcp_not_found"
    default_message = "MCP server not found"


class McpSessionNotFound(NotFound):
    """The ``Mcp-Session-Id`` names no live session of this key and server: initialize again."""

    code = "mcp_session_not_found"
    default_message = "unknown or expired MCP session; initialize a new one"


class McpNotAllowed(Forbidden):
    """The key holds no grant for the MCP server, or is outside the server's team/key scope."""

    code = "mcp_not_allowed"
    default_message = "this API key may not use this MCP server"


class McpGuardrailBlock(Forbidden):
    """A tool rule refused the message: blocked or not allowed tool, tool grants, semantic filter."""

    code = "mcp_guardrail_block"
    default_message = "refused by the MCP server's tool rules"


class InvalidMcpMessage(InvalidRequest):
    """The body is not a JSON-RPC 2.0 message (or batch) the MCP transport accepts."""

    code = "invalid_mcp_message"
    default_message = "not a JSON-RPC 2.0 message"


class McpUpstreamError(OdockError):
    """The upstream MCP server failed, could not be reached, or answered out of protocol."""

    status = 502
    code = "mcp_upstream_error"
    type = "upstream_error"
    default_message = "MCP upstream error"


class McpAuthError(McpUpstreamError):
    """Upstream credentials could not be obtained (OAuth2 token endpoint) or were refused."""

    code = "mcp_auth_error"
    default_message = "MCP upstream authentication failed"


class McpStdioError(McpUpstreamError):
    """The STDIO server process could not be started, crashed, or is backing off before a restart."""

    code = "mcp_stdio_error"
    default_message = "MCP STDIO server failed"
