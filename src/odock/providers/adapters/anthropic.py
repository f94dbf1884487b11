"""The Anthropic adapter: the Messages API (``/v1/messages``) and its token counter.

The payload is already an Anthropic body (passed through from an Anthropic client, or encoded by
:mod:`odock.providers.adapters.anthropic_codec`); answers are forwarded as the bytes the provider
sent, so the upstream is asked for an uncompressed body (``accept-encoding: identity``). Flow::

    complete(call)      POST {base}/v1/messages → bytes + usage (input + cache reads + writes)
    stream(call)        POST with "stream": true → AnthropicStream once an event stream answered
      AnthropicStream   SSE events kept with their names; usage is cumulative (message_start
                        carries the input, message_delta the output); an ``error`` event raises
                        the mapped UpstreamError; a body ending before message_stop raises
                        UpstreamStreamInterrupted
    count_tokens(call)  POST {base}/v1/messages/count_tokens → input_tokens

Headers: ``x-api-key``, ``anthropic-version`` (the provider's ``config.anthropic_version``, default
``2023-06-01``), ``anthropic-beta`` forwarded from the client, then the provider's own headers.
Transport failures are translated by the OpenAI adapter's boundary (the same client, the same
failures); HTTP statuses are mapped here (:func:`status_error`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import orjson

from odock.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamStreamInterrupted,
)
from odock.llm.upstream import MAX_REPORTED_TOKENS, Endpoint, StreamChunk, UnaryResult, Usage
from odock.providers.adapters.base import UpstreamCall
from odock.providers.adapters.transport import (
    MAX_EVENT_BYTES,
    body_lines,
    open_event_stream,
    translated_failures,
)
from odock.providers.upstream_client import Response, UpstreamClient

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
_PATHS = {Endpoint.CHAT: "/v1/messages", Endpoint.COUNT_TOKENS: "/v1/messages/count_tokens"}
# Anthropic's error types, as the HTTP status each stands for (an in-band stream error has no status).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicAdapter:
    """Speaks Anthropic's Messages API."""

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def complete(self, call: UpstreamCall) -> UnaryResult:
        """Send a non-streaming request; the whole answer is read within the call's timeouts."""
        body, headers = await self._post(call, _PATHS[Endpoint.CHAT])
        return UnaryResult(body=body, usage=_usage_of(body), provider_request_id=headers.get("request-id"))

    async def count_tokens(self, call: UpstreamCall) -> int:
        """The provider's count of the input tokens of ``call.payload`` (a count_tokens body)."""
        body, _ = await self._post(call, _PATHS[Endpoint.COUNT_TOKENS])
        data = _json_object(body)
        count = data.get("input_tokens")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise UpstreamError("upstream answered count_tokens without an input_tokens count")
        return min(count, MAX_REPORTED_TOKENS)

    async def stream(self, call: UpstreamCall) -> AnthropicStream:
        """Open a stream; bounded by the call's timeouts."""
        url, headers = _target(call, _PATHS[Endpoint.CHAT])
        response = await open_event_stream(
            self._client,
            url,
            orjson.dumps(call.payload),
            headers,
            timeouts=call.timeouts,
            status_error=status_error,
        )
        return AnthropicStream(response)

    async def _post(self, call: UpstreamCall, path: str) -> tuple[bytes, Mapping[str, str]]:
        """POST ``call.payload`` to ``path``; the body of a 2xx answer, else the mapped error."""
        url, headers = _target(call, path)
        with translated_failures():
            response = await self._client.post(
                url, orjson.dumps(call.payload), headers, timeouts=call.timeouts, stream=False
            )
            body = await response.read()
        if response.status >= 400:
            raise status_error(response.status, body, response.headers)
        return body, response.headers


