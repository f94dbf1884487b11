"""A fake Anthropic server that speaks the real Messages wire format, for testing the gateway end to end.

Routes: ``POST /v1/messages`` (unary, or SSE when ``"stream": true``) and
``POST /v1/messages/count_tokens``. Every route checks the key, sent as ``x-api-key`` or (as
current ``anthropic`` SDKs do) ``Authorization: Bearer`` (401 authentication_error otherwise),
and that ``anthropic-version`` is sent (400 otherwise).

Behaviour is chosen by the requested model::

    fake-echo              the scripted answer of tests/fakes/script.py: a thinking block (with
                           a signature) when the request enables thinking, then the text or a
                           tool_use block (its input streamed in several input_json_delta pieces);
                           input usage split as Anthropic does (cache_read_input_tokens =
                           CACHED_TOKENS, input_tokens the rest)
    fake-error-400|401|429|500|529   that status with Anthropic's error body (429 and 529 carry
                           retry-after)
    fake-broken-stream     streams a few events, then drops the connection (no message_stop)
    fake-stream-error      streams a few events, then an in-band ``event: error`` (overloaded_error)
    anything else          REPLY with USAGE

A stream is the exact sequence Anthropic sends: message_start, ping, per block
content_block_start / content_block_delta… / content_block_stop, message_delta (stop_reason and
the cumulative output_tokens), message_stop. Every request is recorded (:class:`ReceivedRequest`).
The server runs on its own event loop in a background thread (:meth:`FakeAnthropic.start`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from tests.fakes import script
from tests.fakes.threaded import ReceivedRequest, ThreadedFake

REPLY = "Hello from the fake Anthropic server."
USAGE: dict[str, Any] = {
    "input_tokens": 12,
    "output_tokens": 7,
    "cache_read_input_tokens": 3,
    "cache_creation_input_tokens": 2,
}
RETRY_AFTER = "9"
SIGNATURE = "sig_fake_0001"
PARTIAL_EVENTS = 4  # content_block_delta events sent before a stream breaks
_ERRORS: dict[str, tuple[int, str, str]] = {
    "fake-error-400": (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
    "fake-error-401": (401, "authentication_error", "invalid x-api-key"),
    "fake-error-429": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    "fake-error-500": (500, "api_error", "Internal server error"),
    "fake-error-529": (529, "overloaded_error", "Overloaded"),
}


class FakeAnthropic(ThreadedFake):
    """The fake server; configure ``api_key`` before requests."""

    vendor = "Anthropic"

    def __init__(self, *, api_key: str | None = "sk-ant-fake-upstream") -> None:
        super().__init__(api_key=api_key)

    def _add_routes(self, app: web.Application) -> None:
        """Messages and token counting."""
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)

    # --- routes ---------------------------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._admit(request, ("model", "messages", "max_tokens"))
        if isinstance(body, web.Response):
            return body
        model = body["model"]
        if model in _ERRORS:
            return _error(*_ERRORS[model])
        if body.get("stream") is True:
            return await _stream(request, body)
        return _json(200, message_of(body))

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await self._admit(request, ("model", "messages"))
        if isinstance(body, web.Response):
            return body
        return _json(200, {"input_tokens": count_of(body)})

    async def _admit(self, request: web.Request, required: tuple[str, ...]) -> dict[str, Any] | web.Response:
        """Record the request, then check its key, version header and body as Anthropic does."""
        received = await self._record(request)
        headers, body = received.headers, received.body
        keys = (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
        if self.api_key is not None and self.api_key not in keys:
            return _error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in headers:
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "There was an issue with the request body")
        for name in required:
            if name not in body:
                return _error(400, "invalid_request_error", f"{name}: Field required")
        return body


# --- answers ---------------------------------------------------------------------------------


def seen_of(body: dict[str, Any]) -> script.Seen:
    """What the scripted answer needs to know of an Anthropic request."""
    seen = script.Seen(tools=[tool["name"] for tool in body.get("tools") or []])
    thinking = body.get("thinking") or {}
    seen.reasoning = thinking.get("type") in ("enabled", "adaptive")
    for message in body["messages"]:
        blocks = _blocks(message.get("content"))
        seen.tool_results += [_result_text(b) for b in blocks if b.get("type") == "tool_result"]
        if message.get("role") == "user" and any(b.get("type") in ("text", "image") for b in blocks):
            texts = [b["text"] for b in blocks if b.get("type") == "text"]
            seen.last_user_text = " ".join(texts)
            seen.images = sum(1 for b in blocks if b.get("type") == "image")
    return seen


def count_of(body: dict[str, Any]) -> int:
    """The fake's input token count of a request: one token per four characters of its messages."""
    return 1 + len(json.dumps(body["messages"])) // 4


