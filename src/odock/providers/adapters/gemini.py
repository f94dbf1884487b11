"""The Gemini adapter: Google's Generative Language API (``generativelanguage.googleapis.com``).

The payload of an :class:`UpstreamCall` is already a Gemini body (a Gemini client's, or one
encoded by :mod:`odock.providers.adapters.gemini_codec`); the model travels in the URL::

    Endpoint.CHAT          POST {base}/v1beta/models/{model}:generateContent
                           stream: :streamGenerateContent?alt=sse
    Endpoint.EMBEDDINGS    POST …:embedContent, or :batchEmbedContents when the body has ``requests``
    Endpoint.COUNT_TOKENS  POST …:countTokens (:meth:`GeminiAdapter.count_tokens` reads the total)

A base URL that already ends in ``/v1beta`` or ``/v1`` is used as is. Requests carry the key in
``x-goog-api-key`` and the provider's headers, and ask for an uncompressed body (answers are
forwarded as the bytes received). A ``model`` key in the payload is not sent (the URL names it).

Gemini's stream has no ``[DONE]``: it is complete when a chunk carried a ``finishReason`` (or a
``promptFeedback.blockReason``); a body that ends before that is
:class:`~odock.errors.UpstreamStreamInterrupted`. Errors arrive in Google's shape
(``{"error": {"code", "message", "status", "details"}}``) and map like the OpenAI adapter's; a
429's wait comes from ``Retry-After`` or the ``RetryInfo`` detail's ``retryDelay``, and a key
Google calls invalid (400 with reason ``API_KEY_INVALID``) is an auth failure, not a rejection.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from odock.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamStreamInterrupted,
)
from odock.llm.upstream import Endpoint, StreamChunk, UnaryResult, Usage
from odock.providers.adapters.base import UpstreamCall
from odock.providers.adapters.gemini_codec import usage_from_gemini
from odock.providers.adapters.transport import (
    MAX_EVENT_BYTES,
    body_lines,
    json_object_of,
    open_event_stream,
    text_of,
    translated_failures,
)
from odock.providers.upstream_client import Response, UpstreamClient

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


class GeminiAdapter:
    """Speaks Google's Gemini API."""

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def complete(self, call: UpstreamCall) -> UnaryResult:
        """Send a non-streaming request; the whole answer is read within the call's timeouts."""
        response, body = await self._post(call, _method(call))
        usage = _usage_of(body) if call.endpoint == Endpoint.CHAT else None
        return UnaryResult(body=body, usage=usage, provider_request_id=_request_id(response))

    async def count_tokens(self, call: UpstreamCall) -> int:
        """The upstream's ``totalTokens`` for the request in ``call.payload``."""
        _, body = await self._post(call, "countTokens")
        data = json_object_of(body)
        total = data.get("totalTokens") if data is not None else None
        if isinstance(total, bool) or not isinstance(total, int):
            raise UpstreamError("upstream answered countTokens without totalTokens")
        return total

    async def stream(self, call: UpstreamCall) -> GeminiStream:
        """Open ``streamGenerateContent?alt=sse``; bounded by the call's timeouts."""
        url, headers = _target(call, "streamGenerateContent")
        response = await open_event_stream(
            self._client,
            url + "?alt=sse",
            _body(call),
            headers,
            timeouts=call.timeouts,
            status_error=_status_error,
        )
        return GeminiStream(response)

    async def _post(self, call: UpstreamCall, method: str) -> tuple[Response, bytes]:
        url, headers = _target(call, method)
        with translated_failures():
            response = await self._client.post(
                url, _body(call), headers, timeouts=call.timeouts, stream=False
            )
            body = await response.read()
        if response.status >= 400:
            raise _status_error(response.status, body, response.headers)
        return response, body


