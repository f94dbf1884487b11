"""The scripted fake upstream (tests/fakes/scripted_upstream.py), driven by the official OpenAI SDK,
and by raw httpx where the SDK hides the wire (headers, timing, the event frames)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.fakes.scripted_upstream import (
    ScriptedUpstream,
    Step,
    cut_after_chunks,
    cut_before_first_chunk,
    fail,
    malformed_json,
    ok,
    refused_port,
    slow_first_byte,
    stall_after_headers,
    stall_before_headers,
    untrusted_tls,
)

KEY, OTHER_KEY = "sk-pool-a", "sk-pool-b"
MODEL = "primary"
MESSAGES: Any = [{"role": "user", "content": "hi"}]
SHORT_TIMEOUT = 0.3
SLOW_SECONDS = 0.3


@pytest.fixture
def fake() -> Iterator[ScriptedUpstream]:
    """A fresh scripted upstream accepting a pool of two keys."""
    with ScriptedUpstream(api_keys=[KEY, OTHER_KEY]) as server:
        yield server


def _sdk(fake: ScriptedUpstream, key: str = KEY, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=fake.base_url + "/v1", max_retries=0, timeout=timeout)


def _chat(fake: ScriptedUpstream, key: str = KEY, model: str = MODEL) -> str | None:
    with _sdk(fake, key) as client:
        return client.chat.completions.create(model=model, messages=MESSAGES).choices[0].message.content


def _raw(fake: ScriptedUpstream, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=fake.base_url, headers={"authorization": f"Bearer {KEY}"}, timeout=timeout)


def _body(stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "stream": stream, **extra}


def _frames(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


# --- answers --------------------------------------------------------------------------------------
def test_ok_answers_unary_with_the_given_text_and_exact_usage(fake: ScriptedUpstream) -> None:
    """ok() is a chat.completion with its text and exactly its usage."""
    fake.script(MODEL, ok("scripted reply", prompt_tokens=123, completion_tokens=45))
    with _sdk(fake) as client:
        reply = client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert reply.choices[0].message.content == "scripted reply"
    assert reply.model == MODEL
    assert reply.usage is not None
    usage = reply.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (123, 45, 168)


def test_ok_streams_chunks_then_the_usage_chunk_then_done(fake: ScriptedUpstream) -> None:
    """A stream asking include_usage gets the text in chunks, a final usage chunk, then [DONE]."""
    fake.script(MODEL, ok("streamed reply text", prompt_tokens=7, completion_tokens=3), ok("again"))
    with _sdk(fake) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed reply text"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 3)

    with _raw(fake) as raw:
        frames = _frames(raw.post("/v1/chat/completions", json=_body(True)).text)
    assert frames[-1] == "[DONE]"
    assert all("usage" not in json.loads(frame) for frame in frames[:-1])  # none without include_usage


def test_the_queue_is_served_in_order_then_otherwise_then_ok(fake: ScriptedUpstream) -> None:
    """Scripted steps answer the slug's requests in order, then otherwise(); other slugs get ok()."""
    fake.script(MODEL, fail(500), ok("second"))
    fake.otherwise(MODEL, ok("afterwards"))

    with pytest.raises(openai.InternalServerError):
        _chat(fake)
    assert _chat(fake) == "second"
    assert _chat(fake) == "afterwards"
    assert _chat(fake) == "afterwards"
    assert _chat(fake, model="backup") == "Hello from the scripted upstream."

    assert (fake.calls(MODEL), fake.calls("backup"), fake.calls()) == (4, 1, 5)


def test_keys_of_the_pool_are_accepted_and_recorded_others_refused(fake: ScriptedUpstream) -> None:
    """Any key of api_keys is accepted; each request's key is recorded; a foreign key is a 401
    that does not consume a step."""
    fake.script(MODEL, ok("first"), ok("second"))

    assert _chat(fake, KEY) == "first"
    with pytest.raises(openai.AuthenticationError) as refused:
        _chat(fake, "sk-stranger")
    assert _chat(fake, OTHER_KEY) == "second"

    assert fake.keys_used(MODEL) == [KEY, "sk-stranger", OTHER_KEY]
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["code"] == "invalid_api_key"


