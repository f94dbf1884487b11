"""The rate-limit gates of the pipeline (spec §4.3), one limiter call each.

    PreAuthGate   before authentication: global IP lists and global request limits
    EarlyGate     after authentication: organisation/team/key IP lists, payload bytes,
                  concurrency leases, burst, requests per second and per minute
    FinalGate     after model resolution: max_tokens, model request limits, and a tokens-per-
                  minute reservation (estimated input + requested output) on every scope

Post-flight releases the leases and reconciles the TPM reservation to the tokens actually used;
it runs on every exit path. Once the final gate was entered, its ``after()`` does it for every
gate in one limiter call; otherwise each earlier gate releases its own leases. When the
limiter's store is unreachable, ``fail_open`` decides: closed (the default) answers 503
``ratelimit_unavailable``; open admits and marks the usage record. Each gate that has limits to
apply counts its one decision (allow, reject or fail_open) in the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence

from odock.aio import ready
from odock.errors import RateLimiterUnavailable
from odock.limits.checks import check_ip, check_max_tokens, check_payload
from odock.limits.decision import Decision, Receipt
from odock.limits.limiter import RateLimiter
from odock.limits.plan import CheckPlanner, LimitCheck
from odock.limits.policy import PolicyResolver, Scope, ScopePolicy
from odock.pipeline.exchange import Exchange
from odock.pipeline.runner import SplitStage
from odock.telemetry import metrics

log = logging.getLogger(__name__)


class _Gate:
    """Shared mechanics: admit with the fail mode, remember receipts and shadow denials."""

    name = "ratelimit"
    stage = ""  # the gate's ``ratelimit_stage`` metric label, and the slot of its receipt

    def __init__(self, limiter: RateLimiter, resolver: PolicyResolver, *, fail_open: bool) -> None:
        self._limiter = limiter
        self._resolver = resolver
        self._fail_open = fail_open
        self._planner = CheckPlanner()

    def _judge(self, ex: Exchange, decision: Decision) -> None:
        for denial in decision.shadow_denials:
            ex.governance.shadow_denials.append(
                {
                    "stage": self.name,
                    "code": str(denial.code),
                    "scope": str(denial.scope),
                    "limit": str(denial.limit),
                }
            )
            log.info(
                "shadow rate-limit denial %s on %s for request %s", denial.code, denial.scope, ex.request_id
            )
        if decision.denial is not None:
            metrics.ratelimit_decision(self.stage, "reject")
            decision.raise_if_denied()

    def _admit(self, ex: Exchange, checks: Sequence[LimitCheck]) -> Awaitable[None]:
        """Send the admission now; awaiting it judges the decision and keeps the receipt (one
        decision recorded per gate: the checks already judged passed)."""
        if not checks:
            metrics.ratelimit_decision(self.stage, "allow")
            return ready(None)
        return self._admitted(ex, self._limiter.admit(ex.request_id, checks))

    async def _admitted(self, ex: Exchange, sent: Awaitable[Decision]) -> None:
        try:
            decision = await sent
        except RateLimiterUnavailable:
            if not self._fail_open:
                metrics.ratelimit_decision(self.stage, "reject")
                raise
            metrics.ratelimit_decision(self.stage, "fail_open")
            ex.governance.ratelimit_unavailable = True
            log.warning("rate limiter unavailable; admitting request %s (fail-open)", ex.request_id)
            return
        self._judge(ex, decision)
        metrics.ratelimit_decision(self.stage, "allow")
        receipt = decision.receipt
        if receipt is not None and receipt.quota is not None:
            _advertise(ex, receipt)
        ex.limit_receipts[self.stage] = receipt

    async def _release(self, receipt: Receipt | None) -> None:
        if receipt is None or not receipt.leases:
            return
        try:
            await self._limiter.release(receipt)
        except RateLimiterUnavailable:
            log.warning("could not release leases of %s; they expire after their TTL", receipt.request_id)


class PreAuthGate(_Gate):
    """Global policy, before any key lookup."""

    name = "ratelimit_pre_auth"
    stage = "pre_auth"

    async def before(self, ex: Exchange) -> None:
        """Check global IP lists and admit against global request limits."""
        scopes = self._resolver.global_scopes()
        if not scopes:
            return
        self._judge(ex, check_ip(scopes, ex.client_ip))
        await self._admit(ex, self._planner.requests(scopes))

    async def after(self, ex: Exchange) -> None:
        """Release global concurrency leases."""
        await self._release(ex.limit_receipts.get("pre_auth"))


class EarlyGate(_Gate):
    """Organisation, team and key policies, before the body is decoded."""

    name = "ratelimit_early"
    stage = "early"

    async def before(self, ex: Exchange) -> None:
        """IP lists, payload size, concurrency and request rates of the key's scopes."""
        assert ex.principal is not None
        scopes = self._resolver.key_scopes(ex.principal)
        if not scopes:
            return
        self._judge(ex, check_ip(scopes, ex.client_ip))
        self._judge(ex, check_payload(scopes, len(ex.body)))
        await self._admit(ex, self._planner.requests(scopes))

    async def after(self, ex: Exchange) -> None:
        """Release the key scopes' concurrency leases."""
        await self._release(ex.limit_receipts.get("early"))


