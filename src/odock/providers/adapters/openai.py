"""The OpenAI-compatible adapter: OpenAI, Azure OpenAI deployments, vLLM and compatible servers.

Requests and responses keep the OpenAI wire format; responses are forwarded as the bytes the
provider sent, so the upstream is asked for an uncompressed body (``accept-encoding: identity``).
A stream is accepted only once the provider answered with an event stream, so a provider that
fails with a non-stream answer gets a clean 502 before any byte reaches the client. Calls go
through :class:`~odock.providers.upstream_client.UpstreamClient`; every transport failure is
translated at this boundary (:func:`_translated`).

Two dialects share the transport: Chat Completions (and embeddings) and the Responses API
(``Endpoint.RESPONSES``, ``POST /responses``). They differ in three places only:

    usage       chat: ``usage.prompt_tokens``…   responses: ``usage.input_tokens``…, in the answer
                                                 or in the stream's final ``response.*`` event
    stream end  chat: ``data: [DONE]``           responses: a ``response.completed`` or
                                                 ``response.incomplete`` event (no [DONE])
    in-band     chat: an ``error`` object        responses: an ``error`` or ``response.failed``
    failure                                      event
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from odock.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamStreamInterrupted,
    UpstreamUnavailable,
)
from odock.llm.upstream import MAX_REPORTED_TOKENS, Endpoint, StreamChunk, UnaryResult, Usage
from odock.providers.adapters.base import UpstreamCall
from odock.providers.adapters.transport import (
    MAX_EVENT_BYTES,
    body_lines,
    json_object_of,
    open_event_stream,
    text_of,
    translated_failures,
)
from odock.providers.catalog import ProviderTarget
from odock.providers.upstream_client import (
    Response,
    UpstreamClient,
)

AZURE_DEFAULT_API_VERSION = "2024-10-21"
# Where a provider type lives when its provider row names no base URL.
DEFAULT_BASE_URLS = {"OPENAI": "https://api.openai.com/v1", "MISTRAL": "https://api.mistral.ai/v1"}
_PATHS = {
    Endpoint.CHAT: "/chat/completions",
    Endpoint.EMBEDDINGS: "/embeddings",
    Endpoint.RESPONSES: "/responses",
}
# The events that end a Responses stream normally (``response.failed`` ends it with an error).
RESPONSES_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})


class OpenAICompatibleAdapter:
    """Speaks the OpenAI HTTP API to any compatible upstream."""

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def complete(self, call: UpstreamCall) -> UnaryResult:
        """Send a non-streaming request; the whole answer is read within the call's timeouts."""
        url, headers = _target(call)
        data = orjson.dumps(_body(call))
        with translated_failures():
            response = await self._client.post(url, data, headers, timeouts=call.timeouts, stream=False)
            body = await response.read()
        if response.status >= 400:
            raise _status_error(response.status, body, response.headers)
        usage = _usage_of(body, call.endpoint)
        return UnaryResult(body=body, usage=usage, provider_request_id=response.headers.get("x-request-id"))

    async def stream(self, call: UpstreamCall) -> OpenAIStream:
        """Open a stream; bounded by the call's timeouts."""
        url, headers = _target(call)
        response = await open_event_stream(
            self._client,
            url,
            orjson.dumps(_body(call)),
            headers,
            timeouts=call.timeouts,
            status_error=_status_error,
        )
        return OpenAIStream(response, call.endpoint)


