"""The google-genai SDK against the fake Gemini server: the fake speaks Google's exact wire format.

The same SDK is what a Gemini client of the gateway runs, so what it parses here (and what the
surface's payloads validate against in the other tests) is the shape the gateway must produce.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors as gerrors
from google.genai import types as gtypes

from odock.errors import UnsupportedParameter
from odock.surfaces import gemini as surface
from tests.fakes import script
from tests.fakes.gemini_server import FakeGemini, running_fake_gemini

KEY = "gm-fake-upstream"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    """One fake Gemini server for the module."""
    with running_fake_gemini(api_key=KEY) as server:
        yield server


@pytest.fixture(params=["v1beta", "v1"])
def client(request: pytest.FixtureRequest, fake: FakeGemini) -> genai.Client:
    """An SDK client pointed at the fake, for each API version."""
    options = gtypes.HttpOptions(base_url=fake.base_url, api_version=request.param)
    return genai.Client(api_key=KEY, http_options=options)


def test_generate_content(client: genai.Client, fake: FakeGemini) -> None:
    """A text prompt gets the scripted echo and usage with cached tokens."""
    response = client.models.generate_content(model="fake-echo", contents="hi there")
    assert response.text == "Echo: hi there"
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == script.PROMPT_TOKENS
    assert response.usage_metadata.cached_content_token_count == script.CACHED_TOKENS
    assert fake.last_request().headers["x-goog-api-key"] == KEY
    # What the SDK sends is what the surface accepts.
    surface.check_generate_request(fake.last_request().body)


def test_generate_content_stream(client: genai.Client, fake: FakeGemini) -> None:
    """The stream arrives in pieces; the last chunk has the finish reason and usage."""
    chunks = list(client.models.generate_content_stream(model="fake-echo", contents="hi there"))
    assert "".join(chunk.text or "" for chunk in chunks) == "Echo: hi there"
    assert len(chunks) > 1
    assert chunks[-1].candidates is not None
    assert chunks[-1].candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert fake.last_request().query == {"alt": "sse"}


def test_function_calling_round_trip(client: genai.Client, fake: FakeGemini) -> None:
    """Declared tools get a function call; its response gets the tool's text back."""
    tool = gtypes.Tool(
        function_declarations=[
            gtypes.FunctionDeclaration(
                name="get_weather",
                description="The weather in a city.",
                parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
            )
        ]
    )
    config = gtypes.GenerateContentConfig(tools=[tool])
    first = client.models.generate_content(model="fake-echo", contents="weather?", config=config)
    assert first.function_calls is not None
    call = first.function_calls[0]
    assert (call.name, call.args) == ("get_weather", script.TOOL_ARGUMENTS)
    surface.check_generate_request(fake.last_request().body)
    history = [
        gtypes.Content(role="user", parts=[gtypes.Part(text="weather?")]),
        gtypes.Content(role="model", parts=[gtypes.Part(function_call=call)]),
        gtypes.Content(
            role="user",
            parts=[gtypes.Part.from_function_response(name="get_weather", response={"output": "sunny"})],
        ),
    ]
    second = client.models.generate_content(model="fake-echo", contents=history, config=config)
    assert second.text == "Tool said: sunny"
    decoded = surface.GEMINI_CLIENT.decode_request({**fake.last_request().body, "model": "fake-echo"})
    assert [message.role for message in decoded.messages] == ["user", "assistant", "tool"]


def test_thinking_is_shown_when_asked(client: genai.Client) -> None:
    """includeThoughts brings a thought part before the answer."""
    config = gtypes.GenerateContentConfig(thinking_config=gtypes.ThinkingConfig(include_thoughts=True))
    response = client.models.generate_content(model="fake-echo", contents="hi", config=config)
    assert response.candidates is not None
    parts = response.candidates[0].content.parts if response.candidates[0].content else None
    assert parts is not None
    assert (parts[0].thought, parts[0].text) == (True, script.REASONING_TEXT)
    assert response.usage_metadata is not None
    assert response.usage_metadata.thoughts_token_count == script.REASONING_TOKENS


def test_embed_content(client: genai.Client, fake: FakeGemini) -> None:
    """The SDK's embed_content (a batchEmbedContents call) gets one vector per text."""
    config = gtypes.EmbedContentConfig(output_dimensionality=4, task_type="RETRIEVAL_QUERY")
    response = client.models.embed_content(model="fake-embed", contents=["a", "b"], config=config)
    assert response.embeddings is not None
    assert [len(e.values or []) for e in response.embeddings] == [4, 4]
    body = fake.last_request().body
    surface.check_batch_embed_request(body)
    assert surface.GEMINI_EMBEDDINGS_CLIENT.decode_embeddings(body).inputs == ["a", "b"]


def test_count_tokens(client: genai.Client) -> None:
    """countTokens answers a total."""
    assert client.models.count_tokens(model="fake-echo", contents="one two three").total_tokens == 3


def test_rate_limit_is_a_client_error(client: genai.Client) -> None:
    """The fake's 429 is the SDK's ClientError with code 429 and Google's status."""
    with pytest.raises(gerrors.ClientError) as caught:
        client.models.generate_content(model="fake-error-429", contents="x")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")


def test_surface_error_payload_is_read_by_the_sdk() -> None:
    """The gateway's Google-shaped error is parsed by the SDK like Google's own."""
    payload = surface.error_payload(UnsupportedParameter("no", param="cachedContent"))
    error = gerrors.APIError(400, payload)
    assert (error.code, error.status, error.message) == (400, "INVALID_ARGUMENT", "no")


def test_stream_without_sse_is_a_json_array(fake: FakeGemini) -> None:
    """Without alt=sse the stream is answered as one JSON array of chunks, as Google does."""
    request = urllib.request.Request(
        f"{fake.base_url}/v1beta/models/fake-echo:streamGenerateContent?key={KEY}",
        data=json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        chunks = json.loads(answer.read())
    assert isinstance(chunks, list)
    assert len(chunks) > 1
    for chunk in chunks:
        gtypes.GenerateContentResponse.model_validate(chunk)
