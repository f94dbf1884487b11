"""The runner: stages in order, the answer written, then every entered stage unwound.

See :mod:`odock.pipeline` for the lifecycle and :mod:`odock.pipeline.order` for the stages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from odock.db.engine import request_scope
from odock.errors import OdockError, ServerShuttingDown
from odock.pipeline.exchange import ClientDisconnected, Exchange

log = logging.getLogger(__name__)


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
