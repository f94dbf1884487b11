"""The ASGI responder: SSE relay, usage stripping, disconnects and error rendering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import orjson
import pytest

from odock.errors import UpstreamRateLimited, UpstreamStreamInterrupted
from odock.llm.upstream import Endpoint, StreamChunk, Usage
from odock.pipeline.exchange import ClientDisconnected, Exchange, Timings
from odock.surfaces.framing import DataEvents, sse_frame
from odock.surfaces.registry import OPENAI_CHAT
from odock.web.asgi import Message
from odock.web.responder import AsgiResponder

DONE = DataEvents.DONE

CONTENT = StreamChunk(b'{"choices":[{"delta":{"content":"hi"}}]}', text_chars=2)
USAGE_ONLY = StreamChunk(
    b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}',
    usage=Usage(1, 1, 2),
    usage_only=True,
)


class _Stream:
    """An upstream stream that yields ``chunks``, then raises ``then`` or waits for ``hold``."""

    provider_request_id: str | None = None

    def __init__(
        self, chunks: list[StreamChunk], *, then: Exception | None = None, hold: asyncio.Event | None = None
    ) -> None:
        self._chunks = chunks
        self._then = then
        self._hold = hold

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamChunk]:
        for chunk in self._chunks:
            yield chunk
        if self._hold is not None:
            await self._hold.wait()
        if self._then is not None:
            raise self._then

    async def aclose(self) -> None:
        return None


class _Client:
    """The ASGI server's side: records what was sent, reports a disconnect when told to."""

    def __init__(self, *, leave_after_bodies: int | None = None, leave_at_end: bool = False) -> None:
        self.messages: list[Message] = []
        self.gone = asyncio.Event()
        self._leave_after_bodies = leave_after_bodies
        self._leave_at_end = leave_at_end

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        bodies = [m for m in self.messages if m["type"] == "http.response.body"]
        if self._leave_after_bodies is not None and len(bodies) >= self._leave_after_bodies:
            self.gone.set()
        if self._leave_at_end and message["type"] == "http.response.body" and not message.get("more_body"):
            # Like a server that reports the exchange over before send() returns to the app.
            self.gone.set()
            for _ in range(3):
                await asyncio.sleep(0)

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")

    @property
    def start(self) -> Message:
        return next(m for m in self.messages if m["type"] == "http.response.start")


def _exchange(stream: _Stream, *, include_usage: bool = False) -> Exchange:
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
        stream=True,
        include_usage=include_usage,
        upstream_stream=stream,
    )


async def test_usage_chunk_hidden_unless_asked_for() -> None:
    """The usage-only chunk is metered always but forwarded only when the client asked."""
    for include_usage in (False, True):
        client = _Client()
        ex = _exchange(_Stream([CONTENT, USAGE_ONLY]), include_usage=include_usage)
        await AsgiResponder(client.send, client.receive).send_answer(ex)
        assert ex.usage is not None
        assert ex.usage.total_tokens == 2
        assert (USAGE_ONLY.data in client.body) is include_usage
        assert client.body.endswith(DONE)
        assert ex.outcome == "success"


async def test_multi_line_payload_stays_one_event() -> None:
    """A payload with newlines is framed as several data lines of one event."""
    assert sse_frame(b'{\n "a": 1\n}') == b'data: {\ndata:  "a": 1\ndata: }\n\n'
    client = _Client()
    await AsgiResponder(client.send, client.receive).send_answer(_exchange(_Stream([StreamChunk(b"{\n}")])))
    assert client.body == b"data: {\ndata: }\n\n" + DONE


async def test_disconnect_cancels_relay() -> None:
    """A client leaving mid-stream stops the relay at once and is marked client_disconnected."""
    client = _Client(leave_after_bodies=1)
    ex = _exchange(_Stream([CONTENT], hold=asyncio.Event()))
    await asyncio.wait_for(AsgiResponder(client.send, client.receive).send_answer(ex), timeout=5)
    assert (ex.outcome, ex.http_status) == ("client_disconnected", 499)
    assert ex.streamed_chunks == 1
    assert DONE not in client.body


async def test_end_reported_with_last_frame_is_not_a_disconnect() -> None:
    """A server that reports the exchange over as the last frame goes out does not turn success into 499."""
    client = _Client(leave_at_end=True)
    ex = _exchange(_Stream([CONTENT, USAGE_ONLY]))
    await AsgiResponder(client.send, client.receive).send_answer(ex)
    assert (ex.outcome, ex.http_status) == ("success", 200)
    assert client.body.endswith(DONE)


