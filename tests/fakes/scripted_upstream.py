"""A programmable fake OpenAI upstream for the routing and resilience scenarios.

Each test scripts what the upstream does, request by request and per requested model, then
asserts what the client saw::

    fake.script("primary", fail(503, retry_after=2), stall_before_headers())
    fake.otherwise("primary", ok("fine"))     # once the queue is empty (the default is ok())
    ... drive the gateway ...
    assert fake.calls("primary") == 3 and fake.keys_used("primary") == ["sk-a", "sk-b", "sk-a"]

It speaks OpenAI Chat Completions (``POST /v1/chat/completions``) in the wire format of
``tests/fakes/openai_server.py`` (whose event and body builders it reuses): a unary JSON answer, or
an SSE stream of ``chat.completion.chunk`` events, a usage chunk when ``stream_options.include_usage``
asks for one, then ``data: [DONE]``. ``Authorization: Bearer <key>`` must name one of ``api_keys``
(any key when None); every request is recorded with its key before that check, so a rejected key
shows in :meth:`ScriptedUpstream.keys_used` but does not consume a scripted step.

Steps (one per request, in order)::

    ok(text, prompt_tokens, completion_tokens)  a normal answer, usage exactly as given
    fail(status, retry_after, message)          an OpenAI error body; ``retry-after`` when given
    stall_before_headers()                      nothing until release(), then a normal answer
    stall_after_headers()                       200 headers (stream: event-stream; unary: chunked
                                                JSON), nothing until release(), then the answer
    cut_before_first_chunk()                    stream: 200 headers, then the connection drops;
                                                unary: the connection drops before any answer
    cut_after_chunks(n)                         stream: n content chunks, then the connection drops;
                                                unary: headers and half the body, then it drops
    slow_first_byte(seconds)                    stream: headers at once, the first chunk after
                                                ``seconds``; unary: the answer after ``seconds``
    malformed_json()                            unary: 200 JSON whose body does not parse; stream:
                                                a ``data: {not json`` event, then ``[DONE]``

:func:`refused_port` is a local port that refuses connections; :func:`untrusted_tls` serves the
fake over HTTPS with a certificate nobody trusts (a TLS handshake failure for the gateway).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import socket
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from tests.fakes import script
from tests.fakes.openai_server import (
    _ERRORS,
    _Call,
    _completion,
    _drop_connection,
    _echo_usage,
    _Events,
    _invalid,
    _json,
    _sse,
)
from tests.fakes.threaded import ThreadedFake
from tests.fakes.tls import self_signed_certificate, server_context

DEFAULT_TEXT = "Hello from the scripted upstream."
RELEASE_TIMEOUT_SECONDS = 10.0
MALFORMED_BODY = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0,'


class Step(Protocol):
    """What the upstream does with one request."""

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        """Answer ``exchange``'s request (or fail to, which is the point of most steps)."""
        ...


# --- the steps ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ok:
    """A normal answer: ``text`` (streamed in four-character chunks) with exactly this usage."""

    text: str = DEFAULT_TEXT
    prompt_tokens: int = 10
    completion_tokens: int = 5

    def as_answer(self) -> script.Answer:
        """The answer in the form the OpenAI fake's builders write."""
        return script.Answer(
            text=self.text,
            tool_name=None,
            tool_arguments=None,
            reasoning=None,
            prompt_tokens=self.prompt_tokens,
            cached_tokens=0,
            completion_tokens=self.completion_tokens,
            reasoning_tokens=0,
        )

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        if not exchange.stream:
            return _json(200, exchange.completion(self))
        response = await exchange.open()
        await exchange.send_events(response, self)
        return response


@dataclass(frozen=True)
class Fail:
    """An OpenAI error answer with ``status`` (``retry-after`` header when given)."""

    status: int
    retry_after: float | None = None
    message: str | None = None  # None: OpenAI's own message for the status

    def error(self) -> dict[str, Any]:
        """The ``error`` object: OpenAI's for the status where the OpenAI fake has one."""
        canned = _ERRORS.get(f"fake-error-{self.status}")
        error = dict(canned[1]) if canned else _generic_error(self.status)
        if self.message is not None:
            error["message"] = self.message
        return error

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        headers = {} if self.retry_after is None else {"retry-after": f"{self.retry_after:g}"}
        return _json(self.status, {"error": self.error()}, headers)


@dataclass(frozen=True)
class StallBeforeHeaders:
    """Nothing at all until :meth:`ScriptedUpstream.release`, then ``then``."""

    then: Ok = Ok()

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        await exchange.released.wait()
        return await self.then.respond(exchange)


