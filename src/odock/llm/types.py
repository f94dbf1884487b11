"""The gateway's own form of a generation: request, response and stream events, in no vendor's shape.

A request that crosses dialects (an Anthropic client calling an OpenAI-compatible upstream, an
OpenAI client calling Gemini, …) is decoded by its client dialect into a
:class:`GenerationRequest`, encoded by the upstream dialect into that vendor's payload, and the
answer travels back the same way (:class:`GenerationResponse`, or :data:`StreamEvent` values for
a stream). Same-dialect traffic never goes through these types: its bytes pass through.

Conventions every codec keeps:

* **Content is a list of parts** in order. An assistant message may hold text, reasoning and
  tool calls; a ``tool`` message holds the :class:`ToolResult` parts answering earlier calls.
* **Tool-call arguments are JSON text** (as OpenAI sends them), never a parsed object, so a
  streamed call is the concatenation of its argument deltas.
* **Usage** is :class:`odock.llm.upstream.Usage`: ``prompt_tokens`` counts every input
  token, cached or not (OpenAI's convention; Anthropic's ``input_tokens`` plus its cache reads
  and writes), ``cached_tokens`` the cache reads among them, ``cache_write_tokens`` the cache
  writes, ``reasoning_tokens`` the reasoning among ``completion_tokens``.
* **Stream events are numbered by block**: every text, reasoning or tool-call block has an
  ``index`` (0, 1, … in the order the blocks start); a block's deltas carry its index and a
  :class:`BlockStop` ends it. Encoders for dialects without blocks (OpenAI chat) map them.
* A field one side has and the other cannot express is refused with
  :class:`odock.errors.UnsupportedParameter` naming the client's field, never dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from odock.llm.upstream import Usage


class FinishReason(enum.StrEnum):
    """Why a generation ended, in the gateway's words (each codec maps its vendor's)."""

    STOP = "stop"  # natural end of the turn
    LENGTH = "length"  # the output limit was reached
    TOOL_CALLS = "tool_calls"  # the model asks for tool results
    STOP_SEQUENCE = "stop_sequence"  # a stop sequence matched (``stop_sequence`` names it)
    CONTENT_FILTER = "content_filter"  # the provider withheld or cut the answer
    OTHER = "other"  # anything else the provider reports (the raw value is kept on the response)


# --- content parts -----------------------------------------------------------------------------


@dataclass(slots=True)
class Text:
    """Plain text."""

    text: str


@dataclass(slots=True)
class Image:
    """An image, by URL or inline (base64 ``data`` with its ``media_type``)."""

    url: str | None = None
    data: str | None = None  # base64, without a ``data:`` prefix
    media_type: str | None = None  # e.g. image/png; required with ``data``
    detail: str | None = None  # OpenAI's low | high | auto, when the client gave it


@dataclass(slots=True)
class ToolCall:
    """The model's request to run a tool."""

    id: str
    name: str
    arguments: str  # JSON text of an object ("{}" when there are none)


@dataclass(slots=True)
class ToolResult:
    """The answer to a tool call, sent back by the client."""

    tool_call_id: str
    content: list[Text | Image]
    is_error: bool = False
    name: str | None = None  # the tool's name, when the dialect carries it (Gemini needs it)


@dataclass(slots=True)
class Reasoning:
    """The model's reasoning ("thinking"), when the provider exposes it."""

    text: str
    signature: str | None = None  # Anthropic's signature, to send the block back unchanged
    redacted: str | None = None  # Anthropic's redacted_thinking ``data`` (then ``text`` is "")


Part = Text | Image | ToolCall | ToolResult | Reasoning
Role = Literal["user", "assistant", "tool"]


@dataclass(slots=True)
class Message:
    """One turn of the conversation (system instructions live on the request, not here)."""

    role: Role
    parts: list[Part]


# --- request -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    """A function the model may call."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments object
    strict: bool | None = None


ToolChoiceMode = Literal["auto", "none", "required", "tool"]


@dataclass(slots=True)
class ToolChoice:
    """How the model may use tools: as it likes, never, at least one, or the named one."""

    mode: ToolChoiceMode
    name: str | None = None  # with mode "tool"


@dataclass(slots=True)
class ResponseFormat:
    """The shape of the answer: plain text, any JSON object, or JSON matching ``schema``."""

    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ReasoningConfig:
    """How much the model may reason: a token budget (Anthropic, Gemini) or an effort (OpenAI)."""

    budget_tokens: int | None = None
    effort: str | None = None  # low | medium | high (| minimal)
    enabled: bool = True  # False: reasoning explicitly off


@dataclass(slots=True)
class GenerationRequest:
    """A generation request, decoded from a client dialect."""

    model: str
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: ResponseFormat | None = None
    reasoning: ReasoningConfig | None = None
    stream: bool = False
    user: str | None = None  # an end-user id, where the dialect has one


# --- response ----------------------------------------------------------------------------------


@dataclass(slots=True)
class GenerationResponse:
    """A complete answer, decoded from an upstream dialect."""

    id: str
    model: str
    parts: list[Part]  # Text, Reasoning and ToolCall, in the order the model produced them
    finish_reason: FinishReason
    usage: Usage
    stop_sequence: str | None = None
    raw_finish_reason: str | None = None  # the provider's own value
    created: int | None = None  # Unix seconds, when the provider says


# --- stream events -----------------------------------------------------------------------------


@dataclass(slots=True)
class StreamStart:
    """The stream opened: the answer's id and model (always the first event)."""

    id: str
    model: str
    created: int | None = None


@dataclass(slots=True)
class TextStart:
    """A text block begins."""

    index: int


@dataclass(slots=True)
class TextDelta:
    """More text of block ``index``."""

    index: int
    text: str


@dataclass(slots=True)
class ReasoningStart:
    """A reasoning block begins (``redacted`` for Anthropic's redacted_thinking, complete at once)."""

    index: int
    redacted: str | None = None


@dataclass(slots=True)
class ReasoningDelta:
    """More reasoning of block ``index``, or its signature."""

    index: int
    text: str = ""
    signature: str | None = None


@dataclass(slots=True)
class ToolCallStart:
    """A tool-call block begins: the call's id and tool name (arguments follow as deltas)."""

    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallDelta:
    """More JSON text of the arguments of the tool call in block ``index``."""

    index: int
    arguments: str


@dataclass(slots=True)
class BlockStop:
    """Block ``index`` is complete."""

    index: int


@dataclass(slots=True)
class UsageUpdate:
    """Usage so far (a later update replaces an earlier one: each carries every count known)."""

    usage: Usage


@dataclass(slots=True)
class StreamFinish:
    """The generation ended (the last event but possibly a :class:`UsageUpdate`)."""

    finish_reason: FinishReason
    stop_sequence: str | None = None
    raw_finish_reason: str | None = None


StreamEvent = (
    StreamStart
    | TextStart
    | TextDelta
    | ReasoningStart
    | ReasoningDelta
    | ToolCallStart
    | ToolCallDelta
    | BlockStop
    | UsageUpdate
    | StreamFinish
)


# --- embeddings --------------------------------------------------------------------------------


@dataclass(slots=True)
class EmbeddingRequest:
    """Texts to embed, decoded from a client dialect."""

    model: str
    inputs: list[str]
    dimensions: int | None = None
    user: str | None = None


@dataclass(slots=True)
class EmbeddingResponse:
    """One vector per input, in input order."""

    model: str
    vectors: list[list[float]]
    usage: Usage