class GeminiStream:
    """Server-sent events of ``streamGenerateContent?alt=sse``, parsed chunk by chunk."""

    def __init__(self, response: Response) -> None:
        self._response = response
        self._events_iter: AsyncGenerator[StreamChunk, None] | None = None
        self.provider_request_id: str | None = _request_id(response)

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        self._events_iter = self._events()
        return self._events_iter

    async def _events(self) -> AsyncGenerator[StreamChunk, None]:
        data: list[bytes] = []
        size = 0
        finished = False
        usage: Usage | None = None
        with translated_failures(streaming=True):
            async for line in body_lines(self._response.chunks()):
                if line.startswith(b"data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(b" ") else value)
                    size += len(value)
                    if size > MAX_EVENT_BYTES:
                        raise UpstreamError(f"upstream sent a stream event over {MAX_EVENT_BYTES} bytes")
                    continue
                if line or not data:
                    continue  # comments and other fields; or a blank line with no data
                chunk, finished_here = _chunk(b"\n".join(data), usage)
                data, size = [], 0
                usage = chunk.usage
                finished = finished or finished_here
                yield chunk
        if data:  # a last event without its blank line
            chunk, finished_here = _chunk(b"\n".join(data), usage)
            finished = finished or finished_here
            yield chunk
        if not finished:
            raise UpstreamStreamInterrupted()

    async def aclose(self) -> None:
        """Finish the event parser (if a reader abandoned it) and release the connection."""
        if self._events_iter is not None:
            await self._events_iter.aclose()
        self._response.release()


def _chunk(payload: bytes, usage: Usage | None) -> tuple[StreamChunk, bool]:
    """One chunk, with the latest usage known, and whether it ends the answer."""
    event = json_object_of(payload)
    if event is None:
        raise UpstreamError("upstream sent a malformed stream event")
    if isinstance(event.get("error"), dict):
        raise UpstreamError(_message_of(event) or "upstream reported an error mid-stream")
    if isinstance(event.get("usageMetadata"), dict):
        usage = usage_from_gemini(event["usageMetadata"])
    chars = 0
    finished = _blocked(event)
    for candidate in event.get("candidates") or []:
        if not isinstance(candidate, dict):
            continue
        finished = finished or isinstance(candidate.get("finishReason"), str)
        content = candidate.get("content")
        for part in content.get("parts") or [] if isinstance(content, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                chars += len(part["text"])
    return StreamChunk(payload, usage=usage, text_chars=chars), finished


def _blocked(event: dict[str, Any]) -> bool:
    feedback = event.get("promptFeedback")
    return isinstance(feedback, dict) and isinstance(feedback.get("blockReason"), str)


def _method(call: UpstreamCall) -> str:
    if call.endpoint == Endpoint.EMBEDDINGS:
        return "batchEmbedContents" if "requests" in call.payload else "embedContent"
    if call.endpoint == Endpoint.COUNT_TOKENS:
        return "countTokens"
    return "generateContent"


def _target(call: UpstreamCall, method: str) -> tuple[str, dict[str, str]]:
    base = (call.provider.base_url or DEFAULT_BASE_URL).rstrip("/")
    if not base.endswith(("/v1beta", "/v1")):
        base += "/" + DEFAULT_API_VERSION
    model = call.model or str(call.payload.get("model") or "")
    url = f"{base}/models/{quote(model.removeprefix('models/'), safe='')}:{method}"
    headers = {
        "content-type": "application/json",
        "accept-encoding": "identity",  # the body is forwarded as is, never decompressed
        "x-request-id": call.request_id,
    }
    if call.api_key:
        headers["x-goog-api-key"] = call.api_key
    for name, value in call.headers.items():
        headers[name.lower()] = value
    return url, headers


def _body(call: UpstreamCall) -> bytes:
    return orjson.dumps({key: value for key, value in call.payload.items() if key != "model"})


def _request_id(response: Response) -> str | None:
    return response.headers.get("x-request-id") or response.headers.get("x-goog-request-id")


def _status_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    data = json_object_of(body)
    message = (_message_of(data) if data is not None else None) or text_of(body)
    message = message or f"upstream answered HTTP {status}"
    details = _details(data)
    retry = headers.get("retry-after") or _retry_delay(details)
    retry_headers = {"retry-after": retry} if retry else None
    if status in (401, 403) or _reason(details) == "API_KEY_INVALID":
        return UpstreamAuthFailed(message, upstream_status=status)
    if status == 429:
        return UpstreamRateLimited(message, upstream_status=status, headers=retry_headers)
    if 400 <= status < 500:
        return UpstreamRejected(message, upstream_status=status, param=_field_violation(details))
    return UpstreamError(message, upstream_status=status, headers=retry_headers if status == 503 else None)


def _message_of(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return None


def _details(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    error = data.get("error") if data is not None else None
    details = error.get("details") if isinstance(error, dict) else None
    return [item for item in details if isinstance(item, dict)] if isinstance(details, list) else []


def _retry_delay(details: list[dict[str, Any]]) -> str | None:
    """RetryInfo's ``retryDelay`` ("7s", "0.5s") as whole Retry-After seconds."""
    for detail in details:
        delay = detail.get("retryDelay")
        if detail.get("@type") == _RETRY_INFO and isinstance(delay, str) and delay.endswith("s"):
            try:
                return str(max(math.ceil(float(delay[:-1])), 0))
            except ValueError:
                return None
    return None


def _reason(details: list[dict[str, Any]]) -> str | None:
    for detail in details:
        if detail.get("@type") == _ERROR_INFO and isinstance(detail.get("reason"), str):
            return str(detail["reason"])
    return None


def _field_violation(details: list[dict[str, Any]]) -> str | None:
    for detail in details:
        violations = detail.get("fieldViolations") if detail.get("@type") == _BAD_REQUEST else None
        if isinstance(violations, list) and violations and isinstance(violations[0], dict):
            field = violations[0].get("field")
            return field if isinstance(field, str) else None
    return None


def _usage_of(body: bytes) -> Usage | None:
    data = json_object_of(body)
    if data is None:
        raise UpstreamError("upstream answered with a body that is not a JSON object")
    if isinstance(data.get("error"), dict) and "candidates" not in data:
        raise UpstreamError(_message_of(data) or "upstream reported an error")
    meta = data.get("usageMetadata")
    return usage_from_gemini(meta) if isinstance(meta, dict) else None
