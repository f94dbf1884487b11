"""Token estimates for when a provider reports no usage (e.g. a stream cut short).

Without a tokenizer for every model, Odock uses the common rule of thumb of four characters per
token, and never estimates fewer tokens than content chunks seen (most providers send about one
token per chunk). Estimated usage is flagged as such on the usage record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role and framing overhead per chat message


def tokens_for_text(chars: int) -> int:
    """Estimated tokens for ``chars`` characters of text."""
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def prompt_tokens(messages: Iterable[Any]) -> int:
    """Estimated prompt tokens of OpenAI chat messages."""
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        if isinstance(message, dict):
            total += tokens_for_text(_content_chars(message.get("content")))
    return total


def input_tokens(value: Any) -> int:
    """Estimated tokens of an embeddings ``input`` (string, list of strings, or token arrays)."""
    if isinstance(value, str):
        return tokens_for_text(len(value))
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)
        return sum(input_tokens(v) for v in value)
    return 0


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        texts = (p.get("text") for p in content if isinstance(p, dict))
        return sum(len(text) for text in texts if isinstance(text, str))
    return 0
