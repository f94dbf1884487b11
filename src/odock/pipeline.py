"""The request pipeline: the lifecycle of one governed model call, top to bottom.

A request becomes an :class:`Exchange`; each :class:`Stage` runs ``before`` in list order, the
responder writes the upstream answer (unary or stream) to the client, then every stage that was
entered runs ``after`` in reverse order, on every exit path: success, rejection, upstream
failure, client disconnect. That is where leases are released, reservations settled and the
usage record written.

The order is one list, built in :func:`odock.runtime.build_pipeline`::

    RecordUsage        after: write the usage record (last thing that happens)
    Authenticate       API key → principal (401 unauthorized / api_key_expired / api_key_revoked)
    DecodeRequest      body → typed request (400 invalid_request_body)
    ResolveModel       name → model in the key's organisation; grant check (400 / 403)
    ResolveProvider    provider and key checks, endpoint family, upstream payload (400 / 403)
    CallUpstream       adapter call; unary answer or open stream (502 / 504 / provider 4xx)
    ── responder writes the answer; then the after() hooks run in reverse ──

The last stage is the upstream call: while its ``before`` waits on the provider, the responder
watches the client, and a client that leaves cancels the call (recorded as 499
``client_disconnected``), so an abandoned request holds no lease or reservation until the
provider answers. A request the server itself cancels (a shutdown that ran out of grace) still
unwinds every stage it entered and is recorded as ``interrupted`` (503 ``server_shutting_down``,
sent to the client when anything can still be sent); the cancellation then goes on.

Later capabilities insert their stages into that list (rate limits before decode and after
resolution, budget reservation before the upstream call, safety checks and plugins around it).

Two neighbouring stages whose work is a round trip to the same shared store (the final
rate-limit gate and the budget reservation, in production) may be grouped as
:class:`Concurrently`: both ``before`` hooks send their commands before either waits, so the
commands travel in one write and their answers come back in one read, and both ``after`` hooks
likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from odock import estimate
from odock.billing import bill
from odock.db.engine import request_scope
from odock.errors import OdockError, ServerShuttingDown
from odock.ids import ordered_hex_id
from odock.keys.principal import KeyPrincipal
from odock.llm.translate import EmbeddingTranslation, Translation
from odock.llm.upstream import Endpoint, StreamResult, UnaryResult, Usage
from odock.providers.adapters.base import Adapter, UpstreamCall
from odock.providers.catalog import ResolvedModel
from odock.surfaces.surface import Params, Surface

log = logging.getLogger(__name__)

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
    payload: dict[str, Any] = field(default_factory=dict)
    extra_fields: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    model: ResolvedModel | None = None
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
    # Governance state, filled by the limit and budget stages.
    limit_receipts: dict[str, Any] = field(default_factory=dict)
    meter_lines: list[Any] = field(default_factory=list)
    settlements: list[Any] = field(default_factory=list)
    governance: dict[str, Any] = field(default_factory=dict)
    final_billing: dict[str, Any] | None = None

    def estimated_input_tokens(self) -> int:
        """Input tokens estimated from the request body (before the provider says)."""
        return self.surface.estimate_input(self.payload)

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


class Stage(Protocol):
    """One step of the lifecycle."""

    name: str

    async def before(self, ex: Exchange) -> None:
        """Do this stage's work on the way in; raise an OdockError to reject."""

    async def after(self, ex: Exchange) -> None:
        """Clean up or account on the way out; runs on every exit path once ``before`` was entered."""


class Responder(Protocol):
    """Writes the answer to the client (the web layer implements it)."""

    @property
    def started(self) -> bool:
        """True once response headers went out."""

    @property
    def finished(self) -> bool:
        """True once the whole answer went out."""

    async def send_answer(self, ex: Exchange) -> None:
        """Write the upstream answer (unary body or the whole stream)."""

    async def send_error(self, ex: Exchange, error: OdockError) -> None:
        """Write an error: a JSON error response, or an error event if a stream already began."""

    async def while_connected(self, upstream: Awaitable[None]) -> None:
        """Await ``upstream``; if the client leaves meanwhile, cancel it and raise ClientDisconnected."""


class Pipeline:
    """Runs stages in order, writes the answer, then unwinds."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The lifecycle's stages, in order; the last one calls the upstream."""
        return self._stages

    @stages.setter
    def stages(self, stages: Sequence[Stage]) -> None:
        self._stages = tuple(stages)
        *gates, self._upstream = self._stages
        self._gates = tuple(gates)

    def stage_names(self) -> list[str]:
        """The lifecycle, in order."""
        return [s.name for s in self.stages]

    async def run(self, ex: Exchange, responder: Responder) -> None:
        """Handle one request from the first stage to the last ``after`` hook."""
        token = request_scope.set(ex.request_id)
        entered: list[Stage] = []
        upstream = self._upstream
        try:
            try:
                for stage in self._gates:
                    entered.append(stage)
                    await stage.before(ex)
                entered.append(upstream)
                await responder.while_connected(upstream.before(ex))
                await responder.send_answer(ex)
            except OdockError as error:
                ex.fail(error)
                await responder.send_error(ex, error)
            except ClientDisconnected:
                ex.disconnected()
            except asyncio.CancelledError:
                # The server gave up on the request (a shutdown past its grace period). Unless the
                # whole answer had just gone out, say so to the client if it can still hear it and
                # record it honestly; unwind, then go on with the cancellation.
                if not responder.finished:
                    interrupted = ServerShuttingDown()
                    ex.fail(interrupted, "interrupted")
                    await responder.send_error(ex, interrupted)
                raise
            except Exception:
                # The pipeline is the outermost handler of a model call: a bug must still yield a
                # JSON 500 and a usage record that says so, not a success.
                log.exception("unhandled error in request %s", ex.request_id)
                internal = OdockError()
                ex.fail(internal)
                await responder.send_error(ex, internal)
            finally:
                ex.timings.finished = time.perf_counter()
                await _unwind(entered, ex)
        finally:
            request_scope.reset(token)


