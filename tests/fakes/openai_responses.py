"""A fake OpenAI Responses API (``POST /v1/responses``) speaking the real wire format.

Routes (:func:`add_routes`): ``POST /v1/responses``, and Azure's ``POST /openai/v1/responses``
and ``POST /openai/responses?api-version=…``. OpenAI routes check ``Authorization: Bearer <key>``,
Azure routes ``api-key``. Behaviour is chosen by the requested model::

    fake-error-400 / -429 / -500 / -503   the OpenAI error body (Retry-After on 429 and 503)
    fake-broken-stream                    streams a few events, then drops the connection
    fake-truncated-stream                 streams a few events, then ends before the final one
    fake-stream-error                     streams a few events, then an ``error`` event
    fake-stream-failed                    streams a few events, then ``response.failed``
    anything else                         the scripted answer of tests/fakes/script.py

The answer is built once as a whole Response object; a stream is derived from it the way OpenAI
sends one (``event: <type>`` and ``data: <json>`` lines, no ``[DONE]``). Every answered response
is stored unless the request says ``store: false``, so ``previous_response_id`` continues it (an
unknown id is a 404 ``previous_response_not_found``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web

from tests.fakes.script import (
    REASONING_TEXT,
    TOOL_CALL_ID,
    Answer,
    Seen,
    answer,
    pieces,
)
from tests.fakes.threaded import serve_on_free_port

RETRY_AFTER = "7"
PARTIAL_EVENTS = 4  # events sent before a broken stream breaks
# OpenAI's error bodies (status, error) for the fake-error-* models; the chat fake shares them.
ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "fake-error-400": (
        400,
        {
            "message": "Your input exceeds the context window of this model.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "context_length_exceeded",
        },
    ),
    "fake-error-429": (
        429,
        {
            "message": "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    "fake-error-500": (
        500,
        {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
    "fake-error-503": (
        503,
        {
            "message": "The engine is currently overloaded, please try again later.",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
}
_AUTH_ERROR = {
    "message": "Incorrect API key provided.",
    "type": "invalid_request_error",
    "param": None,
    "code": "invalid_api_key",
}
_BREAKS = frozenset(
    {"fake-broken-stream", "fake-truncated-stream", "fake-stream-error", "fake-stream-failed"}
)


class FakeResponses:
    """The fake's state: its key, the stored responses and every request body received."""

    def __init__(self, *, api_key: str | None = "sk-fake-upstream") -> None:
        self.api_key = api_key  # None accepts any (or no) key
        self._lock = threading.Lock()  # handlers run on the server's thread, tests read on theirs
        self._stored: dict[str, list[dict[str, Any]]] = {}  # response id → its conversation items
        self._received: list[dict[str, Any]] = []

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every JSON body received so far, oldest first."""
        with self._lock:
            return list(self._received)

    async def openai(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses``."""
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, _AUTH_ERROR)
        return await self._respond(request)

    async def azure(self, request: web.Request) -> web.StreamResponse:
        """Azure's v1 route, or its preview route (which needs an api-version)."""
        if request.path == "/openai/responses" and "api-version" not in request.query:
            return _json(404, {"error": {"code": "404", "message": "Resource not found"}})
        if self.api_key is not None and request.headers.get("api-key") != self.api_key:
            return _error(401, {**_AUTH_ERROR, "code": "401"})
        return await self._respond(request)

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, _invalid("We could not parse the JSON body of your request.", None))
        if not isinstance(body, dict):
            return _error(400, _invalid("The body must be a JSON object.", None))
        with self._lock:
            self._received.append(body)
        model = body.get("model")
        if not isinstance(model, str):
            return _error(400, _invalid("Missing required parameter: 'model'.", "model"))
        if model in ERRORS:
            status, error = ERRORS[model]
            return _error(status, error, {"retry-after": RETRY_AFTER} if status in (429, 503) else None)
        history = self._history(body.get("previous_response_id"))
        if history is None:
            message = f"Previous response with id '{body['previous_response_id']}' not found."
            error = {**_invalid(message, "previous_response_id"), "code": "previous_response_not_found"}
            return _error(404, error)
        items = [*history, *_input_items(body.get("input"))]
        response = _response(body, model, answer(_seen(items, body)))
        if body.get("store") is not False:
            with self._lock:
                self._stored[response["id"]] = [*items, *response["output"]]
        if body.get("stream") is True:
            return await _stream(request, response, model)
        return _json(200, response, {"x-request-id": "req_" + response["id"][5:17]})

    def _history(self, previous: Any) -> list[dict[str, Any]] | None:
        if previous is None:
            return []
        with self._lock:
            return self._stored.get(previous) if isinstance(previous, str) else None


def add_routes(app: web.Application, fake: FakeResponses | None = None) -> FakeResponses:
    """Serve the Responses routes on ``app`` from ``fake`` (a new one by default); return it."""
    fake = fake or FakeResponses()
    app.router.add_post("/v1/responses", fake.openai)
    app.router.add_post("/openai/v1/responses", fake.azure)
    app.router.add_post("/openai/responses", fake.azure)
    return fake


# --- reading the request ------------------------------------------------------------------------


def _input_items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _seen(items: list[dict[str, Any]], body: dict[str, Any]) -> Seen:
    seen = Seen()
    for item in items:
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "user":
            seen.last_user_text, seen.images = _user_content(item.get("content"))
        elif kind == "function_call_output":
            seen.tool_results.append(_output_text(item.get("output")))
    seen.tools = [t["name"] for t in body.get("tools") or [] if t.get("type") == "function"]
    reasoning = body.get("reasoning") or {}
    seen.reasoning = reasoning.get("effort") not in (None, "none")
    return seen