def test_any_key_is_accepted_when_no_pool_is_given() -> None:
    """api_keys=None accepts any bearer key (still recorded)."""
    with ScriptedUpstream() as open_fake:
        assert _chat(open_fake, "sk-whatever") is not None
        assert open_fake.keys_used(MODEL) == ["sk-whatever"]


# --- failures -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "retry_after", "kind", "code"),
    [
        (429, 2, "requests", "rate_limit_exceeded"),
        (503, 1.5, "server_error", None),
        (500, None, "server_error", None),
        (400, None, "invalid_request_error", "context_length_exceeded"),
        (502, None, "server_error", None),
    ],
)
def test_fail_answers_openais_error_body_and_retry_after(
    fake: ScriptedUpstream, status: int, retry_after: float | None, kind: str, code: str | None
) -> None:
    """fail() is the status with an OpenAI error object, and retry-after exactly when given."""
    fake.script(MODEL, fail(status, retry_after=retry_after))
    with pytest.raises(openai.APIStatusError) as caught:
        _chat(fake)

    error = caught.value
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert set(error.body) == {"message", "type", "param", "code"}
    assert (error.body["type"], error.body["code"]) == (kind, code)
    expected = None if retry_after is None else f"{retry_after:g}"
    assert error.response.headers.get("retry-after") == expected


def test_fail_carries_the_given_message(fake: ScriptedUpstream) -> None:
    """fail(message=...) replaces the error's message."""
    fake.script(MODEL, fail(429, message="slow down"))
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(fake)
    assert caught.value.message.endswith("slow down")


def test_stall_before_headers_times_the_client_out_until_released(fake: ScriptedUpstream) -> None:
    """A stalled request times the client out; a waiting one answers once released; later stalls stall."""
    fake.script(MODEL, stall_before_headers(), stall_before_headers(), stall_before_headers())
    with _sdk(fake, timeout=SHORT_TIMEOUT) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)

    answers: list[str | None] = []
    waiter = threading.Thread(target=lambda: answers.append(_chat(fake)))
    waiter.start()
    fake.wait_until(lambda f: f.calls(MODEL) == 2)
    fake.release()
    waiter.join(timeout=5)
    assert answers == ["Hello from the scripted upstream."]

    with _sdk(fake, timeout=SHORT_TIMEOUT) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)