class OpenAIStream:
    """Server-sent events from an OpenAI-compatible upstream, parsed event by event."""

    def __init__(self, response: Response, endpoint: Endpoint = Endpoint.CHAT) -> None:
        self._response = response
        self._responses = endpoint is Endpoint.RESPONSES
        self._events_iter: AsyncGenerator[StreamChunk, None] | None = None
        self.provider_request_id: str | None = response.headers.get("x-request-id")

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        self._events_iter = self._responses_events() if self._responses else self._chat_events()
        return self._events_iter

    async def _chat_events(self) -> AsyncGenerator[StreamChunk, None]:
        with translated_failures(streaming=True):
            async for name, payload in _sse_events(self._response.chunks()):
                if payload == b"[DONE]":
                    return
                chunk = _chunk(payload)
                chunk.event = name
                yield chunk
        raise UpstreamStreamInterrupted()

    async def _responses_events(self) -> AsyncGenerator[StreamChunk, None]:
        with translated_failures(streaming=True):
            async for name, payload in _sse_events(self._response.chunks()):
                if payload == b"[DONE]":
                    break  # not how a Responses stream ends: only its final event does
                chunk, final = _responses_chunk(payload, name)
                yield chunk
                if final:
                    return
        raise UpstreamStreamInterrupted()

    async def aclose(self) -> None:
        """Finish the event parser (if a reader abandoned it) and release the connection."""
        if self._events_iter is not None:
            await self._events_iter.aclose()
        self._response.release()


