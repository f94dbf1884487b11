"""The pipeline's unwinding and the Concurrently group of stages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from datetime import UTC, datetime

import pytest

from odock.errors import BudgetExceeded, OdockError, RateLimited, ServerShuttingDown
from odock.llm.upstream import Endpoint
from odock.pipeline.exchange import ClientDisconnected, Exchange, Timings
from odock.pipeline.runner import Concurrently, Pipeline, Stage
from odock.surfaces.registry import OPENAI_CHAT

DEADLINE = 5.0  # seconds; only bounds a test that would otherwise hang on a regression


def exchange() -> Exchange:
    """A bare chat exchange."""
    return Exchange(
        request_id="rid-1",
        endpoint=Endpoint.CHAT,
        route="/v1/chat/completions",
        method="POST",
        headers={},
        client_ip=None,
        body=b"{}",
        received_at=datetime.now(UTC),
        timings=Timings(received=time.perf_counter()),
        surface=OPENAI_CHAT,
    )


class Recording:
    """A stage that logs its hooks, may wait on an event, and may fail.

    Like a stage over a remote store, its hooks send their command when started (logged as
    ``<name>.before``/``<name>.after``) and finish when awaited.
    """

    def __init__(
        self,
        name: str,
        log: list[str],
        *,
        wait_for: asyncio.Event | None = None,
        opens: asyncio.Event | None = None,
        rejects: OdockError | None = None,
        refuses_to_start: OdockError | None = None,
        after_fails: bool = False,
    ) -> None:
        self.name = name
        self._log = log
        self._wait_for = wait_for
        self._opens = opens
        self._rejects = rejects
        self._refuses_to_start = refuses_to_start
        self._after_fails = after_fails

    async def before(self, ex: Exchange) -> None:
        await self.start_before(ex)

    def start_before(self, ex: Exchange) -> Awaitable[None]:
        if self._refuses_to_start is not None:
            raise self._refuses_to_start
        self._log.append(f"{self.name}.before")
        if self._opens is not None:
            self._opens.set()
        return self._took()

    async def _took(self) -> None:
        if self._wait_for is not None:
            await self._wait_for.wait()
        # One more turn of the loop: a stage that waits on a store answers later, not at once.
        await asyncio.sleep(0)
        if self._rejects is not None:
            raise self._rejects
        self._log.append(f"{self.name}.took")

    async def after(self, ex: Exchange) -> None:
        await self.start_after(ex)

    def start_after(self, ex: Exchange) -> Awaitable[None]:
        self._log.append(f"{self.name}.after")
        if self._after_fails:
            raise RuntimeError(f"{self.name} could not clean up")
        return asyncio.sleep(0)


class Responder:
    """Records what was sent."""

    def __init__(self, *, client_leaves: bool = False, linger: asyncio.Event | None = None) -> None:
        self.errors: list[OdockError] = []
        self.answered = False
        self._client_leaves = client_leaves
        self._linger = linger  # set once answered; then send_answer waits (for a cancellation)

    @property
    def started(self) -> bool:
        return self.answered

    @property
    def finished(self) -> bool:
        return self.answered

    async def send_answer(self, ex: Exchange) -> None:
        self.answered = True
        if self._linger is not None:
            self._linger.set()
            await asyncio.Event().wait()

    async def send_error(self, ex: Exchange, error: OdockError) -> None:
        self.errors.append(error)

    async def while_connected(self, upstream: Awaitable[None]) -> None:
        if not self._client_leaves:
            await upstream
            return
        if isinstance(upstream, Coroutine):
            upstream.close()  # the call is abandoned before it ran
        raise ClientDisconnected()


async def run(*stages: Stage, responder: Responder | None = None) -> tuple[Responder, Exchange]:
    pipeline = Pipeline(stages)
    responder, ex = responder or Responder(), exchange()
    await asyncio.wait_for(pipeline.run(ex, responder), DEADLINE)
    return responder, ex


async def test_grouped_stages_wait_at_the_same_time() -> None:
    """The first stage waits for something only the second does: in turn, this would never end."""
    log: list[str] = []
    second_started = asyncio.Event()
    group = Concurrently(
        Recording("first", log, wait_for=second_started),
        Recording("second", log, opens=second_started),
    )
    responder, _ = await run(group)
    assert responder.answered
    assert group.name == "first+second"
    assert log[:2] == ["first.before", "second.before"]
    assert sorted(log[2:4]) == ["first.took", "second.took"]
    assert sorted(log[4:]) == ["first.after", "second.after"]


async def test_the_first_stage_s_rejection_wins_and_every_stage_cleans_up() -> None:
    """Both refuse: the client sees the first one's error; both after hooks still run."""
    log: list[str] = []
    group = Concurrently(
        Recording("limits", log, rejects=RateLimited("slow down")),
        Recording("budgets", log, rejects=BudgetExceeded("no money")),
    )
    responder, ex = await run(group)
    assert [type(e) for e in responder.errors] == [RateLimited]
    assert ex.http_status == 429
    assert sorted(e for e in log if e.endswith(".after")) == ["budgets.after", "limits.after"]


async def test_a_later_stage_s_rejection_is_raised_after_the_first_stage_took_its_share() -> None:
    """Only the second refuses: its error is the answer, and the first stage's after undoes its share."""
    log: list[str] = []
    group = Concurrently(Recording("limits", log), Recording("budgets", log, rejects=BudgetExceeded("no")))
    responder, _ = await run(group)
    assert [type(e) for e in responder.errors] == [BudgetExceeded]
    assert "limits.took" in log
    assert "limits.after" in log
    assert "budgets.after" in log
    assert not responder.answered


