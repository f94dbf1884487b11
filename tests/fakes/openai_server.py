"""A fake OpenAI server that speaks the real wire format, for testing the gateway end to end.

Routes: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, the Azure OpenAI forms
``POST /openai/deployments/{deployment}/chat/completions|embeddings?api-version=...``, and the
Responses API (``POST /v1/responses`` and Azure's forms, served by ``self.responses``: see
``tests/fakes/openai_responses.py``).
OpenAI routes check ``Authorization: Bearer <api_key>``; Azure routes check ``api-key``.

Behaviour is chosen by the requested model (on Azure, the deployment name)::

    fake-error-400         400 context_length_exceeded (OpenAI error body)
    fake-error-401         401 invalid_api_key
    fake-error-429         429 rate_limit_exceeded with a Retry-After header
    fake-error-500         500 server_error
    fake-slow              answers after ``delay_seconds``
    fake-slow-stream       streams ``drip_chunks`` four-character chunks, one per ``chunk_delay_seconds``
    fake-broken-stream     streams a few chunks, then drops the connection (no [DONE])
    fake-truncated-stream  streams a few chunks, then ends the body cleanly without [DONE]
    fake-stream-error      streams a few chunks, then an in-band error event
    fake-not-json          200 with an HTML body
    fake-error-200         200 whose body is an OpenAI error object
    fake-error-503         503 with a Retry-After header
    fake-large-event       streams the answer as one event of LARGE_EVENT_TEXT (1 MiB)
    fake-quirky-stream     streams valid SSE in unusual form: comments, CRLF, multi-line data
    fake-echo              the scripted answer of ``tests.fakes.script`` (text, tool call,
                           reasoning, images, tool results; its computed usage), unary or streamed
    anything else          a normal answer (REPLY, with USAGE)

JSON answers are gzip-compressed when the caller accepts it, as OpenAI's edge does.
Every request is recorded (:class:`ReceivedRequest`) so tests can assert what was forwarded.
The server runs on its own event loop in a background thread (:meth:`FakeOpenAI.start`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import script
from tests.fakes.openai_responses import ERRORS, FakeResponses, add_routes
from tests.fakes.threaded import ReceivedRequest, ThreadedFake

REPLY = "Hello from the fake OpenAI server."
USAGE: dict[str, Any] = {
    "prompt_tokens": 21,
    "completion_tokens": 9,
    "total_tokens": 30,
    "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 2,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
EMBEDDING_TOKENS_PER_INPUT = 5
DEFAULT_DIMENSIONS = 8
RETRY_AFTER = "7"
DRIP_TEXT = "tok "  # four characters: one estimated token per chunk
LARGE_EVENT_TEXT = "large " * (1024 * 1024 // 6)
PARTIAL_CHUNKS = 3  # content chunks sent before a stream breaks
FINGERPRINT = "fp_fake0001"

_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    **ERRORS,  # OpenAI's answers, shared with the Responses fake; chat's own 400 and 401 follow
    "fake-error-400": (
        400,
        {
            "message": "This model's maximum context length is 8192 tokens. However, your messages "
            "resulted in 9001 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    ),
    "fake-error-401": (
        401,
        {
            "message": "Incorrect API key provided: sk-fake***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    ),
}
_AZURE_AUTH_ERROR = {
    "code": "401",
    "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API endpoint for "
    "your resource.",
}
_AZURE_FILTER = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


@dataclass(frozen=True)
class _Call:
    """What a handler needs to know about the request it answers."""

    model: str
    body: dict[str, Any]
    azure: bool


@web.middleware
async def _compress_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Compress JSON answers when the caller accepts it, as OpenAI's edge does."""
    response = await handler(request)
    if isinstance(response, web.Response) and response.content_type == "application/json":
        response.enable_compression()
    return response


