"""The Gemini adapter against the fake Gemini server: URLs, headers, usage, streams and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from google.genai import types as gtypes

from odock.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamStreamInterrupted,
)
from odock.llm.types import (
    FinishReason,
    GenerationRequest,
    Message,
    ReasoningConfig,
    StreamFinish,
    Text,
    TextDelta,
    Tool,
)
from odock.llm.upstream import Endpoint, StreamChunk
from odock.providers.adapters import gemini as adapter
from odock.providers.adapters.base import Timeouts, UpstreamCall
from odock.providers.adapters.gemini import GeminiAdapter
from odock.providers.adapters.gemini_codec import GEMINI_UPSTREAM
from odock.providers.catalog import ProviderTarget
from odock.providers.upstream_client import UpstreamClient
from tests.fakes import script
from tests.fakes.gemini_server import FakeGemini, running_fake_gemini

KEY = "gm-fake-upstream"
ASK = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    """One fake Gemini server for the module."""
    with running_fake_gemini(api_key=KEY) as server:
        yield server


@pytest.fixture
async def gemini() -> AsyncIterator[GeminiAdapter]:
    """An adapter over a fresh upstream client."""
    client = UpstreamClient(max_connections=4)
    yield GeminiAdapter(client)
    await client.close()


def _call(
    base_url: str | None,
    model: str,
    payload: dict[str, Any] | None = None,
    *,
    endpoint: Endpoint = Endpoint.CHAT,
    api_key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> UpstreamCall:
    provider = ProviderTarget("p1", "GEMINI", "google", base_url, None, True, "v1", {})
    return UpstreamCall(
        endpoint=endpoint,
        payload=dict(payload if payload is not None else ASK),
        provider=provider,
        api_key=api_key,
        timeouts=Timeouts(connect=5, first_byte=10, idle=10, total=10),
        request_id="rid-1",
        headers=headers or {},
        model=model,
    )


def test_target_urls_and_headers() -> None:
    """The default base is Google's v1beta; a versioned base is kept; key and headers are sent."""
    url, headers = adapter._target(
        _call(None, "gemini-2.5-flash", headers={"X-Extra": "1"}), "generateContent"
    )
    assert url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert headers["x-goog-api-key"] == KEY
    assert headers["accept-encoding"] == "identity"
    assert headers["x-extra"] == "1"
    assert adapter._target(_call("https://g.example/v1/", "m"), "countTokens")[0] == (
        "https://g.example/v1/models/m:countTokens"
    )


async def test_unary_answer_is_forwarded_with_usage(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """generateContent bytes pass through; usage is read; the model key is not sent."""
    result = await gemini.complete(_call(fake.base_url, "fake-echo", {**ASK, "model": "fake-echo"}))
    request = fake.last_request()
    assert request.path == "/v1beta/models/fake-echo:generateContent"
    assert request.headers["x-goog-api-key"] == KEY
    assert request.body == ASK
    payload = orjson.loads(result.body)
    gtypes.GenerateContentResponse.model_validate(payload)
    assert payload["candidates"][0]["content"]["parts"] == [{"text": "Echo: hi there"}]
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.cached_tokens) == (
        script.PROMPT_TOKENS,
        script.CACHED_TOKENS,
    )
    assert result.usage.completion_tokens == 3


