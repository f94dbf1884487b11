"""The OpenAI-compatible adapter's translations: targets, upstream errors, bodies and SSE events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from odock.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from odock.llm.upstream import MAX_REPORTED_TOKENS, Endpoint, Usage
from odock.providers.adapters import openai as adapter
from odock.providers.adapters import transport
from odock.providers.adapters.base import Timeouts, UpstreamCall
from odock.providers.catalog import ProviderTarget


def _call(
    provider_type: str,
    base_url: str | None,
    *,
    config: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    endpoint: Endpoint = Endpoint.CHAT,
    api_key: str | None = "sk-up",
    headers: dict[str, str] | None = None,
) -> UpstreamCall:
    provider = ProviderTarget("p1", provider_type, "upstream", base_url, None, True, "v1", config or {})
    return UpstreamCall(
        endpoint=endpoint,
        payload={"model": "slug-1", "messages": []},
        provider=provider,
        api_key=api_key,
        timeouts=Timeouts(connect=5, first_byte=5, idle=5, total=5),
        request_id="rid-1",
        model_config=model_config or {},
        headers=headers or {},
    )


def test_openai_target_asks_for_identity_encoding() -> None:
    """OpenAI calls carry the bearer key, the request id, and refuse compressed answers."""
    url, headers = adapter._target(_call("OPENAI", "https://up.example/v1/"))
    assert url == "https://up.example/v1/chat/completions"
    assert headers["authorization"] == "Bearer sk-up"
    assert headers["x-request-id"] == "rid-1"
    assert headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    ("provider_type", "url"),
    [("OPENAI", "https://api.openai.com/v1/embeddings"), ("MISTRAL", "https://api.mistral.ai/v1/embeddings")],
)
def test_default_base_url(provider_type: str, url: str) -> None:
    """Hosted providers without a base URL use their public API."""
    assert adapter._target(_call(provider_type, None, endpoint=Endpoint.EMBEDDINGS))[0] == url


@pytest.mark.parametrize("provider_type", ["VLLM", "CUSTOM", "AZURE_OPENAI"])
def test_missing_base_url_is_unavailable(provider_type: str) -> None:
    """Self-hosted providers without a base URL fail with a clear upstream error."""
    with pytest.raises(UpstreamUnavailable, match="no base URL"):
        adapter._target(_call(provider_type, None))


def test_azure_target_uses_deployment_and_api_key() -> None:
    """Azure calls go to the deployment named in the model config, with the api-key header."""
    call = _call(
        "AZURE_OPENAI",
        "https://res.openai.azure.com",
        config={"api_version": "2024-06-01"},
        model_config={"deployment": "dep-9"},
    )
    url, headers = adapter._target(call)
    assert (
        url == "https://res.openai.azure.com/openai/deployments/dep-9/chat/completions?api-version=2024-06-01"
    )
    assert headers["api-key"] == "sk-up"
    assert "authorization" not in headers


def test_azure_deployment_is_one_path_segment() -> None:
    """A deployment name cannot climb out of its path segment or add query parameters."""
    call = _call("AZURE_OPENAI", "https://res", model_config={"deployment": "../x?y=1"})
    url, _ = adapter._target(call)
    assert url == "https://res/openai/deployments/..%2Fx%3Fy%3D1/chat/completions?api-version=2024-10-21"


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("http://vllm:8000", "http://vllm:8000/v1/chat/completions"),
        ("http://vllm:8000/", "http://vllm:8000/v1/chat/completions"),
        ("http://vllm:8000/custom", "http://vllm:8000/custom/chat/completions"),
    ],
)
def test_vllm_root_gets_v1(base_url: str, url: str) -> None:
    """A vLLM server root gets /v1; an explicit path is kept."""
    target, headers = adapter._target(_call("VLLM", base_url, api_key=None))
    assert target == url
    assert "authorization" not in headers


def test_configured_headers_are_added() -> None:
    """The call's (decrypted) provider headers are sent with lower-case names, not the stored config's."""
    stored = {"headers": {"X-Org": {"v": 1, "ciphertext": "…"}}}
    call = _call("CUSTOM", "http://x/v1", config=stored, headers={"X-Org": "o1"})
    _, headers = adapter._target(call)
    assert headers["x-org"] == "o1"


def _error_body(message: str, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": param}})


def test_status_401_is_auth_failure() -> None:
    """A provider refusing the provider key is a 502 upstream_auth_failed."""
    error = adapter._status_error(401, _error_body("bad key"), {})
    assert isinstance(error, UpstreamAuthFailed)
    assert (error.http_status, error.message) == (502, "bad key")


def test_status_429_keeps_retry_after() -> None:
    """A provider 429 keeps its Retry-After."""
    error = adapter._status_error(429, _error_body("slow down"), {"retry-after": "3"})
    assert isinstance(error, UpstreamRateLimited)
    assert error.headers == {"retry-after": "3"}


def test_status_4xx_keeps_status_and_param() -> None:
    """A provider 4xx is passed on with its status, message and offending field."""
    error = adapter._status_error(422, _error_body("bad temperature", "temperature"), {})
    assert isinstance(error, UpstreamRejected)
    assert (error.http_status, error.message, error.param) == (422, "bad temperature", "temperature")


def test_status_503_keeps_retry_after_and_5xx_is_bad_gateway() -> None:
    """Provider 5xx answers are 502s; a 503 keeps its Retry-After."""
    overloaded = adapter._status_error(503, b"busy", {"retry-after": "9"})
    assert type(overloaded) is UpstreamError
    assert (overloaded.http_status, overloaded.message, overloaded.headers) == (
        502,
        "busy",
        {"retry-after": "9"},
    )
    assert adapter._status_error(500, b"", {"retry-after": "9"}).headers == {}


def test_status_error_without_body_names_status() -> None:
    """An empty error body still gives a useful message."""
    assert adapter._status_error(500, b"", {}).message == "upstream answered HTTP 500"


def test_usage_of_reads_openai_usage() -> None:
    """The usage object of a completion is read, details included."""
    body = orjson.dumps(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 7,
                "total_tokens": 12,
                "prompt_tokens_details": {"cached_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
        }
    )
    usage = adapter._usage_of(body)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 7)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (2, 3)


def test_usage_of_rejects_error_with_status_200() -> None:
    """An error object sent with status 200 is an upstream error, not an answer."""
    with pytest.raises(UpstreamError, match="overloaded"):
        adapter._usage_of(orjson.dumps({"error": {"message": "overloaded"}}))


def test_usage_of_rejects_non_json() -> None:
    """A body that is not JSON is an upstream error."""
    with pytest.raises(UpstreamError, match="not JSON"):
        adapter._usage_of(b"<html>")


def test_chunk_with_null_error_is_an_ordinary_chunk() -> None:
    """A chunk carrying ``"error": null`` is data, not a failure."""
    chunk = adapter._chunk(b'{"error": null, "choices": [{"delta": {"content": "hey"}}]}')
    assert chunk.text_chars == 3


def test_chunk_with_error_raises() -> None:
    """An in-band error event becomes an upstream error with the provider's message."""
    with pytest.raises(UpstreamError, match="melted"):
        adapter._chunk(b'{"error": {"message": "melted"}}')


