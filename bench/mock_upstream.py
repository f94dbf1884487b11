"""A fast mock upstream for benchmarks, in OpenAI's and Anthropic's wire formats, run as its own process.

Routes::

    POST /v1/chat/completions   non-streaming: a canned completion with usage
                                "stream": true: SSE, ``chunks`` content chunks ``"t0 "``, ``"t1 "``, …
                                one every ``pacing`` seconds, a finish chunk, a usage chunk
                                (``choices: []``) only when ``stream_options.include_usage`` is
                                true, then ``data: [DONE]``
    POST /v1/embeddings         one 8-dimensional vector per input, with usage
    POST /v1/messages           Anthropic's Messages API (needs ``model``, ``messages``, ``max_tokens``;
                                the key and ``anthropic-version`` headers are not checked)
                                non-streaming: a canned ``Message`` with usage
                                "stream": true: named SSE events message_start,
                                content_block_start, ``chunks`` content_block_delta text_delta
                                events ``"t0 "``, ``"t1 "``, … one every ``pacing`` seconds,
                                content_block_stop, message_delta (stop reason, output usage),
                                message_stop

``latency`` delays the answer (the first chunk of a stream). A request may override the
defaults (``bench_chunks``, ``bench_pacing_ms``, ``bench_latency_ms``), so one mock serves
benchmark cases with different stream shapes: an OpenAI body in ``metadata``; an Anthropic body,
whose ``metadata`` holds only ``user_id``, in ``metadata.user_id`` as ``name=value`` pairs joined
by ``;`` (e.g. ``"bench_chunks=16;bench_pacing_ms=20"``). ``user_id`` is used rather than a header
because the gateway carries it to the upstream on both paths a benchmark measures: passed through
from an Anthropic client, and translated from an OpenAI client's ``user``.

Two interchangeable servers speak this: ``protocol`` (a raw ``asyncio.Protocol`` with a minimal
HTTP/1.1 keep-alive parser, the default) and ``aiohttp`` (aiohttp's low-level ``web.Server``).
``bench/run.py --compare-mock`` measures both; the raw protocol is the faster one (numbers in
docs/performance.md), which matters because the mock shares a core with the load driver.

    python bench/mock_upstream.py --port 9100 [--impl protocol|aiohttp] [--latency-ms 0]
                                  [--chunks 16] [--pacing-ms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
from aiohttp import web

Impl = Literal["protocol", "aiohttp"]
IMPLS: tuple[Impl, ...] = ("protocol", "aiohttp")
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MESSAGES_PATH = "/v1/messages"
ROUTES = (CHAT_PATH, EMBEDDINGS_PATH, MESSAGES_PATH)
PROMPT_TOKENS = 12
COMPLETION_TOKENS = 16
EMBEDDING_DIMENSIONS = 8
EMBEDDING_TOKENS_PER_INPUT = 4
CREATED = 1_700_000_000
DONE_EVENT = b"data: [DONE]\n\n"
MAX_HEAD_BYTES = 64 * 1024
_SLOT = "__bench_slot__"  # where the chunk number goes in the pre-encoded content event


@dataclass(frozen=True)
class MockConfig:
    """Defaults of the mock: fixed latency, and the shape of a stream."""

    latency: float = 0.0
    chunks: int = 16
    pacing: float = 0.010


@dataclass(frozen=True)
class ChatPlan:
    """What one chat request asked for, after the per-request overrides."""

    model: str
    stream: bool
    include_usage: bool
    chunks: int
    pacing: float
    latency: float
    anthropic: bool = False  # the Messages API's wire format, else OpenAI's


class BadRequest(Exception):
    """The request body is not what an OpenAI (or, on /v1/messages, an Anthropic) client sends."""


class WireFormat:
    """Both wire formats, with the per-model parts encoded once and reused.

    A route's request is read into a :class:`ChatPlan` (``chat_plan`` or ``messages_plan``);
    ``unary_body``, ``stream_event`` and ``stream_tail`` then answer it in its own format.
    """

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self._chat: dict[str, bytes] = {}
        self._chunk_parts: dict[str, tuple[bytes, bytes]] = {}
        self._messages: dict[str, bytes] = {}

    def chat_plan(self, body: bytes) -> ChatPlan:
        """Read the fields that shape the answer (and the benchmark overrides in ``metadata``)."""
        data = _json_object(body)
        model = data.get("model")
        if not isinstance(model, str) or not isinstance(data.get("messages"), list):
            raise BadRequest("'model' and 'messages' are required")
        options = data.get("stream_options") or {}
        chunks, pacing, latency = self._shape(data.get("metadata") or {})
        return ChatPlan(
            model=model,
            stream=bool(data.get("stream")),
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
            chunks=chunks,
            pacing=pacing,
            latency=latency,
        )

    def messages_plan(self, body: bytes) -> ChatPlan:
        """Read an Anthropic Messages body (and the benchmark overrides in ``metadata.user_id``)."""
        data = _json_object(body)
        model = data.get("model")
        if not isinstance(model, str) or not isinstance(data.get("messages"), list):
            raise BadRequest("'model' and 'messages' are required")
        if not isinstance(data.get("max_tokens"), int):
            raise BadRequest("max_tokens: Field required")
        meta = data.get("metadata") or {}
        user_id = meta.get("user_id") if isinstance(meta, dict) else None
        chunks, pacing, latency = self._shape(_pairs(user_id) if isinstance(user_id, str) else {})
        return ChatPlan(
            model=model,
            stream=data.get("stream") is True,
            include_usage=True,  # an Anthropic stream always reports usage
            chunks=chunks,
            pacing=pacing,
            latency=latency,
            anthropic=True,
        )

    def _shape(self, overrides: Any) -> tuple[int, float, float]:
        """Chunks, pacing and latency (seconds): the defaults, or the request's overrides."""
        cfg = self.config
        try:
            chunks = max(1, int(overrides.get("bench_chunks", cfg.chunks)))
            pacing = max(0.0, float(overrides.get("bench_pacing_ms", cfg.pacing * 1000)) / 1000)
            latency = max(0.0, float(overrides.get("bench_latency_ms", cfg.latency * 1000)) / 1000)
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadRequest(f"bad benchmark override: {exc}") from exc
        return chunks, pacing, latency

    def unary_body(self, plan: ChatPlan) -> bytes:
        """The non-streaming answer to ``plan`` in its wire format."""
        return self.message_body(plan.model) if plan.anthropic else self.chat_body(plan.model)

    def stream_event(self, plan: ChatPlan, index: int) -> bytes:
        """The SSE bytes carrying content chunk ``index`` (the stream's opening events before chunk 0)."""
        if not plan.anthropic:
            return self.content_event(plan.model, index)
        if index == 0:
            return _message_opening(plan.model) + _TEXT_DELTA[0] + b"0" + _TEXT_DELTA[1]
        return _TEXT_DELTA[0] + str(index).encode() + _TEXT_DELTA[1]

    def stream_tail(self, plan: ChatPlan) -> bytes:
        """What follows the last content chunk of ``plan``'s stream, to its end."""
        return _message_tail(plan.chunks) if plan.anthropic else self.chat_tail(plan)

    def message_body(self, model: str) -> bytes:
        """A complete non-streaming Anthropic ``Message``."""
        body = self._messages.get(model)
        if body is None:
            body = orjson.dumps(
                {
                    **_message(model),
                    "content": [{"type": "text", "text": "Hello from the benchmark mock upstream."}],
                    "stop_reason": "end_turn",
                    "usage": _anthropic_usage(COMPLETION_TOKENS),
                }
            )
            self._messages[model] = body
        return body

    def chat_body(self, model: str) -> bytes:
        """A complete non-streaming chat completion."""
        body = self._chat.get(model)
        if body is None:
            body = orjson.dumps(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": model,
                    "system_fingerprint": "fp_bench",
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "Hello from the benchmark mock upstream.",
                            },
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": _usage(PROMPT_TOKENS, COMPLETION_TOKENS),
                }
            )
            self._chat[model] = body
        return body

    def content_event(self, model: str, index: int) -> bytes:
        """SSE event carrying content chunk ``index`` (text ``"t<index> "``)."""
        parts = self._chunk_parts.get(model)
        if parts is None:
            head = orjson.dumps(_chunk(model, {"content": _SLOT}, None)).split(_SLOT.encode())
            parts = (b"data: " + head[0] + b"t", b" " + head[1] + b"\n\n")
            self._chunk_parts[model] = parts
        if index == 0:
            return _event(_chunk(model, {"role": "assistant", "content": "t0 "}, None))
        return parts[0] + str(index).encode() + parts[1]

    def chat_tail(self, plan: ChatPlan) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        tail = _event(_chunk(plan.model, {}, "stop"))
        if plan.include_usage:
            usage = {
                **_chunk(plan.model, {}, None),
                "choices": [],
                "usage": _usage(PROMPT_TOKENS, plan.chunks),
            }
            tail += _event(usage)
        return tail + DONE_EVENT

    def embeddings_body(self, body: bytes) -> bytes:
        """One vector per input, with usage."""
        data = _json_object(body)
        raw = data.get("input")
        inputs = raw if isinstance(raw, list) else [raw]
        if not inputs or data.get("model") is None:
            raise BadRequest("'model' and a non-empty 'input' are required")
        vector = [round(0.1 * (i + 1), 1) for i in range(EMBEDDING_DIMENSIONS)]
        tokens = EMBEDDING_TOKENS_PER_INPUT * len(inputs)
        return orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": vector} for i in range(len(inputs))
                ],
                "model": data["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chunk(model: str, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _error_body(message: str, path: str = CHAT_PATH) -> bytes:
    """A 4xx body in the route's format (Anthropic's on /v1/messages, else OpenAI's)."""
    if path == MESSAGES_PATH:
        return orjson.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})