async def test_a_cancelled_request_waits_for_every_stage_before_it_unwinds() -> None:
    """Cancelled while the first stage waits: the group still waits for the second, then is cancelled."""
    log: list[str] = []
    first_waits, second_answers = asyncio.Event(), asyncio.Event()
    group = Concurrently(
        Recording("limits", log, opens=first_waits, wait_for=asyncio.Event()),
        Recording("budgets", log, wait_for=second_answers),
    )
    request = asyncio.get_running_loop().create_task(group.before(exchange()))  # the request's own task
    await asyncio.wait_for(first_waits.wait(), DEADLINE)  # both started; the first one waits
    request.cancel()
    await asyncio.sleep(0)  # let the cancellation arrive while the second stage still waits
    assert not request.done()
    second_answers.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(request, DEADLINE)
    assert "budgets.took" in log  # it finished what it took before the request unwound
    assert "limits.took" not in log


async def test_a_stage_that_refuses_before_sending_still_lets_the_others_finish() -> None:
    """The second refuses at once, the first took its share: the second's error; both unwind."""
    log: list[str] = []
    group = Concurrently(
        Recording("limits", log), Recording("budgets", log, refuses_to_start=BudgetExceeded("no"))
    )
    responder, _ = await run(group)
    assert [type(e) for e in responder.errors] == [BudgetExceeded]
    assert "limits.took" in log
    assert "limits.after" in log


async def test_the_first_stage_s_error_wins_however_each_stage_failed() -> None:
    """The first refuses only once its store answers, the second at once: the first's error."""
    log: list[str] = []
    group = Concurrently(
        Recording("limits", log, rejects=RateLimited("slow down")),
        Recording("budgets", log, refuses_to_start=BudgetExceeded("no")),
    )
    responder, _ = await run(group)
    assert [type(e) for e in responder.errors] == [RateLimited]


async def test_a_failing_after_hook_does_not_stop_the_other(caplog: pytest.LogCaptureFixture) -> None:
    """One stage failing to clean up is logged; the other still settles."""
    log: list[str] = []
    group = Concurrently(Recording("limits", log, after_fails=True), Recording("budgets", log))
    with caplog.at_level(logging.ERROR, logger="odock.pipeline.runner"):
        responder, _ = await run(group)
    assert responder.answered
    assert sorted(e for e in log if e.endswith(".after")) == ["budgets.after", "limits.after"]
    assert "stage limits failed in after()" in caplog.text


async def test_grouped_stages_run_inside_the_lifecycle_in_their_place() -> None:
    """Stages before the group finish before it starts; the group unwinds before them."""
    log: list[str] = []
    outer = Recording("outer", log)
    group = Concurrently(Recording("a", log), Recording("b", log))
    await run(outer, group)
    assert log[:2] == ["outer.before", "outer.took"]
    assert log[-1] == "outer.after"


def test_a_group_needs_two_stages() -> None:
    with pytest.raises(ValueError, match="at least two"):
        Concurrently(Recording("alone", []))


async def test_a_request_the_server_cancels_is_recorded_as_interrupted_and_unwinds() -> None:
    """Cancelled while waiting upstream: 503 server_shutting_down sent, outcome interrupted, all unwound."""
    log: list[str] = []
    upstream_waits = asyncio.Event()
    responder, ex = Responder(), exchange()
    upstream = Recording("upstream", log, opens=upstream_waits, wait_for=asyncio.Event())
    stages = [Recording("gate", log), upstream]
    request = asyncio.get_running_loop().create_task(Pipeline(stages).run(ex, responder))
    await asyncio.wait_for(upstream_waits.wait(), DEADLINE)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(request, DEADLINE)
    assert (ex.outcome, ex.http_status) == ("interrupted", 503)
    assert [type(e) for e in responder.errors] == [ServerShuttingDown]
    assert ex.error is not None
    assert ex.error.code == "server_shutting_down"
    assert log[-2:] == ["upstream.after", "gate.after"]


async def test_a_client_that_leaves_while_waiting_upstream_is_recorded_as_499_and_unwinds() -> None:
    """The responder reports a disconnect during the upstream wait: 499 client_disconnected, nothing sent."""
    log: list[str] = []
    responder, ex = await run(
        Recording("gate", log), Recording("upstream", log), responder=Responder(client_leaves=True)
    )
    assert (ex.outcome, ex.http_status, ex.error) == ("client_disconnected", 499, None)
    assert responder.errors == []
    assert not responder.answered
    assert log[-2:] == ["upstream.after", "gate.after"]


async def test_a_request_cancelled_once_its_answer_went_out_stays_a_success() -> None:
    """Cancelled after the whole answer went out but before send_answer returned: still a success."""
    log: list[str] = []
    answered = asyncio.Event()
    responder, ex = Responder(linger=answered), exchange()
    stages = [Recording("gate", log), Recording("upstream", log)]
    request = asyncio.get_running_loop().create_task(Pipeline(stages).run(ex, responder))
    await asyncio.wait_for(answered.wait(), DEADLINE)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(request, DEADLINE)
    assert (ex.outcome, ex.http_status, responder.errors) == ("success", 200, [])
    assert log[-2:] == ["upstream.after", "gate.after"]
