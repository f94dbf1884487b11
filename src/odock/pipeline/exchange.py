"""The exchange: everything known about one request as it moves through the stages.

Each stage reads what earlier stages set and fills its own part (typed per stage: the principal,
the decoded payload, the model and its translation, the token estimate, the governance receipts
and notes, the upstream answer, the usage). See :mod:`odock.pipeline` for the lifecycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from odock import estimate
from odock.billing import bill
from odock.budgets.held import HeldLine
from odock.errors import OdockError
from odock.ids import ordered_hex_id
from odock.keys.principal import KeyPrincipal
from odock.limits.decision import Receipt
from odock.llm.translate import EmbeddingTranslation, Translation
from odock.llm.upstream import Endpoint, StreamResult, UnaryResult, Usage
from odock.providers.adapters.base import Adapter, UpstreamCall
from odock.providers.catalog import Deployment, ProviderTarget, ResolvedModel
from odock.routing.route import Route
from odock.surfaces.surface import Params, Surface

CLIENT_CLOSED_REQUEST = 499  # recorded status of a request whose client left before the answer


@dataclass(slots=True)
class Timings:
    """Monotonic instants (``time.perf_counter``) of one request's milestones."""

    received: float
    upstream_started: float | None = None
    upstream_answered: float | None = None  # unary: full body read; stream: headers received
    first_byte_sent: float | None = None
    first_token: float | None = None
    finished: float | None = None

    def overhead_ms(self, now: float) -> float:
        """Time spent in the gateway itself, excluding the wait for the upstream."""
        if self.upstream_started is None or self.upstream_answered is None:
            return (now - self.received) * 1000
        before = self.upstream_started - self.received
        after = (self.first_byte_sent or now) - self.upstream_answered
        return (before + after) * 1000


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """What a request may consume, estimated once before the call (EstimateTokens): rate limits
    reserve ``input + output`` tokens on it, budgets and quotas price it, the usage intent bills it."""

    input: int  # the prompt's estimated tokens
    output: int  # the output allowance: asked for, capped by the model, or the default


@dataclass(slots=True)
class GovernanceNotes:
    """What the limit and budget stages noted about a request, kept on its usage record."""

    shadow_denials: list[dict[str, str]] = field(default_factory=list)  # limits that would have refused
    tpm_estimate: int | None = None  # tokens the TPM limits reserved
    ratelimit_unavailable: bool = False  # admitted without the rate limiter (fail-open)
    budgets_unavailable: bool = False  # admitted without the meter store (fail-open)

    def to_json(self) -> dict[str, Any]:
        """The notes taken, for the usage record's metadata (empty when there are none)."""
        notes: dict[str, Any] = {}
        if self.shadow_denials:
            notes["shadow_denials"] = self.shadow_denials
        if self.tpm_estimate is not None:
            notes["tpm_estimate"] = self.tpm_estimate
        if self.ratelimit_unavailable:
            notes["ratelimit_unavailable"] = True
        if self.budgets_unavailable:
            notes["budgets_unavailable"] = True
        return notes


class RequestTrace(Protocol):
    """The request's trace, present only while tracing is on (:mod:`odock.telemetry.spans`)."""

    @property
    def trace_id(self) -> str | None:
        """The trace's id (32 hex) when the trace is sampled (exported), else None."""


class Metered(Protocol):
    """What the budget stage reads and writes of a request, model call or MCP message alike."""

    principal: KeyPrincipal | None
    request_id: str
    record_id: str
    received_at: datetime
    timings: Timings
    meter_lines: list[HeldLine]
    settlements: list[dict[str, Any]]
    governance: GovernanceNotes