def _pairs(text: str) -> dict[str, str]:
    """``"a=1;b=2"`` as ``{"a": "1", "b": "2"}`` (parts without ``=`` are ignored)."""
    pairs = (part.split("=", 1) for part in text.split(";") if "=" in part)
    return {name.strip(): value.strip() for name, value in pairs}


def _message(model: str) -> dict[str, Any]:
    """The fields every Anthropic ``Message`` starts with."""
    return {"id": "msg_bench", "type": "message", "role": "assistant", "model": model, "stop_sequence": None}


def _anthropic_usage(output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": PROMPT_TOKENS,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _named(payload: dict[str, Any]) -> bytes:
    """One named SSE event, as Anthropic frames them: ``event: <type>`` then its ``data:``."""
    return b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


@functools.cache
def _message_opening(model: str) -> bytes:
    """message_start (input usage) and the opening of the one text block."""
    start = {**_message(model), "content": [], "stop_reason": None, "usage": _anthropic_usage(1)}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    return _named({"type": "message_start", "message": start}) + _named(block)


@functools.cache
def _message_tail(chunks: int) -> bytes:
    """content_block_stop, message_delta with the stop reason and output usage, message_stop."""
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": chunks},
    }
    return (
        _named({"type": "content_block_stop", "index": 0}) + _named(delta) + _named({"type": "message_stop"})
    )


