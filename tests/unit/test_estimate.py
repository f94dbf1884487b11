"""Token estimates used when a provider reports no usage (four characters per token)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from odock import estimate


@pytest.mark.parametrize(
    ("chars", "tokens"), [(0, 0), (1, 1), (3, 1), (4, 1), (5, 2), (8, 2), (9, 3), (4000, 1000)]
)
def test_tokens_for_text_rounds_up(chars: int, tokens: int) -> None:
    """Text costs one token per four characters, and any remainder counts as a whole token."""
    assert estimate.tokens_for_text(chars) == tokens


@given(st.integers(min_value=0, max_value=10**9))
def test_tokens_for_text_is_never_an_underestimate(chars: int) -> None:
    """The estimate covers every character at four per token, with less than one token to spare."""
    tokens = estimate.tokens_for_text(chars)
    assert tokens * estimate.CHARS_PER_TOKEN >= chars
    assert (tokens - 1) * estimate.CHARS_PER_TOKEN < chars or tokens == 0


def test_prompt_tokens_add_framing_per_message() -> None:
    """Each chat message costs its text plus a fixed framing overhead."""
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there!"}]
    assert estimate.prompt_tokens(messages) == (4 + 2) + (4 + 3)


def test_prompt_tokens_of_no_messages_is_zero() -> None:
    """An empty conversation is estimated at zero tokens."""
    assert estimate.prompt_tokens([]) == 0


def test_prompt_tokens_count_only_text_parts_of_multimodal_content() -> None:
    """Text parts of a content list count; images and malformed parts add only the framing."""
    content: list[Any] = [
        {"type": "text", "text": "abcdefgh"},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
        {"type": "text", "text": 12},
        "not a part",
        {"type": "text", "text": "ijkl"},
    ]
    assert estimate.prompt_tokens([{"role": "user", "content": content}]) == 4 + 3


def test_prompt_tokens_tolerate_odd_messages() -> None:
    """Messages without content, with null content or that are not objects still count their framing."""
    messages: list[Any] = [{"role": "assistant", "content": None}, {"role": "tool"}, "junk", 7]
    assert estimate.prompt_tokens(messages) == 4 * 4


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("abcd efgh", 3),
        (["abcd", "efghi"], 1 + 2),
        ([101, 2023, 2003], 3),
        ([[101, 2023], [2003]], 3),
        ([], 0),
        ("", 0),
        (None, 0),
        ({"text": "abcd"}, 0),
    ],
)
def test_input_tokens_of_embeddings_inputs(value: Any, tokens: int) -> None:
    """Strings are estimated from their length; token arrays count their tokens exactly."""
    assert estimate.input_tokens(value) == tokens


@given(st.lists(st.text(max_size=200), max_size=20))
def test_input_tokens_of_a_list_is_the_sum_of_its_items(texts: list[str]) -> None:
    """A batch of inputs is estimated as the sum of its items, so batching changes nothing."""
    assert estimate.input_tokens(texts) == sum(estimate.input_tokens(t) for t in texts)