def _user_content(content: Any) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    parts = content if isinstance(content, list) else []
    text = "".join(p.get("text", "") for p in parts if p.get("type") == "input_text")
    return text, sum(1 for p in parts if p.get("type") == "input_image")


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    parts = output if isinstance(output, list) else []
    return "".join(p.get("text", "") for p in parts if p.get("type") == "input_text")


# --- the answer ---------------------------------------------------------------------------------


def _response(body: dict[str, Any], model: str, said: Answer) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode() + str(time.time_ns()).encode())
    base = digest.hexdigest()[:40]
    output: list[dict[str, Any]] = []
    if said.reasoning is not None:
        summary = [{"type": "summary_text", "text": REASONING_TEXT}]
        output.append({"id": f"rs_{base}", "type": "reasoning", "summary": summary})
    if said.text is not None:
        text = {"type": "output_text", "text": said.text, "annotations": [], "logprobs": []}
        message = {"id": f"msg_{base}", "type": "message", "status": "completed", "role": "assistant"}
        output.append({**message, "content": [text]})
    if said.tool_name is not None:
        call = {"id": f"fc_{base}", "type": "function_call", "status": "completed", "call_id": TOOL_CALL_ID}
        output.append({**call, "name": said.tool_name, "arguments": said.tool_arguments})
    now = int(time.time())
    return {
        "id": f"resp_{base}",
        "object": "response",
        "created_at": now,
        "status": "completed",
        "completed_at": now,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [{"strict": True, "description": None, **t} for t in body.get("tools") or []],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": said.prompt_tokens,
            "input_tokens_details": {"cached_tokens": said.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": said.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": said.reasoning_tokens},
            "total_tokens": said.prompt_tokens + said.completion_tokens,
        },
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


# --- the stream ---------------------------------------------------------------------------------


def stream_events(response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The events OpenAI sends for ``response``, each with its ``sequence_number``."""
    for number, event in enumerate(_events(response)):
        yield {"type": event.pop("type"), "sequence_number": number, **event}


def _events(response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    started = {**response, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
    yield {"type": "response.created", "response": started}
    yield {"type": "response.in_progress", "response": started}
    for index, item in enumerate(response["output"]):
        yield from _item_events(index, item)
    yield {"type": "response.completed", "response": response}


def _item_events(index: int, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    at = {"item_id": item["id"], "output_index": index}
    if item["type"] == "message":
        yield _added(index, {**item, "status": "in_progress", "content": []})
        part = item["content"][0]
        yield {"type": "response.content_part.added", **at, "content_index": 0, "part": {**part, "text": ""}}
        for piece in pieces(part["text"]):
            yield {
                "type": "response.output_text.delta",
                **at,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
        yield {
            "type": "response.output_text.done",
            **at,
            "content_index": 0,
            "text": part["text"],
            "logprobs": [],
        }
        yield {"type": "response.content_part.done", **at, "content_index": 0, "part": part}
    elif item["type"] == "reasoning":
        yield _added(index, {**item, "summary": []})
        part = item["summary"][0]
        yield {
            "type": "response.reasoning_summary_part.added",
            **at,
            "summary_index": 0,
            "part": {**part, "text": ""},
        }
        for piece in pieces(part["text"]):
            yield {"type": "response.reasoning_summary_text.delta", **at, "summary_index": 0, "delta": piece}
        yield {"type": "response.reasoning_summary_text.done", **at, "summary_index": 0, "text": part["text"]}
        yield {"type": "response.reasoning_summary_part.done", **at, "summary_index": 0, "part": part}
    else:
        yield _added(index, {**item, "status": "in_progress", "arguments": ""})
        for piece in pieces(item["arguments"]):
            yield {"type": "response.function_call_arguments.delta", **at, "delta": piece}
        yield {"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def _added(index: int, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.output_item.added", "output_index": index, "item": item}


async def _stream(request: web.Request, response: dict[str, Any], model: str) -> web.StreamResponse:
    stream = web.StreamResponse(headers={"content-type": "text/event-stream", "x-request-id": "req_stream"})
    await stream.prepare(request)
    events = list(stream_events(response))
    if model in _BREAKS:
        events = events[:PARTIAL_EVENTS]
    for event in events:
        await stream.write(sse(event))
    if model == "fake-broken-stream":
        transport = request.transport
        assert transport is not None
        transport.abort()
        return stream
    if model == "fake-stream-error":
        error = {
            "type": "error",
            "code": "server_error",
            "message": "The model produced invalid content.",
            "param": None,
            "sequence_number": PARTIAL_EVENTS,
        }
        await stream.write(sse(error))
    elif model == "fake-stream-failed":
        error = {"code": "server_error", "message": "The model failed to finish."}
        failed = {**response, "status": "failed", "error": error, "output": [], "usage": None}
        await stream.write(
            sse({"type": "response.failed", "sequence_number": PARTIAL_EVENTS, "response": failed})
        )
    await stream.write_eof()
    return stream


def sse(event: dict[str, Any]) -> bytes:
    """One event on the wire, named as OpenAI names it."""
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def _invalid(message: str, param: str | None) -> dict[str, Any]:
    return {"message": message, "type": "invalid_request_error", "param": param, "code": None}


def _error(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return _json(status, {"error": error}, headers)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json", headers=headers
    )


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free local port of the running loop; yield its base URL (no ``/v1``)."""
    runner, port = await serve_on_free_port(app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


__all__ = ["ERRORS", "FakeResponses", "add_routes", "serving", "sse", "stream_events"]
