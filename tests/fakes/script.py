"""The scripted answer every fake vendor gives to the model ``fake-echo``, whatever its wire format.

Each fake server (OpenAI, Anthropic, Gemini) reads its own request format into a :class:`Seen`,
asks :func:`answer` what to say, and writes the answer in its own format, unary or streamed. So a
test can send the same conversation through any client dialect to any upstream and expect the
same content, tool call and usage::

    the conversation holds a tool result   → text  "Tool said: <the last result's text>"
    tools are declared (and no result yet) → a call of the first tool with TOOL_ARGUMENTS
    otherwise                              → text  "Echo: <last user text>" + " [N image(s)]"
                                             when the last user turn held N images

Usage is computed, not canned: ``input`` = PROMPT_TOKENS (plus CACHED_TOKENS read from cache),
``output`` = one token per word of the text (or TOOL_CALL_TOKENS for a call), and REASONING_TOKENS
of reasoning when the request asked for reasoning. Each fake reports them in its vendor's fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

ECHO_MODEL = "fake-echo"
TOOL_ARGUMENTS = {"city": "Paris", "unit": "celsius"}
TOOL_CALL_ID = "call_fake_1"
PROMPT_TOKENS = 25
CACHED_TOKENS = 5
TOOL_CALL_TOKENS = 12
REASONING_TOKENS = 7
REASONING_TEXT = "Let me think about that."


@dataclass
class Seen:
    """What a fake understood of a request, in any vendor's format."""

    last_user_text: str = ""
    images: int = 0  # images in the last user turn
    tools: list[str] = field(default_factory=list)  # declared tool names, in order
    tool_results: list[str] = field(default_factory=list)  # text of every tool result, in order
    reasoning: bool = False  # the request asked for reasoning / thinking


@dataclass
class Answer:
    """What the fake says: text or one tool call, with its usage."""

    text: str | None
    tool_name: str | None
    tool_arguments: str | None  # JSON text
    reasoning: str | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int  # includes reasoning_tokens
    reasoning_tokens: int

    @property
    def uncached_prompt_tokens(self) -> int:
        """Input tokens not read from cache (Anthropic's ``input_tokens``)."""
        return self.prompt_tokens - self.cached_tokens


def answer(seen: Seen) -> Answer:
    """The scripted answer to ``seen`` (see the module docstring)."""
    reasoning = REASONING_TEXT if seen.reasoning else None
    reasoning_tokens = REASONING_TOKENS if seen.reasoning else 0
    if seen.tool_results:
        text: str | None = f"Tool said: {seen.tool_results[-1]}"
    elif seen.tools:
        return Answer(
            text=None,
            tool_name=seen.tools[0],
            tool_arguments=json.dumps(TOOL_ARGUMENTS),
            reasoning=reasoning,
            prompt_tokens=PROMPT_TOKENS,
            cached_tokens=CACHED_TOKENS,
            completion_tokens=TOOL_CALL_TOKENS + reasoning_tokens,
            reasoning_tokens=reasoning_tokens,
        )
    else:
        text = f"Echo: {seen.last_user_text}"
        if seen.images:
            text += f" [{seen.images} image(s)]"
    assert text is not None
    return Answer(
        text=text,
        tool_name=None,
        tool_arguments=None,
        reasoning=reasoning,
        prompt_tokens=PROMPT_TOKENS,
        cached_tokens=CACHED_TOKENS,
        completion_tokens=len(text.split()) + reasoning_tokens,
        reasoning_tokens=reasoning_tokens,
    )


def pieces(text: str, size: int = 4) -> list[str]:
    """``text`` cut into stream deltas of ``size`` characters."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