class FakeOpenAI(ThreadedFake):
    """The fake server; configure the public attributes before or between requests."""

    vendor = "OpenAI"
    middlewares = (_compress_json,)

    def __init__(
        self, *, api_key: str | None = "sk-fake-upstream", tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(api_key=api_key, tls=tls)
        self.delay_seconds = 5.0
        self.chunk_delay_seconds = 0.05
        self.drip_chunks = 400
        self._drip_sent: list[int] = []  # content chunks written per slow stream so far
        self._streams_abandoned = 0  # streams whose reader went away before the end
        self.responses = FakeResponses(api_key=api_key)  # the Responses API (tests/fakes/openai_responses.py)

    def _add_routes(self, app: web.Application) -> None:
        """Chat completions and embeddings, OpenAI's and Azure's, and the Responses API."""
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/embeddings", self._openai_embeddings)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._azure_embeddings)
        add_routes(app, self.responses)

    # --- what tests read --------------------------------------------------------------------
    @property
    def drip_chunks_sent(self) -> list[int]:
        """Content chunks written so far by each ``fake-slow-stream`` answer, in order."""
        with self._lock:
            return list(self._drip_sent)

    @property
    def streams_abandoned(self) -> int:
        """How many streams lost their reader before the end."""
        with self._lock:
            return self._streams_abandoned

    # --- routes ---------------------------------------------------------------------------
    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        call = await self._admit(request, azure=False)
        if isinstance(call, web.Response):
            return call
        return await self._chat(request, call)

    async def _openai_embeddings(self, request: web.Request) -> web.StreamResponse:
        call = await self._admit(request, azure=False)
        if isinstance(call, web.Response):
            return call
        return await self._embeddings(call)

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        call = await self._admit(request, azure=True)
        if isinstance(call, web.Response):
            return call
        return await self._chat(request, call)

    async def _azure_embeddings(self, request: web.Request) -> web.StreamResponse:
        call = await self._admit(request, azure=True)
        if isinstance(call, web.Response):
            return call
        return await self._embeddings(call)

    async def _admit(self, request: web.Request, *, azure: bool) -> _Call | web.Response:
        """Record the request, then check its key and body the way the real service does."""
        received = await self._record(request)
        headers, body = received.headers, received.body
        if azure:
            if "api-version" not in request.query:
                return _json(404, {"error": {"code": "404", "message": "Resource not found"}})
            if self.api_key is not None and headers.get("api-key") != self.api_key:
                return _json(401, {"error": _AZURE_AUTH_ERROR})
        elif self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return _json(401, {"error": _ERRORS["fake-error-401"][1]})
        if not isinstance(body, dict):
            return _json(400, {"error": _invalid("We could not parse the JSON body of your request.")})
        model = request.match_info["deployment"] if azure else body.get("model")
        if not isinstance(model, str):
            return _json(400, {"error": _invalid("you must provide a model parameter", param="model")})
        return _Call(model=model, body=body, azure=azure)

    async def _chat(self, request: web.Request, call: _Call) -> web.StreamResponse:
        if not isinstance(call.body.get("messages"), list):
            return _json(400, {"error": _invalid("'messages' is a required property", param="messages")})
        canned = _canned(call.model)
        if canned is not None:
            return canned
        if call.body.get("stream_options") is not None and not call.body.get("stream"):
            message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            return _json(400, {"error": _invalid(message, param="stream_options")})
        if call.model == "fake-slow":
            await asyncio.sleep(self.delay_seconds)
        if call.body.get("stream"):
            return await self._stream(request, call)
        body = _echo_completion(call) if call.model == script.ECHO_MODEL else _completion(call)
        return _json(200, body, {"x-request-id": "req_fake_" + _digest(call.body)[:12]})

    async def _embeddings(self, call: _Call) -> web.StreamResponse:
        canned = _canned(call.model)
        if canned is not None:
            return canned
        if call.model == "fake-slow":
            await asyncio.sleep(self.delay_seconds)
        inputs = call.body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and all(isinstance(i, int) for i in inputs)):
            items: list[Any] = [inputs]
        elif isinstance(inputs, list) and inputs:
            items = inputs
        else:
            return _json(400, {"error": _invalid("'input' is a required property", param="input")})
        dimensions = call.body.get("dimensions") or DEFAULT_DIMENSIONS
        base64_wanted = call.body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(items):
            vector = embedding_of(item, dimensions)
            packed = struct.pack(f"<{len(vector)}f", *vector)
            encoded: Any = base64.b64encode(packed).decode() if base64_wanted else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = EMBEDDING_TOKENS_PER_INPUT * len(items)
        body = {
            "object": "list",
            "data": data,
            "model": call.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return _json(200, body)

    # --- streaming ------------------------------------------------------------------------
    async def _stream(self, request: web.Request, call: _Call) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "x-request-id": "req_fake_stream"}
        )
        await response.prepare(request)
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        events = _Events(call, include_usage)
        try:
            if call.azure:
                await response.write(_sse(events.azure_prompt_filter()))
            if call.model == "fake-slow-stream":
                await self._drip(response, events)
                return response
            encode = _quirky_sse if call.model == "fake-quirky-stream" else _sse
            if call.model == script.ECHO_MODEL:
                frames = events.echo(script.answer(seen_in(call.body)))
            else:
                frames = events.answer(_pieces(call.model))
            for frame in frames:
                await response.write(encode(frame))
                if events.content_sent == PARTIAL_CHUNKS and call.model in _BREAKS:
                    return await _BREAKS[call.model](request, response)
            await response.write(b"data:[DONE]\r\n\r\n" if encode is _quirky_sse else b"data: [DONE]\n\n")
        except (ConnectionError, asyncio.CancelledError):
            with self._lock:
                self._streams_abandoned += 1
            raise
        await response.write_eof()
        return response

    async def _drip(self, response: web.StreamResponse, events: _Events) -> None:
        with self._lock:
            slot = len(self._drip_sent)
            self._drip_sent.append(0)
        for frame in events.answer([DRIP_TEXT] * self.drip_chunks):
            await response.write(_sse(frame))
            with self._lock:
                self._drip_sent[slot] = events.content_sent
            if events.content_sent:
                await asyncio.sleep(self.chunk_delay_seconds)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()