async def _sse_events(pieces: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    """Each event's name (its ``event:`` line, if any) and data (its ``data:`` lines joined).

    A body that ends inside an event yields it only when it is ``[DONE]`` (some servers omit the
    final blank line); any other unfinished event is a truncated one, for the caller to judge.
    """
    name: str | None = None
    data: list[bytes] = []
    size = 0
    async for line in body_lines(pieces):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
            size += len(value)
            if size > MAX_EVENT_BYTES:
                raise UpstreamError(f"upstream sent a stream event over {MAX_EVENT_BYTES} bytes")
        elif line.startswith(b"event:"):
            value = line[6:]
            name = (value[1:] if value.startswith(b" ") else value).decode("utf-8", "replace")
        elif not line and data:
            yield name, b"\n".join(data)
            name, data, size = None, [], 0
        elif not line:
            name = None  # an event without data is not dispatched (SSE), its name dropped with it
        # anything else: comments, ids, retry hints
    if data and b"\n".join(data) == b"[DONE]":
        yield name, b"[DONE]"


def _event_of(payload: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("upstream sent a malformed stream event") from exc
    if not isinstance(event, dict):
        raise UpstreamError("upstream sent a malformed stream event")
    return event


def _chunk(payload: bytes) -> StreamChunk:
    event = _event_of(payload)
    if event.get("error"):
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


def _responses_chunk(payload: bytes, name: str | None) -> tuple[StreamChunk, bool]:
    """One Responses stream event as a chunk, and whether it ends the stream.

    An ``error`` event and a ``response.failed`` event end the stream with an UpstreamError.
    """
    event = _event_of(payload)
    kind = event.get("type")
    response = event.get("response")
    if kind == "error":
        raise UpstreamError(_message_of(event) or "upstream reported an error mid-stream")
    if kind == "response.failed":
        failed = response if isinstance(response, dict) else {}
        raise UpstreamError(_message_of(failed) or "upstream reported that the response failed")
    delta = event.get("delta")
    chars = len(delta) if kind == "response.output_text.delta" and isinstance(delta, str) else 0
    final = kind in RESPONSES_FINAL_EVENTS
    usage = response.get("usage") if final and isinstance(response, dict) else None
    if isinstance(usage, dict):
        return StreamChunk(payload, usage=responses_usage(usage), text_chars=chars, event=name), final
    return StreamChunk(payload, text_chars=chars, event=name), final


def responses_usage(usage: dict[str, Any]) -> Usage:
    """Read the ``usage`` object of a Responses answer (the response object's own)."""
    prompt = _count(usage.get("input_tokens"))
    completion = _count(usage.get("output_tokens"))
    input_details = usage.get("input_tokens_details")
    output_details = usage.get("output_tokens_details")
    input_details = input_details if isinstance(input_details, dict) else {}
    output_details = output_details if isinstance(output_details, dict) else {}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=_count(usage.get("total_tokens")) or prompt + completion,
        cached_tokens=_count(input_details.get("cached_tokens")),
        reasoning_tokens=_count(output_details.get("reasoning_tokens")),
        cache_write_tokens=_count(input_details.get("cache_write_tokens")),
        raw=usage,
    )


def _count(value: object) -> int:
    """A reported token count: a non-negative integer (clamped as Usage.from_openai does), else 0."""
    return min(value, MAX_REPORTED_TOKENS) if isinstance(value, int) and value >= 0 else 0


def _body(call: UpstreamCall) -> dict[str, Any]:
    """The payload to send: as given, but an Azure Responses call names its deployment as model."""
    if call.provider.type == "AZURE_OPENAI" and call.endpoint is Endpoint.RESPONSES:
        return {**call.payload, "model": _azure_deployment(call)}
    return call.payload


def _azure_deployment(call: UpstreamCall) -> str:
    return str(call.model_config.get("deployment") or call.payload.get("model"))


def _azure_url(base: str, call: UpstreamCall) -> str:
    """Chat and embeddings go to the deployment's path; Responses to the resource's.

    Azure serves the Responses API on its v1 API (``/openai/v1/responses``, no api-version, the
    deployment named in the body), as Microsoft's current documentation asks; a provider that
    sets ``config.responses_api_version`` uses the older preview form instead
    (``/openai/responses?api-version=…``).
    """
    config = call.provider.config
    if call.endpoint is Endpoint.RESPONSES:
        preview = config.get("responses_api_version")
        if preview:
            return f"{base}/openai/responses?api-version={quote(str(preview), safe='')}"
        return f"{base}/openai/v1/responses"
    deployment = quote(_azure_deployment(call), safe="")
    version = quote(str(config.get("api_version") or AZURE_DEFAULT_API_VERSION), safe="")
    return f"{base}/openai/deployments/{deployment}{_PATHS[call.endpoint]}?api-version={version}"


def _target(call: UpstreamCall) -> tuple[str, dict[str, str]]:
    provider = call.provider
    base = _base_url(provider)
    headers = {
        "content-type": "application/json",
        "accept-encoding": "identity",  # the body is forwarded as is, never decompressed
        "x-request-id": call.request_id,
    }
    if provider.type == "AZURE_OPENAI":
        url = _azure_url(base, call)
        if call.api_key:
            headers["api-key"] = call.api_key
        return url, headers
    if provider.type == "VLLM" and urlsplit(base).path in ("", "/"):
        base += "/v1"  # vLLM's default base URL is the server root
    if call.api_key:
        headers["authorization"] = f"Bearer {call.api_key}"
    for name, value in call.headers.items():
        headers[name.lower()] = value
    return base + _PATHS[call.endpoint], headers


def _base_url(provider: ProviderTarget) -> str:
    base = (provider.base_url or DEFAULT_BASE_URLS.get(provider.type, "")).rstrip("/")
    if not base:
        raise UpstreamUnavailable(f"provider '{provider.name}' has no base URL configured")
    return base


def _status_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    data = json_object_of(body)
    message = _message_of(data) if data is not None else text_of(body)
    message = message or f"upstream answered HTTP {status}"
    retry = headers.get("retry-after")
    retry_headers = {"retry-after": retry} if retry else None
    if status in (401, 403):
        return UpstreamAuthFailed(message, upstream_status=status)
    if status == 429:
        return UpstreamRateLimited(message, upstream_status=status, headers=retry_headers)
    if 400 <= status < 500:
        # The field the provider objected to is the caller's field too (model aside, names match).
        param = _param_of(data) if data is not None else None
        return UpstreamRejected(message, upstream_status=status, param=param)
    return UpstreamError(message, upstream_status=status, headers=retry_headers if status == 503 else None)


def _message_of(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(data.get("message"), str):
        return str(data["message"])
    return None


def _param_of(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    param = error.get("param") if isinstance(error, dict) else None
    return param if isinstance(param, str) else None


def _usage_of(body: bytes, endpoint: Endpoint = Endpoint.CHAT) -> Usage | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("upstream answered with a body that is not JSON") from exc
    if not isinstance(data, dict):
        return None
    if data.get("error") and "choices" not in data and "data" not in data:
        # Some compatible servers report failures with a 200 status.
        raise UpstreamError(_message_of(data) or "upstream reported an error")
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    return responses_usage(usage) if endpoint is Endpoint.RESPONSES else Usage.from_openai(usage)