@pytest.mark.parametrize(
    ("stream", "content_type"), [(True, "text/event-stream"), (False, "application/json")]
)
def test_stall_after_headers_sends_200_headers_then_nothing(
    fake: ScriptedUpstream, stream: bool, content_type: str
) -> None:
    """Headers arrive (a chunked body for unary), then the body stalls past the client's read timeout."""
    fake.script(MODEL, stall_after_headers())
    with (
        _raw(fake, timeout=SHORT_TIMEOUT) as raw,
        raw.stream("POST", "/v1/chat/completions", json=_body(stream)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(content_type)
        assert response.headers["transfer-encoding"] == "chunked"
        with pytest.raises(httpx.ReadTimeout):
            response.read()


def test_stall_after_headers_finishes_the_stream_when_released(fake: ScriptedUpstream) -> None:
    """Released, a stream stalled after its headers goes on with the whole answer."""
    fake.script(MODEL, stall_after_headers())
    with _sdk(fake) as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        fake.release()
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from the scripted upstream."


def test_cut_before_first_chunk_drops_a_stream_after_its_headers(fake: ScriptedUpstream) -> None:
    """The stream opens (200, event-stream) and ends with no event: the reader fails."""
    fake.script(MODEL, cut_before_first_chunk(), cut_before_first_chunk())
    with (
        _raw(fake) as raw,
        raw.stream("POST", "/v1/chat/completions", json=_body(True)) as response,
    ):
        assert response.status_code == 200
        received: list[bytes] = []
        with pytest.raises(httpx.RemoteProtocolError):
            received.extend(response.iter_raw())
        assert received == []

    with _sdk(fake) as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIConnectionError):
            list(stream)


def test_cut_after_chunks_drops_a_stream_after_n_content_chunks(fake: ScriptedUpstream) -> None:
    """Exactly n content chunks arrive, then the connection drops (no usage, no [DONE])."""
    fake.script(MODEL, cut_after_chunks(2))
    chunks: list[ChatCompletionChunk] = []
    with _sdk(fake) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        with pytest.raises(openai.APIConnectionError):
            chunks.extend(stream)
    assert sum(1 for chunk in chunks for c in chunk.choices if c.delta.content) == 2
    assert all(chunk.usage is None for chunk in chunks)


@pytest.mark.parametrize("step", [cut_before_first_chunk(), cut_after_chunks(1)])
def test_cuts_of_a_unary_answer_are_connection_errors(fake: ScriptedUpstream, step: Step) -> None:
    """Unary, a cut drops the connection before the answer is whole."""
    fake.script(MODEL, step)
    with pytest.raises(openai.APIConnectionError):
        _chat(fake)


def test_slow_first_byte_delays_the_first_event_not_the_headers(fake: ScriptedUpstream) -> None:
    """Stream: headers at once, the first event after the delay, then the whole answer."""
    fake.script(MODEL, slow_first_byte(SLOW_SECONDS))
    with (
        _raw(fake) as raw,
        raw.stream("POST", "/v1/chat/completions", json=_body(True)) as response,
    ):
        headers_at = time.monotonic()
        received = response.iter_raw()
        first = next(received)
        first_at = time.monotonic()
        whole = first + b"".join(received)
    assert first_at - headers_at >= SLOW_SECONDS * 0.9
    assert _frames(whole.decode())[-1] == "[DONE]"


def test_slow_first_byte_delays_a_unary_answer(fake: ScriptedUpstream) -> None:
    """Unary: the answer comes after the delay."""
    fake.script(MODEL, slow_first_byte(SLOW_SECONDS))
    started = time.monotonic()
    assert _chat(fake) == "Hello from the scripted upstream."
    assert time.monotonic() - started >= SLOW_SECONDS * 0.9


def test_malformed_json_fails_to_parse_unary_and_streamed(fake: ScriptedUpstream) -> None:
    """A 200 JSON body, or a stream event, that does not parse makes the SDK raise."""
    fake.script(MODEL, malformed_json(), malformed_json())
    with _sdk(fake) as client:
        with pytest.raises(json.JSONDecodeError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        with pytest.raises(json.JSONDecodeError):
            list(stream)


# --- helpers --------------------------------------------------------------------------------------
def test_refused_port_refuses_every_connection() -> None:
    """refused_port() is the same port each time, and nothing ever answers on it."""
    port = refused_port()
    assert refused_port() == port
    for _ in range(2):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_untrusted_tls_fails_the_handshake_unless_trusted(tmp_path: Path) -> None:
    """Over untrusted_tls() a verifying client fails the handshake; one trusting the cert gets through."""
    with ScriptedUpstream(tls=untrusted_tls(tmp_path)) as tls_fake:
        assert tls_fake.base_url.startswith("https://")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.post(tls_fake.base_url + "/v1/chat/completions", json=_body(False), timeout=5)
        trusting = ssl.create_default_context(cafile=tmp_path / "upstream.pem")
        answer = httpx.post(
            tls_fake.base_url + "/v1/chat/completions", json=_body(False), verify=trusting, timeout=5
        )
        assert answer.status_code == 200
        assert tls_fake.calls() == 1  # the failed handshake never reached the route
