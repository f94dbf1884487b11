"""What upstreams answer, in the form every adapter returns: usage, unary results, stream chunks.

These are the provider-neutral halves of the adapter contract (:mod:`odock.providers.adapters.base`
adds the call and the adapter protocol), kept here so the translation layer (:mod:`odock.llm`)
and the providers share them without depending on each other both ways.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol


class Endpoint(enum.StrEnum):
    """The gateway operations an adapter may serve."""

    CHAT = "chat"  # a generation (any dialect's: chat completions, messages, generateContent)
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"  # OpenAI's Responses API, passed through to an upstream that has it
    COUNT_TOKENS = "count_tokens"  # a vendor's token-counting endpoint


@dataclass(slots=True)
class Usage:
    """Token counts as the provider reported them (or as estimated when it did not)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0  # cache reads, counted in prompt_tokens too
    reasoning_tokens: int = 0  # counted in completion_tokens too
    estimated: bool = False
    raw: dict[str, Any] | None = None
    cache_write_tokens: int = 0  # prompt tokens written to the provider's cache (Anthropic)

    @classmethod
    def from_openai(cls, usage: dict[str, Any]) -> Usage:
        """Read an OpenAI ``usage`` object (chat or embeddings)."""
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=_int(usage.get("total_tokens")) or prompt + completion,
            cached_tokens=_int(prompt_details.get("cached_tokens"))
            if isinstance(prompt_details, dict)
            else 0,
            reasoning_tokens=_int(completion_details.get("reasoning_tokens"))
            if isinstance(completion_details, dict)
            else 0,
            raw=usage,
        )


# No real request reports more tokens than this (the largest context windows hold a few million).
# A provider that does is clamped to it, so the usage record, its cost and the budget settlement
# stay within their 64-bit columns and counters: a count past 2^63 (JSON parses integers up to
# 2^64) made the database refuse the whole usage batch, on every retry.
MAX_REPORTED_TOKENS = 2**31 - 1


def _int(value: object) -> int:
    """A token count as reported: a non-negative integer (clamped), else 0."""
    return min(value, MAX_REPORTED_TOKENS) if isinstance(value, int) and value >= 0 else 0


@dataclass(slots=True)
class UnaryResult:
    """A complete upstream answer, as bytes to forward plus what was learned from it."""

    body: bytes
    usage: Usage | None
    provider_request_id: str | None = None


@dataclass(slots=True)
class StreamChunk:
    """One SSE event from upstream: the JSON after ``data:`` and what it tells us."""

    data: bytes
    usage: Usage | None = None
    usage_only: bool = False  # a final chunk with usage and no choices
    text_chars: int = 0
    event: str | None = None  # the SSE event name, for dialects that name events (Anthropic, Responses)


class StreamResult(Protocol):
    """An open upstream stream; iterate for chunks, always close."""

    provider_request_id: str | None

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        """Chunks in order; raises UpstreamStreamInterrupted if the stream ends early."""

    async def aclose(self) -> None:
        """Release the upstream connection."""
