"""The routing stages: plan the route once the model is known, then call it attempt by attempt.

PlanRoute (after ResolveModel): when the key's routing policy applies to the model's type (and
the organisation's switch is on), or the model has several deployments, the request gets a
:class:`Route` and its first target: the model whose limits and budget the gates then take, and
the deployment ResolveProvider builds the call for. Otherwise nothing happens: the call is direct.

RoutedCall (last): calls the target; on a failure the policy's triggers name, it records the
attempt, tells the breaker, and moves to the next target: the same model on another deployment,
or another model: the failed attempt's rate-limit admission is given back (tokens 0) and the new
model admitted afresh, and its higher price tops up the budget held (refused: that candidate is
passed over with the reason). A stream moves on only until its first
chunk: the attempt waits for that chunk before the answer starts. When no target is left, the
client gets the last attempt's error, its message listing every attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from odock.budgets.stage import BudgetGate
from odock.errors import OdockError, UpstreamCoolingDown
from odock.limits.stage import FinalGate
from odock.llm.upstream import StreamChunk, StreamResult
from odock.pipeline.exchange import Exchange
from odock.pipeline.runner import Stage
from odock.providers.stage import ResolveProvider
from odock.routing.breakers import Breakers
from odock.routing.failures import counts_against_deployment, fires, retry_after_seconds
from odock.routing.planner import InFlight, RoutePlanner
from odock.routing.route import FAILED, REFUSED, SUCCESS, Route


class PlanRoute:
    """Sets ``ex.routing`` and the first target when the request has a choice."""

    name = "plan_route"

    def __init__(self, planner: RoutePlanner, breakers: Breakers) -> None:
        self._planner = planner
        self._breakers = breakers

    async def before(self, ex: Exchange) -> None:
        """Plan the route (nothing for a direct call) and take its first target."""
        model, principal = ex.model, ex.principal
        assert model is not None
        assert principal is not None
        policy = self._planner.policy(principal, model.type)
        if policy is None and not model.pool:
            return
        route = await self._planner.route(principal, model, policy, ex.surface, ex.endpoint, ex.route)
        ex.routing = route
        target = await self._planner.next_target(route)
        if target is None:
            raise self._cooling_down(route)
        ex.model, ex.deployment = target

    def _cooling_down(self, route: Route) -> OdockError:
        """Every target's circuit is open: 503 at once, with the shortest wait."""
        waits = []
        for attempt in route.attempts:
            state = self._breakers.view(attempt["deployment"])
            if state is not None and state.open_until is not None:
                waits.append(state.open_until)
        headers = {}
        if waits:
            headers["Retry-After"] = str(max(1, int(min(waits) - time.time() + 0.999)))
        error = UpstreamCoolingDown(
            f"every deployment of this route is cooling down after failures: {route.summary()}",
            headers=headers,
        )
        error.extra["attempts"] = route.attempts
        return error

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo here (RoutedCall releases what further attempts took)."""


class RoutedCall:
    """The upstream call, attempt after attempt along ``ex.routing`` (direct without one)."""

    name = "call_upstream"

    def __init__(
        self,
        call: Stage,  # CallUpstream (traced when tracing is on: odock.telemetry.spans.TracedCall)
        resolve: ResolveProvider,
        limits: FinalGate,
        budgets: BudgetGate,
        planner: RoutePlanner,
        breakers: Breakers,
        in_flight: InFlight,
    ) -> None:
        self._call = call
        self._resolve = resolve
        self._limits = limits
        self._budgets = budgets
        self._planner = planner
        self._breakers = breakers
        self._in_flight = in_flight

    async def before(self, ex: Exchange) -> None:
        """Call the route's targets until one answers, or raise the last attempt's error."""
        route = ex.routing
        if route is None:
            await self._call.before(ex)
            return
        first_started: float | None = None
        while True:
            model, deployment = ex.model, ex.deployment
            assert model is not None
            assert deployment is not None
            route.begin()
            self._in_flight.enter(deployment.id)
            route.in_flight = deployment.id  # left in after() if the request ends meanwhile
            try:
                await self._attempt(ex)
            except OdockError as error:
                self._in_flight.leave(deployment.id)
                route.in_flight = None
                route.note(model, deployment, FAILED, error)
                await self._discard(ex)
                if counts_against_deployment(error):
                    await self._breakers.failed(deployment.id, retry_after_seconds(error))
                if not (
                    fires(error, route.triggers) and route.calls_left() and await self._advance(ex, route)
                ):
                    raise _final(route, error) from None
                first_started = first_started or ex.timings.upstream_started
                if route.delay_seconds:
                    await asyncio.sleep(route.delay_seconds)
                continue
            if first_started is not None:  # failed attempts are upstream time, not the gateway's
                ex.timings.upstream_started = first_started
            route.note(model, deployment, SUCCESS)
            await self._breakers.succeeded(deployment.id)
            ex.response_headers["x-odock-route-attempts"] = str(len(route.attempts))
            ex.response_headers["x-odock-route-model"] = model.name
            if deployment.provider is not None:
                ex.response_headers["x-odock-route-provider"] = deployment.provider.name
            return

    async def _attempt(self, ex: Exchange) -> None:
        await self._call.before(ex)
        stream = ex.upstream_stream
        if stream is not None:
            # Until the first chunk nothing has reached the client: a stream cut or stalled before
            # it is a failed attempt like any other.
            ex.upstream_stream = await _first_chunk_read(stream)

    async def _discard(self, ex: Exchange) -> None:
        """Forget the failed attempt's answer (and close its stream)."""
        if ex.upstream_stream is not None:
            await ex.upstream_stream.aclose()
        ex.upstream_stream = ex.unary = ex.usage = None
        ex.provider_request_id = None
        ex.timings.upstream_answered = None

    async def _advance(self, ex: Exchange, route: Route) -> bool:
        """Move ``ex`` to the next target it may use; False when none is left."""
        while (target := await self._planner.next_target(route)) is not None:
            model, deployment = target
            previous = ex.model
            assert previous is not None
            if model.id != previous.id:
                await self._limits.release_attempt(ex)
                ex.model = model
                try:
                    await self._limits.start_before(ex)
                    top_up = await self._budgets.top_up(ex, route.held)
                except OdockError as refusal:
                    route.refusal = refusal
                    route.note(model, deployment, REFUSED, refusal)
                    route.tried.update(d.id for d in self._planner.deployments(model))
                    continue
                if top_up is not None:
                    route.top_ups.append(top_up)
            ex.deployment = deployment
            try:
                await self._resolve.before(ex)
            except OdockError as unusable:
                route.refusal = unusable
                route.note(model, deployment, REFUSED, unusable)
                continue
            return True
        return False

    async def after(self, ex: Exchange) -> None:
        """Close the upstream stream; release the budget top-ups of further attempts."""
        await self._call.after(ex)
        route = ex.routing
        if route is None:
            return
        if route.in_flight is not None:
            self._in_flight.leave(route.in_flight)
        for reservation in route.top_ups:
            await self._budgets.release_top_up(ex, reservation)


def _final(route: Route, error: OdockError) -> OdockError:
    """The error the client gets when no target answered: the last attempt's (a refusal of the
    last candidate tried, or the last upstream failure), its message listing them all."""
    if route.attempts and route.attempts[-1]["outcome"] == REFUSED and route.refusal is not None:
        error = route.refusal
    if len(route.attempts) > 1:
        error.message = f"no routing target answered: {route.summary()}"
        error.extra["attempts"] = route.attempts
    return error


class _Peeked:
    """An upstream stream whose first chunk was already read."""

    def __init__(self, stream: StreamResult, chunks: AsyncIterator[StreamChunk], first: StreamChunk | None):
        self._stream = stream
        self._chunks = chunks
        self._first = first
        self.provider_request_id = stream.provider_request_id

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:
        if self._first is None:
            return
        yield self._first
        async for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _first_chunk_read(stream: StreamResult) -> StreamResult:
    chunks = aiter(stream)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    return _Peeked(stream, chunks, first)