class FinalGate(_Gate, SplitStage):
    """Model request limits and a TPM reservation on every scope, once the model is known."""

    name = "ratelimit_final"
    stage = "final"

    def __init__(
        self,
        limiter: RateLimiter,
        resolver: PolicyResolver,
        *,
        fail_open: bool,
    ) -> None:
        super().__init__(limiter, resolver, fail_open=fail_open)

    def start_before(self, ex: Exchange) -> Awaitable[None]:
        """Check max_tokens, admit model request limits and reserve estimated tokens (sent now)."""
        assert ex.principal is not None
        assert ex.model is not None
        resource = self._resolver.resource_scope(Scope.MODEL, ex.model.id, ex.model.policies)
        everything: tuple[ScopePolicy, ...] = self._resolver.applicable(ex.principal, resource)
        if not everything:
            return ready(None)
        self._judge(ex, check_max_tokens(everything, ex.asked_max_tokens()))
        assert ex.tokens is not None
        estimate = ex.tokens.input + ex.tokens.output
        ex.governance.tpm_estimate = estimate
        checks = self._planner.requests(resource) + self._planner.tokens(everything, estimate)
        return self._admit(ex, checks)

    async def release_attempt(self, ex: Exchange) -> None:
        """Give back what a failed attempt took (its model's leases, every scope's TPM reservation:
        it produced no tokens) before a further attempt on another model is admitted afresh with
        :meth:`start_before`; the requests it made stay counted."""
        receipt = ex.limit_receipts.pop("final", None)
        if receipt is not None:
            await self._finished(ex, self._limiter.finish([receipt], 0))

    def start_after(self, ex: Exchange) -> Awaitable[None]:
        """Post-flight of every gate at once: release all leases, reconcile TPM to the actual tokens.

        The earlier gates' receipts are taken here (their own ``after`` then finds nothing), so a
        request's whole rate-limit post-flight is one limiter call instead of one per gate, sent
        when this is called.
        """
        receipts = [
            receipt
            for gate in ("final", "early", "pre_auth")
            if (receipt := ex.limit_receipts.pop(gate, None)) is not None
        ]
        if not receipts:
            return ready(None)
        actual = 0
        if any(receipt.reservations for receipt in receipts):
            usage = ex.measured_usage()
            actual = usage.prompt_tokens + usage.completion_tokens if usage else 0
        return self._finished(ex, self._limiter.finish(receipts, actual))

    @staticmethod
    async def _finished(ex: Exchange, sent: Awaitable[None]) -> None:
        try:
            await sent
        except RateLimiterUnavailable:
            log.warning(
                "could not finish rate limits of %s; leases expire after their TTL, tokens stay reserved",
                ex.request_id,
            )


def _advertise(ex: Exchange, receipt: Receipt) -> None:
    """Expose the most restrictive request limit seen so far as X-RateLimit-* headers."""
    quota = receipt.quota
    assert quota is not None
    current = ex.response_headers.get("x-ratelimit-remaining")
    if current is not None and int(current) <= quota.remaining:
        return
    ex.response_headers["x-ratelimit-limit"] = str(quota.limit)
    ex.response_headers["x-ratelimit-remaining"] = str(quota.remaining)
    ex.response_headers["x-ratelimit-reset"] = str(quota.reset_seconds)