def _split_at_slot(event: bytes) -> tuple[bytes, bytes]:
    head, tail = event.split(_SLOT.encode())
    return head, tail


# The text_delta event of chunk n is head + b"<n>" + tail.
_TEXT_DELTA = _split_at_slot(
    _named({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"t{_SLOT} "}})
)


# --- the raw asyncio.Protocol server -------------------------------------------------------

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
}
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


@dataclass
class _Request:
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool


class _Connection(asyncio.Protocol):
    """One client connection: parses requests one at a time (keep-alive, no pipelining overlap)."""

    def __init__(self, wire: WireFormat) -> None:
        self._wire = wire
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        while not self._busy and self._transport is not None:
            request = self._next_request()
            if request is None:
                return
            self._dispatch(request)

    def _next_request(self) -> _Request | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._fail(400, "request head too large")
            return None
        lines = bytes(buffer[:end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            self._fail(400, "malformed request line")
            return None
        length = 0
        keep_alive = parts[2] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection":
                token = value.strip().lower()
                keep_alive = token == b"keep-alive" or (keep_alive and token != b"close")
            elif name == b"transfer-encoding":
                self._fail(411, "chunked request bodies are not supported")
                return None
        total = end + 4 + length
        if len(buffer) < total:
            return None
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        return _Request(parts[0], parts[1].split(b"?", 1)[0], body, keep_alive)

    def _dispatch(self, request: _Request) -> None:
        path = request.path.decode("latin-1")
        if path not in ROUTES:
            self._reply(404, _error_body(f"no route {path}"), request.keep_alive)
            return
        if request.method != b"POST":
            self._reply(405, _error_body("use POST"), request.keep_alive)
            return
        try:
            if path == EMBEDDINGS_PATH:
                self._later(
                    self._wire.config.latency,
                    self._reply,
                    200,
                    self._wire.embeddings_body(request.body),
                    request.keep_alive,
                )
                return
            if path == MESSAGES_PATH:
                plan = self._wire.messages_plan(request.body)
            else:
                plan = self._wire.chat_plan(request.body)
        except BadRequest as exc:
            self._reply(400, _error_body(str(exc), path), request.keep_alive)
            return
        if plan.stream:
            self._later(plan.latency, self._stream, plan, 0, request.keep_alive)
        else:
            self._later(plan.latency, self._reply, 200, self._wire.unary_body(plan), request.keep_alive)

    def _later(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        if delay <= 0:
            action(*args)
            return
        self._busy = True
        self._timer = self._loop.call_later(delay, action, *args)

    def _reply(self, status: int, body: bytes, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        connection = b"" if keep_alive else b"connection: close\r\n"
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n" % (
            status,
            _REASONS[status],
            len(body),
            connection,
        )
        transport.write(head + body)
        self._finished(keep_alive)

    def _stream(self, plan: ChatPlan, index: int, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        self._busy = True
        out = bytearray(_SSE_HEAD) if index == 0 else bytearray()
        while True:
            out += _http_chunk(self._wire.stream_event(plan, index))
            index += 1
            if index >= plan.chunks:
                out += _http_chunk(self._wire.stream_tail(plan)) + b"0\r\n\r\n"
                transport.write(bytes(out))
                self._finished(keep_alive)
                return
            if plan.pacing > 0:
                transport.write(bytes(out))
                self._timer = self._loop.call_later(plan.pacing, self._stream, plan, index, keep_alive)
                return

    def _finished(self, keep_alive: bool) -> None:
        self._busy = False
        self._timer = None
        if not keep_alive and self._transport is not None:
            self._transport.close()
            return
        if self._buffer:
            self._serve_buffered()

    def _fail(self, status: int, message: str) -> None:
        self._busy = True  # nothing more is read from this connection
        self._buffer.clear()
        self._reply(status, _error_body(message), keep_alive=False)


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _serve_protocol(wire: WireFormat, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(wire), host, port, backlog=4096, reuse_address=True)


# --- the aiohttp low-level server ----------------------------------------------------------


def _aiohttp_handler(wire: WireFormat) -> Callable[[web.BaseRequest], Any]:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.path not in ROUTES:
            return _json_response(404, _error_body(f"no route {request.path}"))
        if request.method != "POST":
            return _json_response(405, _error_body("use POST"))
        body = await request.read()
        try:
            if request.path == EMBEDDINGS_PATH:
                answer = wire.embeddings_body(body)
                await _pause(wire.config.latency)
                return _json_response(200, answer)
            plan = wire.messages_plan(body) if request.path == MESSAGES_PATH else wire.chat_plan(body)
        except BadRequest as exc:
            return _json_response(400, _error_body(str(exc), request.path))
        await _pause(plan.latency)
        if not plan.stream:
            return _json_response(200, wire.unary_body(plan))
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        for index in range(plan.chunks):
            if index:
                await _pause(plan.pacing)
            await response.write(wire.stream_event(plan, index))
        await response.write(wire.stream_tail(plan))
        await response.write_eof()
        return response

    return handle


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)  # the configured upstream latency or pacing, not synchronisation


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


async def _serve_aiohttp(wire: WireFormat, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    server = web.Server(_aiohttp_handler(wire), access_log=None)
    return await loop.create_server(server, host, port, backlog=4096, reuse_address=True)


async def start_mock(config: MockConfig, host: str, port: int, impl: Impl = "protocol") -> asyncio.Server:
    """Start a mock upstream on the running loop; the caller closes the returned server."""
    wire = WireFormat(config)
    if impl == "aiohttp":
        return await _serve_aiohttp(wire, host, port)
    return await _serve_protocol(wire, host, port)


async def _serve_forever(config: MockConfig, host: str, port: int, impl: Impl) -> None:
    server = await start_mock(config, host, port, impl)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream ({impl}) listening on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="OpenAI- and Anthropic-compatible mock upstream for benchmarks"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--impl", choices=IMPLS, default="protocol")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay before each answer")
    parser.add_argument("--chunks", type=int, default=16, help="content chunks per stream")
    parser.add_argument("--pacing-ms", type=float, default=10.0, help="delay between stream chunks")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the mock until SIGTERM/SIGINT."""
    args = _parse_args(argv)
    config = MockConfig(latency=args.latency_ms / 1000, chunks=args.chunks, pacing=args.pacing_ms / 1000)
    coro = _serve_forever(config, args.host, args.port, args.impl)
    if args.no_uvloop:
        asyncio.run(coro)
        return
    try:
        import uvloop
    except ImportError:  # uvloop comes with uvicorn[standard]; fall back if it is missing
        asyncio.run(coro)
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(coro)


if __name__ == "__main__":
    main()
