"""The whole Gemini translation chain: a google-genai body decoded by the surface, encoded for the
upstream, sent by the adapter to the fake, and its answer brought back in Gemini's shape.

This is the path a Gemini client takes to any upstream, with the upstream side also Gemini, so
both halves of the dialect meet: what the client side reads, the upstream side must have written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from google.genai import types as gtypes

from odock.llm.upstream import Endpoint
from odock.providers.adapters.base import Timeouts, UpstreamCall
from odock.providers.adapters.gemini import GeminiAdapter
from odock.providers.adapters.gemini_codec import GEMINI_EMBEDDINGS_UPSTREAM, GEMINI_UPSTREAM
from odock.providers.catalog import ProviderTarget
from odock.providers.upstream_client import UpstreamClient
from odock.surfaces import gemini as surface
from tests.fakes import script
from tests.fakes.gemini_server import FakeGemini, running_fake_gemini

KEY = "gm-fake-upstream"
TIMEOUTS = Timeouts(connect=5, first_byte=10, idle=10, total=10)
TOOLS = [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": {"type": "object"}}]}]


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


def _call(fake: FakeGemini, payload: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT) -> UpstreamCall:
    provider = ProviderTarget("p1", "GEMINI", "google", fake.base_url, None, True, "v1", {})
    return UpstreamCall(endpoint, payload, provider, KEY, TIMEOUTS, "rid", model="fake-echo")


async def _generate(fake: FakeGemini, gemini: GeminiAdapter, body: dict[str, Any]) -> dict[str, Any]:
    surface.check_generate_request(body)
    request = surface.GEMINI_CLIENT.decode_request({**body, "model": "fake-echo"})
    payload = GEMINI_UPSTREAM.encode_request(request, "fake-echo", stream=False)
    result = await gemini.complete(_call(fake, payload))
    answer = surface.GEMINI_CLIENT.encode_response(GEMINI_UPSTREAM.decode_response(orjson.loads(result.body)))
    gtypes.GenerateContentResponse.model_validate(answer)
    return answer


async def test_text_with_an_image(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """Text and an inline image reach the fake; the echo and usage come back."""
    image = {"inlineData": {"mimeType": "image/png", "data": "aGk="}}
    answer = await _generate(
        fake, gemini, {"contents": [{"role": "user", "parts": [{"text": "see"}, image]}]}
    )
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "Echo: see [1 image(s)]"}]
    assert answer["usageMetadata"]["promptTokenCount"] == script.PROMPT_TOKENS
    assert answer["usageMetadata"]["cachedContentTokenCount"] == script.CACHED_TOKENS


async def test_tool_round_trip(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """A call comes back with an id; answering it by that id brings the tool's text."""
    ask = {"role": "user", "parts": [{"text": "weather?"}]}
    first = await _generate(fake, gemini, {"contents": [ask], "tools": TOOLS})
    call = first["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert (call["name"], call["args"]) == ("get_weather", script.TOOL_ARGUMENTS)
    reply = {"functionResponse": {"id": call["id"], "name": "get_weather", "response": {"output": "sunny"}}}
    contents = [ask, {"role": "model", "parts": [{"functionCall": call}]}, {"role": "user", "parts": [reply]}]
    second = await _generate(fake, gemini, {"contents": contents, "tools": TOOLS})
    assert second["candidates"][0]["content"]["parts"] == [{"text": "Tool said: sunny"}]
    sent = fake.last_request().body["contents"][2]
    assert sent == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}],
    }


async def test_stream_with_thoughts(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """Streamed thoughts and text are re-encoded as Gemini chunks; the last has finish and usage."""
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 256}},
    }
    request = surface.GEMINI_CLIENT.decode_request({**body, "model": "fake-echo", "stream": True})
    payload = GEMINI_UPSTREAM.encode_request(request, "fake-echo", stream=True)
    stream = await gemini.stream(_call(fake, payload))
    decoder, encoder = GEMINI_UPSTREAM.stream_decoder(), surface.GEMINI_CLIENT.stream_encoder(request)
    chunks = []
    async for chunk in stream:
        for event in decoder.decode(orjson.loads(chunk.data)):
            chunks.extend(encoder.encode(event))
    await stream.aclose()
    for event in decoder.finish():
        chunks.extend(encoder.encode(event))
    chunks.extend(encoder.finish())
    parsed = [gtypes.GenerateContentResponse.model_validate(chunk) for chunk in chunks]
    thoughts = [c["candidates"][0]["content"]["parts"][0] for c in chunks[:1]]
    assert thoughts == [{"text": script.REASONING_TEXT, "thought": True}]
    assert "".join(p.text or "" for p in parsed) == "Echo: hi"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["thoughtsTokenCount"] == script.REASONING_TOKENS


async def test_embeddings(fake: FakeGemini, gemini: GeminiAdapter) -> None:
    """A batch of texts goes out as batchEmbedContents; vectors come back in both shapes."""
    body = {
        "requests": [{"content": {"parts": [{"text": t}]}, "outputDimensionality": 3} for t in ("a", "b")]
    }
    surface.check_batch_embed_request(body)
    request = surface.GEMINI_EMBEDDINGS_CLIENT.decode_embeddings({**body, "model": "fake-embed"})
    payload = GEMINI_EMBEDDINGS_UPSTREAM.encode_embeddings_request(request, "fake-embed")
    result = await gemini.complete(_call(fake, payload, Endpoint.EMBEDDINGS))
    response = GEMINI_EMBEDDINGS_UPSTREAM.decode_embeddings_response(orjson.loads(result.body))
    answer = surface.GEMINI_EMBEDDINGS_CLIENT.encode_embeddings(response)
    embeddings = gtypes.EmbedContentResponse.model_validate(answer).embeddings
    assert embeddings is not None
    assert [len(e.values or []) for e in embeddings] == [3, 3]
    assert json.dumps(answer) == json.dumps(orjson.loads(result.body))