class _Events:
    """The ``chat.completion.chunk`` events of one streamed answer, as OpenAI sends them."""

    def __init__(self, call: _Call, include_usage: bool) -> None:
        self._call = call
        self._include_usage = include_usage
        self._base = {
            "id": "chatcmpl-fake" + _digest(call.body)[:20],
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": FINGERPRINT,
        }
        self.content_sent = 0

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        event = {**self._base, "choices": choices, **extra}
        if self._include_usage and "usage" not in event:
            event["usage"] = None  # OpenAI sends an explicit null on every chunk but the last
        return event

    def azure_prompt_filter(self) -> dict[str, Any]:
        """Azure's first event: prompt filter results and no choices."""
        filters = [{"prompt_index": 0, "content_filter_results": _AZURE_FILTER}]
        return {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [],
            "prompt_filter_results": filters,
        }

    def answer(self, pieces: list[str]) -> Iterator[dict[str, Any]]:
        """Role chunk, one chunk per piece, finish chunk, and the usage chunk when asked for."""
        first = {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
        yield self._event([first])
        for piece in pieces:
            self.content_sent += 1
            choice = {"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}
            yield self._event([choice])
        yield self._event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if self._include_usage:
            yield self._event([], usage=USAGE)

    def echo(self, answer: script.Answer) -> Iterator[dict[str, Any]]:
        """The scripted answer: role chunk, reasoning, then text or the tool call in pieces, finish, usage."""
        yield self._delta({"role": "assistant", "content": "", "refusal": None})
        for piece in script.pieces(answer.reasoning) if answer.reasoning else []:
            yield self._delta({"reasoning_content": piece})
        if answer.tool_name is not None and answer.tool_arguments is not None:
            call = {"index": 0, "id": script.TOOL_CALL_ID, "type": "function"}
            yield self._delta(
                {"tool_calls": [{**call, "function": {"name": answer.tool_name, "arguments": ""}}]}
            )
            for piece in script.pieces(answer.tool_arguments, size=len(answer.tool_arguments) // 2 + 1):
                yield self._delta({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        for piece in script.pieces(answer.text) if answer.text else []:
            yield self._delta({"content": piece})
        reason = "stop" if answer.tool_name is None else "tool_calls"
        yield self._event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])
        if self._include_usage:
            yield self._event([], usage=_echo_usage(answer))

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])


async def _drop_connection(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    transport = request.transport
    assert transport is not None
    transport.abort()
    return response


async def _end_without_done(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    await response.write_eof()
    return response


async def _error_event(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    error = {
        "message": "The model produced invalid content.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    await response.write(_sse({"error": error}))
    await response.write_eof()
    return response


_BREAKS: dict[str, Callable[[web.Request, web.StreamResponse], Awaitable[web.StreamResponse]]] = {
    "fake-broken-stream": _drop_connection,
    "fake-truncated-stream": _end_without_done,
    "fake-stream-error": _error_event,
}


def _canned(model: str) -> web.Response | None:
    if model in _ERRORS:
        status, error = _ERRORS[model]
        headers = {"retry-after": RETRY_AFTER} if status in (429, 503) else {}
        return _json(status, {"error": error}, headers)
    if model == "fake-error-200":
        return _json(200, {"error": _ERRORS["fake-error-500"][1]})
    if model == "fake-not-json":
        page = "<html><body>502 Bad Gateway</body></html>"
        return web.Response(status=200, text=page, content_type="text/html")
    return None


def _completion(call: _Call) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake" + _digest(call.body)[:20],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if call.azure:
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _AZURE_FILTER}]
    return body


def seen_in(body: dict[str, Any]) -> script.Seen:
    """What the scripted answer depends on, read from a chat completions body."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    last_parts = _content_parts(users[-1].get("content")) if users else []
    tools = [t.get("function", {}).get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]
    return script.Seen(
        last_user_text=" ".join(p.get("text", "") for p in last_parts if p.get("type") == "text"),
        images=sum(1 for p in last_parts if p.get("type") == "image_url"),
        tools=tools,
        tool_results=[_text_of(m.get("content")) for m in messages if m.get("role") == "tool"],
        reasoning=body.get("reasoning_effort") not in (None, "none"),
    )


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [part for part in content or [] if isinstance(part, dict)]


def _text_of(content: Any) -> str:
    return " ".join(p.get("text", "") for p in _content_parts(content) if p.get("type") == "text")


def _echo_completion(call: _Call) -> dict[str, Any]:
    """A ``chat.completion`` carrying the scripted answer."""
    answer = script.answer(seen_in(call.body))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text,
        "refusal": None,
        "annotations": [],
    }
    if answer.tool_name is not None:
        function = {"name": answer.tool_name, "arguments": answer.tool_arguments}
        message["tool_calls"] = [{"id": script.TOOL_CALL_ID, "type": "function", "function": function}]
    if answer.reasoning is not None:
        message["reasoning_content"] = answer.reasoning
    body = _completion(call)
    body["choices"][0]["message"] = message
    body["choices"][0]["finish_reason"] = "stop" if answer.tool_name is None else "tool_calls"
    body["usage"] = _echo_usage(answer)
    return body


def _echo_usage(answer: script.Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": answer.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def embedding_of(item: Any, dimensions: int) -> list[float]:
    """The deterministic vector the fake answers for one input (exact in float32)."""
    digest = hashlib.sha256(json.dumps(item).encode()).digest()
    return [(digest[i % 32] - 128) / 128 for i in range(dimensions)]


def _invalid(message: str, *, param: str | None = None) -> dict[str, Any]:
    return {"message": message, "type": "invalid_request_error", "param": param, "code": None}


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _pieces(model: str) -> list[str]:
    if model == "fake-large-event":
        return [LARGE_EVENT_TEXT]
    return [w if i == 0 else " " + w for i, w in enumerate(REPLY.split())]


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def _quirky_sse(event: dict[str, Any]) -> bytes:
    """Valid SSE that OpenAI itself does not send: comments, CRLF, no space, multi-line data."""
    lines = json.dumps(event, indent=1).split("\n")
    return b": keep-alive\r\n" + "".join(f"data:{line}\r\n" for line in lines).encode() + b"\r\n"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json", headers=headers
    )


def running_fake_openai(
    *, api_key: str | None = "sk-fake-upstream", tls: ssl.SSLContext | None = None
) -> FakeOpenAI:
    """A :class:`FakeOpenAI` (HTTPS when given a server context) for a ``with`` block: served
    inside it, stopped on exit."""
    return FakeOpenAI(api_key=api_key, tls=tls)


__all__ = [
    "REPLY",
    "USAGE",
    "FakeOpenAI",
    "ReceivedRequest",
    "embedding_of",
    "running_fake_openai",
    "seen_in",
]