@dataclass(frozen=True)
class StallAfterHeaders:
    """200 headers, then nothing until :meth:`ScriptedUpstream.release`, then the rest of ``then``."""

    then: Ok = Ok()

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        response = await exchange.open()
        await exchange.released.wait()
        if exchange.stream:
            await exchange.send_events(response, self.then)
        else:
            await response.write(json.dumps(exchange.completion(self.then)).encode())
            await response.write_eof()
        return response


@dataclass(frozen=True)
class CutBeforeFirstChunk:
    """Stream: 200 headers, then the connection drops; unary: it drops before any answer."""

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        response = await exchange.open() if exchange.stream else web.StreamResponse()
        return await _drop_connection(exchange.request, response)


@dataclass(frozen=True)
class CutAfterChunks:
    """Stream: ``chunks`` content chunks of ``then``, then the connection drops (no usage, no [DONE]);
    unary: headers and half the body, then it drops."""

    chunks: int
    then: Ok = Ok()

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        response = await exchange.open()
        if exchange.stream:
            await exchange.send_events(response, self.then, cut_after=self.chunks)
        else:
            body = json.dumps(exchange.completion(self.then)).encode()
            await response.write(body[: len(body) // 2])
        return await _drop_connection(exchange.request, response)


@dataclass(frozen=True)
class SlowFirstByte:
    """Stream: headers at once, the first event after ``seconds``; unary: the answer after ``seconds``."""

    seconds: float
    then: Ok = Ok()

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        if not exchange.stream:
            await asyncio.sleep(self.seconds)  # the delay is the scenario, not a synchronisation
            return await self.then.respond(exchange)
        response = await exchange.open()
        await exchange.send_events(response, self.then, first_delay=self.seconds)
        return response


@dataclass(frozen=True)
class MalformedJson:
    """Unary: 200 ``application/json`` whose body does not parse; stream: a ``data: {not json`` event."""

    async def respond(self, exchange: _Exchange) -> web.StreamResponse:
        if not exchange.stream:
            return web.Response(status=200, body=MALFORMED_BODY, content_type="application/json")
        response = await exchange.open()
        await response.write(b"data: {not json\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def ok(text: str = DEFAULT_TEXT, prompt_tokens: int = 10, completion_tokens: int = 5) -> Ok:
    """A normal answer with exactly this usage."""
    return Ok(text, prompt_tokens, completion_tokens)


def fail(status: int, retry_after: float | None = None, message: str | None = None) -> Fail:
    """An OpenAI error answer with ``status``."""
    return Fail(status, retry_after, message)


def stall_before_headers() -> StallBeforeHeaders:
    """No answer until release()."""
    return StallBeforeHeaders()


def stall_after_headers() -> StallAfterHeaders:
    """200 headers, then nothing until release()."""
    return StallAfterHeaders()


def cut_before_first_chunk() -> CutBeforeFirstChunk:
    """The connection drops before the first event."""
    return CutBeforeFirstChunk()


def cut_after_chunks(n: int) -> CutAfterChunks:
    """The connection drops after ``n`` content chunks."""
    return CutAfterChunks(n)


def slow_first_byte(seconds: float) -> SlowFirstByte:
    """The first byte of the answer (stream: the first event) comes after ``seconds``."""
    return SlowFirstByte(seconds)


def malformed_json() -> MalformedJson:
    """A 200 whose JSON (body or event) does not parse."""
    return MalformedJson()


def _generic_error(status: int) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"message": f"Scripted upstream error (HTTP {status}).", "type": kind, "param": None, "code": None}


# --- one request ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Exchange:
    """One admitted request and the means to answer it."""

    request: web.Request
    call: _Call
    released: asyncio.Event  # set by release(); replaced by a fresh one for later stalls

    @property
    def stream(self) -> bool:
        return bool(self.call.body.get("stream"))

    async def open(self) -> web.StreamResponse:
        """Send 200 headers: an event stream, or chunked JSON for a unary answer."""
        kind = "text/event-stream; charset=utf-8" if self.stream else "application/json"
        response = web.StreamResponse(headers={"content-type": kind, "x-request-id": "req_scripted"})
        response.enable_chunked_encoding()
        await response.prepare(self.request)
        return response

    def completion(self, answer: Ok) -> dict[str, Any]:
        """The ``chat.completion`` body of ``answer``."""
        body = _completion(self.call)
        body["choices"][0]["message"]["content"] = answer.text
        body["usage"] = _echo_usage(answer.as_answer())
        return body

    async def send_events(
        self,
        response: web.StreamResponse,
        answer: Ok,
        *,
        first_delay: float = 0.0,
        cut_after: int | None = None,
    ) -> None:
        """Stream ``answer``'s events and ``[DONE]``; stop short after ``cut_after`` content chunks."""
        include_usage = bool((self.call.body.get("stream_options") or {}).get("include_usage"))
        content_sent = 0
        for index, frame in enumerate(_Events(self.call, include_usage).echo(answer.as_answer())):
            if index == 0 and first_delay:
                await asyncio.sleep(first_delay)
            await response.write(_sse(frame))
            content_sent += bool(frame["choices"] and frame["choices"][0]["delta"].get("content"))
            if content_sent == cut_after:
                return
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()


# --- the server -------------------------------------------------------------------------------------
class ScriptedUpstream(ThreadedFake):
    """The fake; script it from the test's thread, before or between requests."""

    vendor = "Scripted OpenAI"

    def __init__(self, *, api_keys: Iterable[str] | None = None, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(api_key=None, tls=tls)  # keys are checked here, against the whole pool
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self._queues: dict[str, deque[Step]] = {}
        self._fallbacks: dict[str, Step] = {}
        self._released: asyncio.Event | None = None  # made on the server's loop

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    async def _serve(self) -> None:
        self._released = asyncio.Event()
        await super()._serve()

    def stop(self) -> None:
        """Wake stalled handlers, then stop serving."""
        self.release()
        super().stop()

    # --- what tests do ------------------------------------------------------------------------
    def script(self, slug: str, *steps: Step) -> None:
        """Queue ``steps`` for the next requests whose body ``model`` is ``slug``, in order."""
        with self._lock:
            self._queues.setdefault(slug, deque()).extend(steps)

    def otherwise(self, slug: str, step: Step) -> None:
        """What requests for ``slug`` get once its queue is empty (by default ok())."""
        with self._lock:
            self._fallbacks[slug] = step

    def calls(self, slug: str | None = None) -> int:
        """Requests received (rejected keys included), for ``slug`` or in all."""
        return sum(1 for r in self.requests if slug is None or _model_of(r.body) == slug)

    def keys_used(self, slug: str) -> list[str]:
        """The bearer key of each request for ``slug``, in order (``""`` when there was none)."""
        return [_bearer(r.headers) for r in self.requests if _model_of(r.body) == slug]

    def release(self) -> None:
        """Wake every stalled handler (later stalls stall again); returns once they are woken."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._release(), loop).result(timeout=RELEASE_TIMEOUT_SECONDS)

    async def _release(self) -> None:
        assert self._released is not None
        self._released.set()
        self._released = asyncio.Event()

    # --- the route ------------------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        received = await self._record(request)
        if self.api_keys is not None and _bearer(received.headers) not in self.api_keys:
            return _json(401, {"error": _ERRORS["fake-error-401"][1]})
        body = received.body
        if not isinstance(body, dict):
            return _json(400, {"error": _invalid("We could not parse the JSON body of your request.")})
        model = body.get("model")
        if not isinstance(model, str):
            return _json(400, {"error": _invalid("you must provide a model parameter", param="model")})
        if not isinstance(body.get("messages"), list):
            return _json(400, {"error": _invalid("'messages' is a required property", param="messages")})
        assert self._released is not None
        exchange = _Exchange(request, _Call(model=model, body=body, azure=False), self._released)
        return await self._next_step(model).respond(exchange)

    def _next_step(self, slug: str) -> Step:
        with self._lock:
            queue = self._queues.get(slug)
            if queue:
                return queue.popleft()
            return self._fallbacks.get(slug, Ok())


def _model_of(body: Any) -> str | None:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def _bearer(headers: dict[str, str]) -> str:
    return headers.get("authorization", "").removeprefix("Bearer ")


# --- module helpers ---------------------------------------------------------------------------------
@functools.cache
def _unlistened_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    atexit.register(sock.close)
    return sock


def refused_port() -> int:
    """A local port where a connection is refused, for as long as the process runs.

    It is bound and never listened on (one socket for the process): nothing else can take it,
    and a connect gets a reset at once (ECONNREFUSED), unlike a closed port that may be reused.
    """
    return int(_unlistened_socket().getsockname()[1])


def untrusted_tls(directory: Path) -> ssl.SSLContext:
    """A server context (``ScriptedUpstream(tls=...)``) with a fresh self-signed certificate, written
    to ``directory``, that no client trusts unless told to: the handshake fails certificate verification."""
    return server_context(*self_signed_certificate(directory))


__all__ = [
    "CutAfterChunks",
    "CutBeforeFirstChunk",
    "Fail",
    "MalformedJson",
    "Ok",
    "ScriptedUpstream",
    "SlowFirstByte",
    "StallAfterHeaders",
    "StallBeforeHeaders",
    "Step",
    "cut_after_chunks",
    "cut_before_first_chunk",
    "fail",
    "malformed_json",
    "ok",
    "refused_port",
    "slow_first_byte",
    "stall_after_headers",
    "stall_before_headers",
    "untrusted_tls",
]