async def test_failure_after_start_is_reported_in_band() -> None:
    """An upstream failure mid-stream ends the stream with an error event and never [DONE]."""
    client = _Client()
    ex = _exchange(_Stream([CONTENT], then=UpstreamStreamInterrupted()))
    responder = AsgiResponder(client.send, client.receive)
    try:
        await responder.send_answer(ex)
    except UpstreamStreamInterrupted as error:
        await responder.send_error(ex, error)
    else:
        raise AssertionError("the interruption was swallowed")
    assert client.start["status"] == 200
    last = client.body.rsplit(b"\n\n", 2)[-2]
    assert orjson.loads(last.removeprefix(b"data: "))["error"]["code"] == "upstream_stream_interrupted"
    assert DONE not in client.body
    assert client.messages[-1]["more_body"] is False


async def test_error_before_start_carries_headers() -> None:
    """A JSON error response keeps the error's headers and adds the request id and overhead."""
    client = _Client()
    ex = _exchange(_Stream([]))
    error = UpstreamRateLimited("slow down", upstream_status=429, headers={"retry-after": "3"})
    await AsgiResponder(client.send, client.receive).send_error(ex, error)
    headers = dict(client.start["headers"])
    assert client.start["status"] == 429
    assert headers[b"retry-after"] == b"3"
    assert headers[b"x-request-id"] == b"rid-1"
    assert float(headers[b"x-odock-overhead-ms"]) >= 0
    assert orjson.loads(client.body)["error"]["code"] == "upstream_rate_limited"


async def test_client_leaving_while_waiting_upstream_cancels_the_call() -> None:
    """A client that leaves while the upstream call runs cancels that call and raises ClientDisconnected."""
    client = _Client()
    responder = AsgiResponder(client.send, client.receive)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def upstream() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a provider that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.ensure_future(responder.while_connected(upstream()))
    await asyncio.wait_for(started.wait(), timeout=5)
    client.gone.set()
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(waiting, timeout=5)
    assert cancelled.is_set()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_answer_before_disconnect_is_kept_and_a_later_disconnect_cancels_nothing() -> None:
    """An upstream call that answers is not cancelled by a disconnect that comes after it."""
    client = _Client()
    responder = AsgiResponder(client.send, client.receive)
    await asyncio.wait_for(responder.while_connected(asyncio.sleep(0)), timeout=5)
    client.gone.set()
    for _ in range(3):
        await asyncio.sleep(0)  # let a (wrongly) surviving watch run; nothing may be cancelled
    assert not client.messages


async def test_server_cancellation_propagates_and_stops_the_relay() -> None:
    """A request cancelled mid-stream (shutdown past grace) stops its relay before the stream is closed."""
    client = _Client()
    hold = asyncio.Event()
    stream = _Stream([CONTENT], hold=hold)
    ex = _exchange(stream)
    request = asyncio.ensure_future(AsgiResponder(client.send, client.receive).send_answer(ex))
    for _ in range(100):  # a bounded number of loop turns for the first chunk to be relayed
        if ex.streamed_chunks:
            break
        await asyncio.sleep(0)
    assert ex.streamed_chunks == 1
    relays = [t for t in asyncio.all_tasks() if t is not request and t is not asyncio.current_task()]
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(request, timeout=5)
    assert relays
    assert all(t.done() for t in relays), "the relay kept running after its request was cancelled"
    assert DONE not in client.body


class _Connection:
    """A server connection that reports its loss by callback (as Odock's HTTP protocol does)."""

    def __init__(self, *, lost: bool = False) -> None:
        self.lost = lost
        self.on_lost: Callable[[], None] | None = None

    def watch_client(self, on_lost: Callable[[], None] | None) -> None:
        if on_lost is not None and self.lost:
            on_lost()
            return
        self.on_lost = on_lost

    def lose(self) -> None:
        self.lost = True
        if self.on_lost is not None:
            self.on_lost()


async def test_connection_loss_reported_by_the_server_cancels_the_upstream_call() -> None:
    """With a server connection that reports its loss, no receive() task is needed to cancel the call."""
    client, connection = _Client(), _Connection()
    responder = AsgiResponder(client.send, client.receive, connection)
    started = asyncio.Event()

    async def upstream() -> None:
        started.set()
        await asyncio.Event().wait()

    waiting = asyncio.ensure_future(responder.while_connected(upstream()))
    await asyncio.wait_for(started.wait(), timeout=5)
    connection.lose()
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(waiting, timeout=5)
    assert connection.on_lost is None  # the watch was withdrawn


async def test_a_client_already_gone_never_starts_the_upstream_call() -> None:
    """A connection lost before the upstream wait begins cancels the call at its first step."""
    client = _Client()
    responder = AsgiResponder(client.send, client.receive, _Connection(lost=True))
    reached = []

    async def upstream() -> None:
        await asyncio.sleep(0)
        reached.append(True)

    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(responder.while_connected(upstream()), timeout=5)
    assert reached == []