async def _unwind(entered: list[Stage], ex: Exchange) -> None:
    for stage in reversed(entered):
        await _after(stage, ex)


async def _after(stage: Stage, ex: Exchange) -> None:
    try:
        await stage.after(ex)
    except Exception as exc:
        # Isolation: one stage failing to clean up must not stop the others from releasing
        # leases or settling money.
        _report_after_failure(stage, ex, exc)


def _report_after_failure(stage: Stage, ex: Exchange, error: Exception) -> None:
    log.error("stage %s failed in after() for request %s", stage.name, ex.request_id, exc_info=error)


class SplitStage(Stage, Protocol):
    """A stage whose hooks can send their store call now and finish when awaited.

    A stage that subclasses it writes ``start_before`` and ``start_after``; its ``before`` and
    ``after`` are those, started and awaited at once.
    """

    def start_before(self, ex: Exchange) -> Awaitable[None]:
        """``before``, up to its wait on the store, done now; awaiting the result finishes it."""

    def start_after(self, ex: Exchange) -> Awaitable[None]:
        """``after``, started the same way."""

    async def before(self, ex: Exchange) -> None:
        """Start ``before`` and wait for it to finish."""
        await self.start_before(ex)

    async def after(self, ex: Exchange) -> None:
        """Start ``after`` and wait for it to finish."""
        await self.start_after(ex)


class Concurrently:
    """Stages run side by side: one round trip for all of them instead of one each.

    Meant for stages that each wait on the same remote store and do not depend on each other.
    Every stage's hook is started (its command sent) before any is awaited, so the commands
    leave in one write and their replies come back in one read; no task is created.
    ``before``: every stage's hook runs (so every ``after`` runs too); if several reject, the
    error of the first in list order is raised, as if they had run in turn, and the others'
    ``after`` hooks undo what they took (a budget reserved while a rate limit refused is released
    on the way out). ``after``: every stage's hook runs, each isolated from the others' failures.
    """

    def __init__(self, *stages: SplitStage) -> None:
        if len(stages) < 2:
            raise ValueError("Concurrently groups at least two stages")
        self.stages = stages
        self.name = "+".join(stage.name for stage in stages)

    async def before(self, ex: Exchange) -> None:
        """Run every stage's ``before`` at once; raise the first stage's error, if any."""
        outcomes = await _together([stage.start_before for stage in self.stages], ex)
        error = next((outcome for outcome in outcomes if outcome is not None), None)
        if error is not None:
            raise error

    async def after(self, ex: Exchange) -> None:
        """Run every stage's ``after`` at once (a failure is logged, the others still run)."""
        outcomes = await _together([stage.start_after for stage in self.stages], ex)
        cancelled: BaseException | None = None
        for stage, outcome in zip(self.stages, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _report_after_failure(stage, ex, outcome)
            elif outcome is not None:
                cancelled = cancelled or outcome
        if cancelled is not None:
            raise cancelled


async def _together(
    starts: Sequence[Callable[[Exchange], Awaitable[None]]], ex: Exchange
) -> list[BaseException | None]:
    """Start every hook, then await each in turn: each hook's error, or None.

    A hook that fails while starting has sent nothing. A request cancelled while it waits still
    waits for the hooks not yet finished (what they took is then known to the ``after`` hooks
    that undo it); the cancellation is the outcome of the hook it interrupted.
    """
    outcomes: list[BaseException | None] = [None] * len(starts)
    started: list[tuple[int, Awaitable[None]]] = []
    for i, start in enumerate(starts):
        try:
            started.append((i, start(ex)))
        except Exception as exc:
            outcomes[i] = exc
    cancelled = False
    for i, pending in started:
        if cancelled:
            outcomes[i] = await _uncancellable(pending)
            continue
        try:
            await pending
        except BaseException as exc:  # the others still finish; the caller picks the error
            outcomes[i] = exc
            cancelled = isinstance(exc, asyncio.CancelledError)
    return outcomes


async def _uncancellable(pending: Awaitable[None]) -> BaseException | None:
    """Wait for ``pending`` to finish, however often this request is cancelled meanwhile."""
    task = asyncio.ensure_future(pending)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((task,))  # unlike awaiting the task, never cancels it
    return asyncio.CancelledError() if task.cancelled() else task.exception()