def message_of(body: dict[str, Any]) -> dict[str, Any]:
    """The unary ``Message`` answering ``body``."""
    blocks, stop, usage = _answer(body)
    finished = [_unary_block(block) for block in blocks]
    return {**_envelope(body), "content": finished, "stop_reason": stop, "usage": usage}


def _unary_block(block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] != "tool_use":
        return block
    fields = {key: value for key, value in block.items() if key != "arguments"}
    return {**fields, "input": json.loads(block["arguments"])}


def _answer(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    """Content blocks (a tool_use block holds JSON ``arguments``), stop reason and usage."""
    if body["model"] != script.ECHO_MODEL:
        return [{"type": "text", "text": REPLY}], "end_turn", dict(USAGE)
    answer = script.answer(seen_of(body))
    blocks: list[dict[str, Any]] = []
    if answer.reasoning is not None:
        blocks.append({"type": "thinking", "thinking": answer.reasoning, "signature": SIGNATURE})
    if answer.text is not None:
        blocks.append({"type": "text", "text": answer.text})
    else:
        tool = {"type": "tool_use", "id": script.TOOL_CALL_ID, "name": answer.tool_name}
        blocks.append({**tool, "arguments": answer.tool_arguments})
    usage: dict[str, Any] = {
        "input_tokens": answer.uncached_prompt_tokens,
        "output_tokens": answer.completion_tokens,
        "cache_read_input_tokens": answer.cached_tokens,
        "cache_creation_input_tokens": 0,
    }
    if answer.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": answer.reasoning_tokens}
    return blocks, "tool_use" if answer.text is None else "end_turn", usage


def stream_events(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The events of a streamed answer to ``body``, in Anthropic's order."""
    blocks, stop, usage = _answer(body)
    start_usage = {key: value for key, value in usage.items() if key != "output_tokens_details"}
    start_usage["output_tokens"] = 1
    message = {**_envelope(body), "content": [], "stop_reason": None, "usage": start_usage}
    yield {"type": "message_start", "message": message}
    yield {"type": "ping"}
    for index, block in enumerate(blocks):
        yield from _block_events(index, block)
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {key: value for key, value in usage.items() if key.startswith("output")},
    }
    yield {"type": "message_stop"}


def _block_events(index: int, block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = block["type"]
    if kind == "thinking":
        opening: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in script.pieces(block["thinking"])]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "text":
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in script.pieces(block["text"])]
    else:
        opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        arguments = block["arguments"]
        half = len(arguments) // 2 + 1
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in script.pieces(arguments, half)]
    yield {"type": "content_block_start", "index": index, "content_block": opening}
    for delta in deltas:
        yield {"type": "content_block_delta", "index": index, "delta": delta}
    yield {"type": "content_block_stop", "index": index}


async def _stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"content-type": "text/event-stream; charset=utf-8", "request-id": "req_fake_stream"}
    )
    await response.prepare(request)
    deltas = 0
    for event in stream_events(body):
        await response.write(_sse(event))
        deltas += event["type"] == "content_block_delta"
        if deltas == PARTIAL_EVENTS and body["model"] == "fake-broken-stream":
            transport = request.transport
            assert transport is not None
            transport.abort()
            return response
        if deltas == PARTIAL_EVENTS and body["model"] == "fake-stream-error":
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            await response.write(_sse(error))
            break
    await response.write_eof()
    return response


def _envelope(body: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {
        "id": "msg_fake" + digest[:20],
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "stop_sequence": None,
    }


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, dict)]


def _result_text(block: dict[str, Any]) -> str:
    return " ".join(b["text"] for b in _blocks(block.get("content")) if b.get("type") == "text")


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _error(status: int, kind: str, message: str) -> web.Response:
    headers = {"retry-after": RETRY_AFTER} if status in (429, 529) else None
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake_error"}
    return _json(status, body, headers)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    merged = {"request-id": "req_fake_" + hashlib.sha256(json.dumps(body).encode()).hexdigest()[:12]}
    merged.update(headers or {})
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json", headers=merged
    )


def running_fake_anthropic(*, api_key: str | None = "sk-ant-fake-upstream") -> FakeAnthropic:
    """A :class:`FakeAnthropic` for a ``with`` block: served inside it, stopped on exit."""
    return FakeAnthropic(api_key=api_key)


__all__ = [
    "REPLY",
    "RETRY_AFTER",
    "SIGNATURE",
    "USAGE",
    "FakeAnthropic",
    "ReceivedRequest",
    "count_of",
    "message_of",
    "running_fake_anthropic",
    "seen_of",
    "stream_events",
]
