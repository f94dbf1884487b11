"""The contract between the pipeline and upstream APIs.

An adapter turns an :class:`UpstreamCall` (an OpenAI-shaped payload already rewritten for the
upstream: model slug, usage requested) into a :class:`UnaryResult` or a :class:`StreamResult`,
and translates every foreign failure into an :class:`odock.errors.UpstreamError` at its boundary.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from odock.providers.catalog import ProviderTarget


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


@dataclass(slots=True)  # one per request, never changed: not frozen (see odock.limits.decision)
class UpstreamCall:
    """One request to send upstream."""

    endpoint: Endpoint
    payload: dict[str, Any]
    provider: ProviderTarget
    api_key: str | None
    timeout: float
    request_id: str
    model_config: dict[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # the provider's, decrypted
    model: str = ""  # the upstream model id (the model's slug); Gemini puts it in the URL
    client_headers: Mapping[str, str] = field(default_factory=dict)  # forwarded ones (anthropic-beta)


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


class Adapter(Protocol):
    """An upstream API."""

    async def complete(self, call: UpstreamCall) -> UnaryResult:
        """Send a non-streaming request."""

    async def stream(self, call: UpstreamCall) -> StreamResult:
        """Open a streaming request (errors before the first byte are raised here)."""