def test_usage_only_chunk() -> None:
    """The final usage chunk (no choices) is marked usage-only."""
    chunk = adapter._chunk(b'{"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}')
    assert chunk.usage_only
    assert chunk.usage is not None
    assert chunk.usage.total_tokens == 3


async def _pieces(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """Body pieces as the upstream client yields them."""
    for piece in pieces:
        yield piece


async def _lines(pieces: list[bytes]) -> list[bytes]:
    return [line async for line in transport.body_lines(_pieces(pieces))]


async def test_lines_split_across_pieces_and_crlf() -> None:
    """Lines are reassembled across network pieces and lose their LF or CRLF."""
    lines = await _lines([b"data: a", b"b\r\n\r", b"\ndata: c\n", b"tail"])
    assert lines == [b"data: ab", b"", b"data: c", b"tail"]


async def test_lines_allow_long_lines() -> None:
    """A line far longer than a transport's usual line limit is returned whole."""
    long = b"x" * (2 * 1024 * 1024)
    assert await _lines([long[:100_000], long[100_000:], b"\n"]) == [long]


async def test_lines_refuse_unbounded_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line without end past MAX_EVENT_BYTES is an upstream error, not unbounded memory."""
    monkeypatch.setattr(transport, "MAX_EVENT_BYTES", 10)
    with pytest.raises(UpstreamError, match="longer than 10 bytes"):
        await _lines([b"x" * 6, b"x" * 6])


def test_reported_token_counts_are_clamped_to_what_a_request_can_hold() -> None:
    """A provider's absurd counts (up to 2^64, as JSON integers parse) cannot overflow 64-bit columns."""
    usage = Usage.from_openai(
        {
            "prompt_tokens": 2**64 - 1,
            "completion_tokens": 2**63,
            "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": -3},
            "completion_tokens_details": {"reasoning_tokens": 2.5e30},
        }
    )
    assert (usage.prompt_tokens, usage.completion_tokens) == (MAX_REPORTED_TOKENS, MAX_REPORTED_TOKENS)
    assert (usage.total_tokens, usage.cached_tokens, usage.reasoning_tokens) == (7, 0, 0)
    assert usage.prompt_tokens + usage.completion_tokens < 2**32
