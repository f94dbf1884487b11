"""The OpenAI-compatible adapter: OpenAI, Azure OpenAI deployments, vLLM and compatible servers.

Requests and responses keep the OpenAI wire format; responses are forwarded as the bytes the
provider sent. Every aiohttp failure is translated at this boundary (:func:`_translated`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from odock.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamStreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from odock.providers.adapters.base import Endpoint, StreamChunk, UnaryResult, UpstreamCall, Usage

AZURE_DEFAULT_API_VERSION = "2024-10-21"
_PATHS = {Endpoint.CHAT: "/chat/completions", Endpoint.EMBEDDINGS: "/embeddings"}


class OpenAICompatibleAdapter:
    """Speaks the OpenAI HTTP API to any compatible upstream."""

    def __init__(self, session: aiohttp.ClientSession, connect_timeout: float) -> None:
        self._session = session
        self._connect_timeout = connect_timeout

    async def complete(self, call: UpstreamCall) -> UnaryResult:
        url, headers = _target(call)
        timeout = aiohttp.ClientTimeout(total=call.timeout, connect=self._connect_timeout)
        with _translated():
            async with self._session.post(url, data=orjson.dumps(call.payload), headers=headers, timeout=timeout) as r:
                body = await r.read()
                if r.status >= 400:
                    raise _status_error(r.status, body, r.headers)
                request_id = r.headers.get("x-request-id")
        usage = _usage_of(body)
        return UnaryResult(body=body, usage=usage, provider_request_id=request_id)

    async def stream(self, call: UpstreamCall) -> OpenAIStream:
        url, headers = _target(call)
        timeout = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout, sock_read=call.timeout)
        with _translated():
            response = await self._session.post(
                url, data=orjson.dumps(call.payload), headers=headers, timeout=timeout
            )
            if response.status >= 400:
                try:
                    body = await response.read()
                finally:
                    response.release()
                raise _status_error(response.status, body, response.headers)
        return OpenAIStream(response)


class OpenAIStream:
    """Server-sent events from an OpenAI-compatible upstream, parsed event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.provider_request_id: str | None = response.headers.get("x-request-id")

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamChunk]:
        data: list[bytes] = []
        with _translated(streaming=True):
            async for raw_line in self._response.content:
                line = raw_line.rstrip(b"\r\n")
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                    continue
                if line or not data:
                    continue  # comments, event names, retry hints; or a blank line with no data
                payload = b"\n".join(data)
                data = []
                if payload == b"[DONE]":
                    return
                yield _chunk(payload)
        if data and b"\n".join(data) == b"[DONE]":
            return
        raise UpstreamStreamInterrupted()

    async def aclose(self) -> None:
        self._response.release()


def _chunk(payload: bytes) -> StreamChunk:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("upstream sent a malformed stream event") from exc
    if not isinstance(event, dict):
        raise UpstreamError("upstream sent a malformed stream event")
    if "error" in event:
        raise UpstreamError(_message_of(event) or "upstream reported an error mid-stream")
    chars = 0
    choices = event.get("choices") or []
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                chars += len(content)
    usage = event.get("usage")
    if isinstance(usage, dict):
        return StreamChunk(payload, usage=Usage.from_openai(usage), usage_only=not choices, text_chars=chars)
    return StreamChunk(payload, text_chars=chars)


def _target(call: UpstreamCall) -> tuple[str, dict[str, str]]:
    provider = call.provider
    base = (provider.base_url or "").rstrip("/")
    headers = {"content-type": "application/json", "x-request-id": call.request_id}
    if provider.type == "AZURE_OPENAI":
        deployment = call.model_config.get("deployment") or call.payload.get("model")
        version = provider.config.get("api_version") or AZURE_DEFAULT_API_VERSION
        url = f"{base}/openai/deployments/{deployment}{_PATHS[call.endpoint]}?api-version={version}"
        if call.api_key:
            headers["api-key"] = call.api_key
        return url, headers
    if provider.type == "VLLM" and urlsplit(base).path in ("", "/"):
        base += "/v1"  # vLLM's default base URL is the server root
    if call.api_key:
        headers["authorization"] = f"Bearer {call.api_key}"
    for name, value in (provider.config.get("headers") or {}).items():
        headers[str(name).lower()] = str(value)
    return base + _PATHS[call.endpoint], headers


@contextlib.contextmanager
def _translated(*, streaming: bool = False) -> Iterator[None]:
    """Translate aiohttp and asyncio failures into Odock upstream errors."""
    try:
        yield
    except UpstreamError:
        raise
    except (TimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout() from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable(f"cannot connect to upstream: {exc.os_error or exc}") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        if streaming:
            raise UpstreamStreamInterrupted() from exc
        raise UpstreamUnavailable("upstream closed the connection") from exc
    except aiohttp.ClientError as exc:
        if streaming:
            raise UpstreamStreamInterrupted() from exc
        raise UpstreamUnavailable(f"upstream request failed: {exc}") from exc


def _status_error(status: int, body: bytes, headers: Any) -> UpstreamError:
    message = _message_of_body(body) or f"upstream answered HTTP {status}"
    if status in (401, 403):
        return UpstreamAuthFailed(message, upstream_status=status)
    if status == 429:
        retry = headers.get("retry-after")
        return UpstreamRateLimited(message, upstream_status=status, headers={"retry-after": retry} if retry else None)
    if 400 <= status < 500:
        return UpstreamRejected(message, upstream_status=status)
    return UpstreamError(message, upstream_status=status)


def _message_of_body(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:500] or None
    return _message_of(data) if isinstance(data, dict) else None


def _message_of(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(data.get("message"), str):
        return str(data["message"])
    return None


def _usage_of(body: bytes) -> Usage | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("upstream answered with a body that is not JSON") from exc
    usage = data.get("usage") if isinstance(data, dict) else None
    return Usage.from_openai(usage) if isinstance(usage, dict) else None
