"""The fake Anthropic server speaks the real wire format: the official SDK, pointed at it, agrees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pydantic
import pytest

from tests.fakes import anthropic_server, script
from tests.fakes.anthropic_server import FakeAnthropic, running_fake_anthropic

KEY = "sk-ant-fake-upstream"
STREAM_EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
WEATHER: anthropic.types.ToolParam = {
    "name": "weather",
    "description": "Weather by city",
    "input_schema": {"type": "object"},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    """One fake server for the module."""
    with running_fake_anthropic(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    """The official sync client, pointed at the fake, without retries."""
    with anthropic.Anthropic(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_create_echoes_with_thinking(client: anthropic.Anthropic) -> None:
    """create() parses the scripted answer: a signed thinking block, then the echo, with usage."""
    message = client.messages.create(
        model=script.ECHO_MODEL,
        max_tokens=100,
        messages=_user("hello there"),
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].signature == anthropic_server.SIGNATURE  # type: ignore[union-attr]
    assert message.content[1].text == "Echo: hello there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == script.PROMPT_TOKENS - script.CACHED_TOKENS
    assert message.usage.cache_read_input_tokens == script.CACHED_TOKENS
    assert message.usage.output_tokens == 3 + script.REASONING_TOKENS


def test_images_are_counted(client: anthropic.Anthropic) -> None:
    """Images in the last user turn are counted in the echo."""
    image = {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}
    content: list[Any] = [{"type": "text", "text": "look"}, image, image]
    message = client.messages.create(
        model=script.ECHO_MODEL, max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].text == "Echo: look [2 image(s)]"  # type: ignore[union-attr]


def test_stream_helper_accumulates_text(client: anthropic.Anthropic) -> None:
    """The stream() helper's text stream and final message match the scripted echo."""
    with client.messages.stream(
        model=script.ECHO_MODEL, max_tokens=100, messages=_user("streamed words")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: streamed words"
    assert final.usage.output_tokens == 3
    assert final.usage.input_tokens == script.PROMPT_TOKENS - script.CACHED_TOKENS


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    """A streamed tool call accumulates its input; the tool result is answered."""
    with client.messages.stream(
        model=script.ECHO_MODEL, max_tokens=100, messages=_user("weather?"), tools=[WEATHER]
    ) as stream:
        call = stream.get_final_message()
    assert call.stop_reason == "tool_use"
    tool_use = call.content[0]
    assert tool_use.type == "tool_use"
    assert tool_use.input == script.TOOL_ARGUMENTS
    answer = client.messages.create(
        model=script.ECHO_MODEL,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            *_user("weather?"),
            call.to_param(),
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18C"}],
            },
        ],
    )
    assert answer.content[0].text == "Tool said: 18C"  # type: ignore[union-attr]


def test_every_stream_event_validates(fake: FakeAnthropic) -> None:
    """The raw SSE stream is the exact sequence, every event of the SDK's types (ping aside)."""
    body = {
        "model": script.ECHO_MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": _user("x"),
        "tools": [WEATHER],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    response = httpx.post(fake.base_url + "/v1/messages", json=body, headers=headers)
    frames = [frame for frame in response.text.split("\n\n") if frame]
    names = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        payload = json.loads(data_line.removeprefix("data: "))
        assert payload["type"] == name
        if name != "ping":
            STREAM_EVENT.validate_python(payload)
        names.append(name)
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2


def test_count_tokens(client: anthropic.Anthropic) -> None:
    """count_tokens answers the fake's deterministic count."""
    messages = _user("count me")
    counted = client.messages.count_tokens(model="any", messages=messages)
    assert counted.input_tokens == anthropic_server.count_of({"messages": messages})


@pytest.mark.parametrize(
    ("model", "error", "kind"),
    [
        ("fake-error-400", anthropic.BadRequestError, "invalid_request_error"),
        ("fake-error-401", anthropic.AuthenticationError, "authentication_error"),
        ("fake-error-429", anthropic.RateLimitError, "rate_limit_error"),
        ("fake-error-500", anthropic.InternalServerError, "api_error"),
        ("fake-error-529", anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_errors(client: anthropic.Anthropic, model: str, error: type[Exception], kind: str) -> None:
    """Error models answer Anthropic's error bodies, raised as the SDK's matching exceptions."""
    with pytest.raises(error) as caught:
        client.messages.create(model=model, max_tokens=1, messages=_user("x"))
    assert isinstance(caught.value, anthropic.APIStatusError)
    body = anthropic.types.ErrorResponse.model_validate(caught.value.body)
    assert body.error.type == kind
    if kind in ("rate_limit_error", "overloaded_error"):
        assert caught.value.response.headers["retry-after"] == anthropic_server.RETRY_AFTER


def test_in_band_stream_error(client: anthropic.Anthropic) -> None:
    """An error event mid-stream is raised by the SDK as an API error."""
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        client.messages.stream(model="fake-stream-error", max_tokens=100, messages=_user("x")) as stream,
    ):
        stream.get_final_message()


def test_wrong_key_and_missing_version(fake: FakeAnthropic) -> None:
    """A wrong key is 401 authentication_error; a missing anthropic-version header is a 400."""
    body = {"model": "m", "max_tokens": 1, "messages": _user("x")}
    wrong = httpx.post(
        fake.base_url + "/v1/messages", json=body, headers={"x-api-key": "nope", "anthropic-version": "1"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    missing = httpx.post(fake.base_url + "/v1/messages", json=body, headers={"x-api-key": KEY})
    assert missing.status_code == 400
    assert "anthropic-version" in missing.json()["error"]["message"]