class AnthropicStream:
    """Server-sent events from Anthropic, parsed event by event with their names."""

    def __init__(self, response: Response) -> None:
        self._response = response
        self._events_iter: AsyncGenerator[StreamChunk, None] | None = None
        self._usage: dict[str, Any] = {}  # the cumulative usage object, merged event by event
        self.provider_request_id: str | None = response.headers.get("request-id")

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        self._events_iter = self._events()
        return self._events_iter

    async def _events(self) -> AsyncGenerator[StreamChunk, None]:
        name: str | None = None
        data: list[bytes] = []
        size = 0
        with translated_failures(streaming=True):
            async for line in _terminated(body_lines(self._response.chunks())):
                if line.startswith(b"event:"):
                    name = line[6:].strip().decode("utf-8", "replace")
                elif line.startswith(b"data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(b" ") else value)
                    size += len(value)
                    if size > MAX_EVENT_BYTES:
                        raise UpstreamError(f"upstream sent a stream event over {MAX_EVENT_BYTES} bytes")
                elif not line:  # the end of an event (one without data is no event: its name is dropped)
                    chunk = self._chunk(name, b"\n".join(data)) if data else None
                    name, data, size = None, [], 0
                    if chunk is None:
                        continue
                    yield chunk
                    if chunk.event == "message_stop":
                        return
        raise UpstreamStreamInterrupted()

    def _chunk(self, name: str | None, payload: bytes) -> StreamChunk:
        """One event as a chunk: its usage once it carried some, its generated characters."""
        event = _json_object(payload, "upstream sent a malformed stream event")
        kind = name or event.get("type")
        if kind == "error":
            raise event_error(event)
        usage = None
        if kind == "message_start" and isinstance(event.get("message"), dict):
            usage = self._merge_usage(event["message"].get("usage"))
        elif kind == "message_delta":
            usage = self._merge_usage(event.get("usage"))
        return StreamChunk(payload, usage=usage, text_chars=delta_chars(event), event=kind)

    def _merge_usage(self, usage: Any) -> Usage | None:
        """The usage so far: a message_delta's counts replace message_start's, absent ones stay."""
        if not isinstance(usage, dict):
            return None
        self._usage.update({key: value for key, value in usage.items() if value is not None})
        return usage_from_anthropic(self._usage)

    async def aclose(self) -> None:
        """Finish the event parser (if a reader abandoned it) and release the connection."""
        if self._events_iter is not None:
            await self._events_iter.aclose()
        self._response.release()


async def _terminated(lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``lines`` and a final blank one, so an event the body ended without its blank line is dispatched."""
    async for line in lines:
        yield line
    yield b""


def usage_from_anthropic(usage: Mapping[str, Any]) -> Usage:
    """Read an Anthropic ``usage`` object: every input token, cache reads and writes among them."""
    uncached = _count(usage.get("input_tokens"))
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    output = _count(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    thinking = _count(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    prompt = min(uncached + cache_read + cache_write, MAX_REPORTED_TOKENS)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        total_tokens=prompt + output,
        cached_tokens=cache_read,
        reasoning_tokens=thinking,
        cache_write_tokens=cache_write,
        raw=dict(usage),
    )


def delta_chars(event: Mapping[str, Any]) -> int:
    """Characters generated by a content_block_delta (text, thinking or tool input), else 0."""
    delta = event.get("delta") if event.get("type") == "content_block_delta" else None
    if not isinstance(delta, dict):
        return 0
    for key in ("text", "thinking", "partial_json"):
        value = delta.get(key)
        if isinstance(value, str):
            return len(value)
    return 0


def event_error(event: Mapping[str, Any]) -> UpstreamError:
    """The UpstreamError for an in-band ``error`` event, mapped by its Anthropic error type."""
    error = event.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    status = ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
    return status_error(status, orjson.dumps(event), {})


def status_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """The UpstreamError for an HTTP error answer (401/403 auth, 429 rate, 4xx rejected, else 502)."""
    message = _message_of(body) or f"upstream answered HTTP {status}"
    retry = headers.get("retry-after")
    retry_headers = {"retry-after": retry} if retry else None
    if status in (401, 403):
        return UpstreamAuthFailed(message, upstream_status=status)
    if status == 429:
        return UpstreamRateLimited(message, upstream_status=status, headers=retry_headers)
    if 400 <= status < 500:
        return UpstreamRejected(message, upstream_status=status)
    return UpstreamError(message, upstream_status=status, headers=retry_headers)


def _target(call: UpstreamCall, path: str) -> tuple[str, dict[str, str]]:
    base = (call.provider.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")
    version = call.provider.config.get("anthropic_version") or DEFAULT_ANTHROPIC_VERSION
    headers = {
        "content-type": "application/json",
        "accept-encoding": "identity",  # the body is forwarded as is, never decompressed
        "anthropic-version": str(version),
        "x-request-id": call.request_id,
    }
    if call.api_key:
        headers["x-api-key"] = call.api_key
    beta = {name.lower(): value for name, value in call.client_headers.items()}.get("anthropic-beta")
    if beta:
        headers["anthropic-beta"] = beta
    for name, value in call.headers.items():
        headers[name.lower()] = value
    return base + path, headers


def _usage_of(body: bytes) -> Usage | None:
    data = _json_object(body)
    if data.get("type") == "error":
        raise event_error(data)
    usage = data.get("usage")
    return usage_from_anthropic(usage) if isinstance(usage, dict) else None


def _json_object(
    body: bytes, problem: str = "upstream answered with a body that is not a JSON object"
) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(problem) from exc
    if not isinstance(data, dict):
        raise UpstreamError(problem)
    return data


def _message_of(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:500] or None
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


def _count(value: object) -> int:
    """A token count as reported: a non-negative integer (clamped), else 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return min(value, MAX_REPORTED_TOKENS)