@dataclass(slots=True)
class Exchange:
    """Everything known about one request as it moves through the stages."""

    request_id: str
    endpoint: Endpoint
    route: str
    method: str
    headers: dict[str, str]
    client_ip: str | None
    body: bytes
    received_at: datetime
    timings: Timings
    surface: Surface  # the API format the client speaks
    params: Params = field(default_factory=dict)  # the route's parameters (path model, query)
    principal: KeyPrincipal | None = None
    # The key to act as, named by the control plane's playground instead of a presented secret
    # (from the ASGI scope, which no client can write; see odock.web.asgi.ACTING_KEY_HASH).
    acting_key_hash: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    extra_fields: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    model: ResolvedModel | None = None
    # Set when the request has a choice of targets (odock.routing): the route and its current
    # deployment; None for a direct call to the model's own provider.
    routing: Route | None = None
    deployment: Deployment | None = None
    # Set when the client's dialect is not one the upstream speaks (see odock.llm.translate).
    translation: Translation | EmbeddingTranslation | None = None
    adapter: Adapter | None = None
    call: UpstreamCall | None = None
    unary: UnaryResult | None = None
    upstream_stream: StreamResult | None = None
    usage: Usage | None = None
    streamed_chars: int = 0
    streamed_chunks: int = 0
    bytes_out: int = 0
    provider_request_id: str | None = None
    http_status: int = 200
    outcome: str = "success"  # success | error | client_disconnected | interrupted
    error: OdockError | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    # The gateway's own id for this request: usage record id and budget idempotency key
    # (unlike request_id, which a client may reuse).
    record_id: str = field(default_factory=ordered_hex_id)
    tokens: TokenEstimate | None = None  # set by EstimateTokens
    # Governance state, filled by the limit and budget stages.
    limit_receipts: dict[str, Receipt | None] = field(default_factory=dict)  # by gate
    meter_lines: list[HeldLine] = field(default_factory=list)  # reserved budget and quota lines
    settlements: list[dict[str, Any]] = field(default_factory=list)  # what the usage record settles
    governance: GovernanceNotes = field(default_factory=GovernanceNotes)
    final_billing: dict[str, Any] | None = None
    # Set by the traced pipeline (ODOCK_OTEL_TRACES_EXPORTER on); None, and never looked at, when off.
    trace: RequestTrace | None = None

    @property
    def organisation_id(self) -> str | None:
        """The calling key's organisation, once authenticated (read by log records)."""
        return self.principal.organisation_id if self.principal is not None else None

    @property
    def provider(self) -> ProviderTarget | None:
        """The provider called (the answering attempt's when routed), else the model's own."""
        if self.call is not None:
            return self.call.provider
        return self.model.provider if self.model is not None else None

    def estimated_input_tokens(self) -> int:
        """Input tokens estimated from the request body (before the provider says)."""
        return self.tokens.input if self.tokens is not None else self.surface.estimate_input(self.payload)

    def output_allowance(self, default: int) -> int:
        """The most output tokens this request may produce (asked for, model cap, or default)."""
        if self.endpoint == Endpoint.EMBEDDINGS:
            return 0
        cap = self.model.config.get("max_output_tokens") if self.model else None
        asked = self.asked_max_tokens()
        allowance = asked if asked is not None and asked > 0 else (cap if isinstance(cap, int) else default)
        return min(allowance, cap) if isinstance(cap, int) and cap > 0 else allowance

    def asked_max_tokens(self) -> int | None:
        """The output limit the client set, read by its surface."""
        return self.surface.asked_max_tokens(self.payload)

    def measured_usage(self) -> Usage | None:
        """What the request used: as reported, or estimated (from what was streamed when a stream
        was cut short; from the input of embeddings whose provider reports no usage)."""
        if self.usage is not None:
            return self.usage
        if self.timings.upstream_answered is None:
            return None
        if self.endpoint == Endpoint.EMBEDDINGS and self.unary is not None:
            # Some providers (Gemini) report no usage for embeddings: the input is the usage.
            tokens = self.estimated_input_tokens()
            return Usage(tokens, 0, tokens, estimated=True)
        if not self.stream:
            return None
        prompt = self.estimated_input_tokens()
        completion = max(self.streamed_chunks, estimate.tokens_for_text(self.streamed_chars))
        return Usage(prompt, completion, prompt + completion, estimated=True)

    def billing(self, usage: Usage | None = None) -> dict[str, Any]:
        """The billing breakdown of ``usage`` (default: the measured usage; empty when none).

        Once the request has finished, the measured usage is final, so its billing is computed
        once and shared by the budget settlement and the usage record.
        """
        if usage is None and self.final_billing is not None:
            return self.final_billing
        measured = usage is None
        usage = usage or self.measured_usage()
        if usage is None or self.model is None:
            return {}
        billing = bill(usage, self.model.pricing, embeddings=self.endpoint == Endpoint.EMBEDDINGS)
        if measured and self.timings.finished is not None:
            self.final_billing = billing
        return billing

    def fail(self, error: OdockError, outcome: str = "error") -> None:
        """Record that the request ended with ``error``."""
        self.error = error
        self.http_status = error.http_status
        self.outcome = outcome

    def disconnected(self) -> None:
        """Record that the client left before the answer was complete (it was told nothing more)."""
        self.outcome = "client_disconnected"
        self.http_status = CLIENT_CLOSED_REQUEST


class ClientDisconnected(Exception):
    """The client left while the request waited on the upstream; nothing more can be sent."""