async def test_encoded_tool_request_round_trip(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """A codec-encoded request with tools and thinking gets a thought and a function call back."""
    request = GenerationRequest(
        model="x",
        messages=[Message("user", [Text("weather?")])],
        tools=[Tool("get_weather", parameters={"type": "object"})],
        reasoning=ReasoningConfig(effort="low"),
    )
    payload = GEMINI_UPSTREAM.encode_request(request, "fake-echo", stream=False)
    result = await gemini.complete(_call(fake.base_url, "fake-echo", payload))
    response = GEMINI_UPSTREAM.decode_response(orjson.loads(result.body))
    assert response.finish_reason is FinishReason.TOOL_CALLS
    kinds = [type(part).__name__ for part in response.parts]
    assert kinds == ["Reasoning", "ToolCall"]
    assert response.usage.reasoning_tokens == script.REASONING_TOKENS


async def test_stream_chunks_and_decoding(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """alt=sse chunks arrive with usage on the last; decoding them gives the scripted text."""
    stream = await gemini.stream(_call(fake.base_url, "fake-echo"))
    chunks: list[StreamChunk] = [chunk async for chunk in stream]
    await stream.aclose()
    assert fake.last_request().query == {"alt": "sse"}
    assert fake.last_request().path == "/v1beta/models/fake-echo:streamGenerateContent"
    decoder = GEMINI_UPSTREAM.stream_decoder()
    events = [event for chunk in chunks for event in decoder.decode(orjson.loads(chunk.data))]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Echo: hi there"
    assert any(isinstance(e, StreamFinish) and e.finish_reason is FinishReason.STOP for e in events)
    assert sum(chunk.text_chars for chunk in chunks) == len("Echo: hi there")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == script.PROMPT_TOKENS + 3


@pytest.mark.parametrize("model", ["fake-broken-stream", "fake-truncated-stream"])
async def test_stream_without_finish_is_interrupted(
    fake: FakeGemini, gemini: GeminiAdapter, model: str
) -> None:
    """A stream that ends (or breaks) before a finishReason is interrupted."""
    stream = await gemini.stream(_call(fake.base_url, model))
    received: list[StreamChunk] = []

    async def read_all() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(UpstreamStreamInterrupted):
        await read_all()
    await stream.aclose()
    assert received


async def test_blocked_prompt_is_an_answer(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """A 200 with a blockReason and no candidates is a complete answer, unary and streamed."""
    result = await gemini.complete(_call(fake.base_url, "fake-blocked"))
    assert (
        GEMINI_UPSTREAM.decode_response(orjson.loads(result.body)).finish_reason
        is FinishReason.CONTENT_FILTER
    )
    stream = await gemini.stream(_call(fake.base_url, "fake-blocked"))
    assert len([chunk async for chunk in stream]) == 1
    await stream.aclose()


async def test_embeddings_choose_the_method_by_shape(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """A body with requests goes to batchEmbedContents, one content to embedContent."""
    one = {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3}
    result = await gemini.complete(_call(fake.base_url, "emb", one, endpoint=Endpoint.EMBEDDINGS))
    assert fake.last_request().path == "/v1beta/models/emb:embedContent"
    assert len(orjson.loads(result.body)["embedding"]["values"]) == 3
    batch = {"requests": [{"model": "models/emb", **one}, {"model": "models/emb", **one}]}
    result = await gemini.complete(_call(fake.base_url, "emb", batch, endpoint=Endpoint.EMBEDDINGS))
    assert fake.last_request().path == "/v1beta/models/emb:batchEmbedContents"
    assert len(orjson.loads(result.body)["embeddings"]) == 2
    assert result.usage is None


async def test_count_tokens(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """countTokens answers the upstream's totalTokens."""
    assert await gemini.count_tokens(_call(fake.base_url, "fake-echo")) == 2
    assert fake.last_request().path == "/v1beta/models/fake-echo:countTokens"


@pytest.mark.parametrize(
    ("model", "api_key", "error", "status"),
    [
        ("fake-error-400", KEY, UpstreamRejected, 400),
        ("fake-error-401", KEY, UpstreamAuthFailed, 401),
        ("fake-error-500", KEY, UpstreamError, 500),
        ("fake-echo", "wrong-key", UpstreamAuthFailed, 400),
        ("fake-echo", None, UpstreamAuthFailed, 403),
    ],
)
async def test_errors(
    fake: FakeGemini,
    gemini: GeminiAdapter,
    model: str,
    api_key: str | None,
    error: type[Exception],
    status: int,
) -> None:
    """Google's errors map like OpenAI's; an invalid key (400 API_KEY_INVALID) is an auth failure."""
    with pytest.raises(error) as caught:
        await gemini.complete(_call(fake.base_url, model, api_key=api_key))
    assert type(caught.value) is error
    assert caught.value.upstream_status == status  # type: ignore[attr-defined]


async def test_rate_limit_takes_retry_info(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """A 429 without Retry-After takes its wait from RetryInfo; a 503 keeps it too, on streams."""
    with pytest.raises(UpstreamRateLimited) as caught:
        await gemini.complete(_call(fake.base_url, "fake-error-429"))
    assert caught.value.headers == {"retry-after": "7"}
    with pytest.raises(UpstreamError) as failed:
        await gemini.stream(_call(fake.base_url, "fake-error-503"))
    assert failed.value.upstream_status == 503


def test_retry_delay_and_field_violation_parsing() -> None:
    """Fractional delays round up; a BadRequest field violation names the param."""
    body = orjson.dumps(
        {
            "error": {
                "code": 400,
                "message": "bad",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": "generation_config.top_k", "description": "x"}],
                    }
                ],
            }
        }
    )
    rejected = adapter._status_error(400, body, {})
    assert isinstance(rejected, UpstreamRejected)
    assert rejected.param == "generation_config.top_k"
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.2s"}
    assert adapter._retry_delay([retry]) == "2"
