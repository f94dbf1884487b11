"""The built-in ``mock`` provider: deterministic answers with no network, for demos and tests.

Behaviour is set on the provider's ``config`` (overridable per model ``config``):
``latency_ms`` (delay before answering), ``chunk_delay_ms`` (delay between stream chunks),
``completion_tokens`` (answer length; one word per token), ``text`` (the words to cycle) and
``dimensions`` (embedding size). A request's ``max_completion_tokens`` (else ``max_tokens``)
cuts the answer to that many words, with ``finish_reason: "length"``, as a real model would.
Usage is exact: prompt tokens use the estimator, completion tokens are the words produced.
See docs/providers.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from odock import estimate
from odock.llm.upstream import StreamChunk, UnaryResult, Usage
from odock.providers.adapters.base import UpstreamCall

DEFAULT_TEXT = "This is a mock answer from the Odock gateway."


class MockAdapter:
    """Answers like an OpenAI-compatible server would, computed locally."""

    async def complete(self, call: UpstreamCall) -> UnaryResult:
        options = _options(call)
        await _sleep_ms(options.get("latency_ms", 0))
        if call.endpoint == "embeddings":
            return _embeddings(call, options)
        words, finish = _answer(call, options)
        usage = _usage(call, len(words))
        body = {
            "id": "chatcmpl-mock-" + call.request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.payload.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": usage.raw,
        }
        return UnaryResult(orjson.dumps(body), usage, provider_request_id="mock-" + call.request_id)

    async def stream(self, call: UpstreamCall) -> MockStream:
        options = _options(call)
        await _sleep_ms(options.get("latency_ms", 0))
        return MockStream(call, options)


class MockStream:
    """A mock SSE stream: one chunk per word, a finish chunk, then a usage chunk."""

    def __init__(self, call: UpstreamCall, options: dict[str, Any]) -> None:
        self._call = call
        self._options = options
        self.provider_request_id: str | None = "mock-" + call.request_id

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[StreamChunk]:
        words, finish = _answer(self._call, self._options)
        base = {
            "id": "chatcmpl-mock-" + self._call.request_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self._call.payload.get("model"),
        }
        delay = self._options.get("chunk_delay_ms", 0)
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        yield StreamChunk(orjson.dumps({**base, "choices": [first]}))
        for i, word in enumerate(words):
            await _sleep_ms(delay)
            text = word if i == 0 else " " + word
            choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            yield StreamChunk(orjson.dumps({**base, "choices": [choice]}), text_chars=len(text))
        done = {"index": 0, "delta": {}, "finish_reason": finish}
        yield StreamChunk(orjson.dumps({**base, "choices": [done]}))
        usage = _usage(self._call, len(words))
        final = orjson.dumps({**base, "choices": [], "usage": usage.raw})
        yield StreamChunk(final, usage=usage, usage_only=True)

    async def aclose(self) -> None:
        return None


def _options(call: UpstreamCall) -> dict[str, Any]:
    return {**call.provider.config, **call.model_config}


def _answer(call: UpstreamCall, options: dict[str, Any]) -> tuple[list[str], str]:
    """The words of the answer and its finish reason (``length`` when the request's limit cut it)."""
    source = str(options.get("text") or DEFAULT_TEXT).split() or ["ok"]
    count = max(int(options.get("completion_tokens", 16)), 1)
    limit = _asked_limit(call.payload)
    finish = "stop"
    if limit is not None and limit < count:
        count, finish = limit, "length"
    return [source[i % len(source)] for i in range(count)], finish


def _asked_limit(payload: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _usage(call: UpstreamCall, completion_tokens: int) -> Usage:
    prompt = estimate.prompt_tokens(call.payload.get("messages") or [])
    total = prompt + completion_tokens
    raw = {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": total}
    return Usage.from_openai(raw)


def _embeddings(call: UpstreamCall, options: dict[str, Any]) -> UnaryResult:
    inputs = call.payload.get("input")
    items = inputs if isinstance(inputs, list) and not all(isinstance(i, int) for i in inputs) else [inputs]
    dims = int(options.get("dimensions", 8))
    data = []
    for index, item in enumerate(items):
        digest = hashlib.sha256(orjson.dumps(item)).digest()
        vector = [round((digest[i % 32] - 128) / 128, 6) for i in range(dims)]
        data.append({"object": "embedding", "index": index, "embedding": vector})
    prompt = estimate.input_tokens(inputs)
    usage = Usage.from_openai({"prompt_tokens": prompt, "total_tokens": prompt})
    body = {"object": "list", "data": data, "model": call.payload.get("model"), "usage": usage.raw}
    return UnaryResult(body=orjson.dumps(body), usage=usage, provider_request_id="mock-" + call.request_id)


async def _sleep_ms(ms: object) -> None:
    if isinstance(ms, int | float) and ms > 0:
        await asyncio.sleep(ms / 1000)
