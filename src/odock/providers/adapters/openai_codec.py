"""The upstream side of OpenAI Chat Completions and Embeddings: the gateway's form to and from their payloads.

Used when a client of another dialect calls an OpenAI-compatible upstream; the transport stays
:mod:`odock.providers.adapters.openai`. Flow::

    encode_request   GenerationRequest → chat payload
        system                      → one ``system`` message first
        user turn                   → a ``user`` message (images as image_url parts, base64 as data: URLs)
        ToolResult parts            → one ``tool`` message each, before the rest of their turn
        assistant turn              → content, tool_calls; Reasoning parts are dropped (below)
        reasoning budget            → reasoning_effort (below); top_k → 400 unsupported_parameter
        stream                      → stream_options.include_usage, so usage is always reported
    decode_response  chat.completion → GenerationResponse (the first choice only)
    stream_decoder   chat.completion.chunk → StreamEvents, one block per text run, reasoning run
                     and tool call, each closed before the next starts

Decisions (for the matrix in docs/providers.md):

* **Reasoning in the history is dropped.** Chat Completions has no field to send reasoning back;
  OpenAI itself discards prior turns' reasoning, so nothing the model would have seen is lost.
* **A reasoning budget becomes an effort**: up to 1024 tokens ``low``, up to 8192 ``medium``,
  more ``high``. An explicit effort (an OpenAI client's) is sent as is.
* **The output limit is ``max_completion_tokens``** for OpenAI and Azure OpenAI (their reasoning
  models refuse ``max_tokens``), and ``max_tokens`` for the compatible servers (Mistral, custom
  ones) that know only that name: :data:`OPENAI_CHAT_UPSTREAM` and
  :data:`OPENAI_COMPATIBLE_CHAT_UPSTREAM`. vLLM takes either.
* **A tool result's ``is_error`` is not sent**: Chat Completions has no such flag; the result's
  text (which says what failed) is.
* **A JSON schema without a name is sent as ``response``** (OpenAI requires a name).
* **tool_choice and parallel_tool_calls go only with tools**: OpenAI refuses them alone, and
  without tools they change nothing.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from odock.errors import UnsupportedParameter, UpstreamError
from odock.llm.codec import Payload
from odock.llm.types import (
    BlockStop,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
    Image,
    Message,
    Part,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningStart,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    Text,
    TextDelta,
    TextStart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    UsageUpdate,
)
from odock.llm.upstream import Usage

# Reasoning budgets (tokens) at or under which each effort is asked for; above the last: high.
EFFORT_BUDGETS = ((1024, "low"), (8192, "medium"))
DEFAULT_SCHEMA_NAME = "response"
_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}
MaxTokensField = Literal["max_completion_tokens", "max_tokens"]


# --- request ---------------------------------------------------------------------------------


def encode_chat_request(
    request: GenerationRequest, model: str, *, stream: bool, max_tokens_field: MaxTokensField
) -> Payload:
    """The chat payload for ``request`` (see the module docstring for what is decided here)."""
    if request.top_k is not None:
        raise UnsupportedParameter("top_k cannot be sent to an OpenAI-compatible provider", param="top_k")
    payload: Payload = {"model": model, "messages": _encode_messages(request)}
    if request.tools:
        payload["tools"] = [_encode_tool(tool) for tool in request.tools]
    optional: dict[str, Any] = {
        "tool_choice": _encode_tool_choice(request.tool_choice) if request.tools else None,
        "parallel_tool_calls": request.parallel_tool_calls if request.tools else None,
        max_tokens_field: request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop or None,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "response_format": _encode_response_format(request.response_format),
        "reasoning_effort": reasoning_effort(request.reasoning),
        "user": request.user,
    }
    payload.update((name, value) for name, value in optional.items() if value is not None)
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return payload


def _encode_messages(request: GenerationRequest) -> list[Payload]:
    messages: list[Payload] = []
    if request.system:
        messages.append({"role": "system", "content": _text_content(request.system)})
    for index, message in enumerate(request.messages):
        if message.role == "assistant":
            messages.append(_encode_assistant(message, f"messages[{index}]"))
        else:
            messages.extend(_encode_user_turn(message, f"messages[{index}]"))
    return messages


def _encode_user_turn(message: Message, where: str) -> list[Payload]:
    """Tool results first (they answer the previous assistant turn), then a user message of the rest."""
    results = [part for part in message.parts if isinstance(part, ToolResult)]
    encoded = [_encode_tool_result(result, where) for result in results]
    rest = [part for part in message.parts if not isinstance(part, ToolResult)]
    if rest:
        encoded.append({"role": "user", "content": _user_content(rest, where)})
    return encoded


def _user_content(parts: Sequence[Part], where: str) -> str | list[Payload]:
    if len(parts) == 1 and isinstance(parts[0], Text):
        return parts[0].text
    return [_user_part(part, f"{where}.content[{j}]") for j, part in enumerate(parts)]


def _user_part(part: Part, where: str) -> Payload:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        return {"type": "image_url", "image_url": _image_url(part)}
    raise UnsupportedParameter(f"{where}: a user message cannot hold a {type(part).__name__}", param=where)


def _image_url(image: Image) -> Payload:
    url = image.url if image.data is None else f"data:{image.media_type};base64,{image.data}"
    return {"url": url} if image.detail is None else {"url": url, "detail": image.detail}


def _encode_tool_result(result: ToolResult, where: str) -> Payload:
    texts: list[Text] = []
    for part in result.content:
        if not isinstance(part, Text):
            message = (
                f"{where}: a tool result holding an image cannot be sent to an OpenAI-compatible provider"
            )
            raise UnsupportedParameter(message, param=f"{where}.content")
        texts.append(part)
    return {"role": "tool", "tool_call_id": result.tool_call_id, "content": _text_content(texts)}


def _encode_assistant(message: Message, where: str) -> Payload:
    texts: list[Text] = []
    calls: list[Payload] = []
    for j, part in enumerate(message.parts):
        if isinstance(part, Text):
            texts.append(part)
        elif isinstance(part, ToolCall):
            calls.append(_encode_tool_call(part))
        elif not isinstance(part, Reasoning):  # reasoning is dropped: see the module docstring
            raise UnsupportedParameter(
                f"{where}: an assistant message cannot hold a {type(part).__name__}",
                param=f"{where}.content[{j}]",
            )
    encoded: Payload = {"role": "assistant", "content": _text_content(texts) if texts else None}
    if calls:
        encoded["tool_calls"] = calls
    return encoded


def _encode_tool_call(call: ToolCall) -> Payload:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _text_content(texts: list[Text]) -> str | list[Payload]:
    """One text as a string (what every compatible server reads), several as text parts."""
    if len(texts) == 1:
        return texts[0].text
    return [{"type": "text", "text": text.text} for text in texts]


def _encode_tool(tool: Tool) -> Payload:
    function: Payload = {"name": tool.name}
    optional = {"description": tool.description, "parameters": tool.parameters, "strict": tool.strict}
    function.update((name, value) for name, value in optional.items() if value is not None)
    return {"type": "function", "function": function}


def _encode_tool_choice(choice: ToolChoice | None) -> str | Payload | None:
    if choice is None:
        return None
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _encode_response_format(response_format: ResponseFormat | None) -> Payload | None:
    if response_format is None:
        return None
    if response_format.type != "json_schema":
        return {"type": response_format.type}
    spec: Payload = {"name": response_format.name or DEFAULT_SCHEMA_NAME}
    if response_format.schema is not None:
        spec["schema"] = response_format.schema
    if response_format.strict is not None:
        spec["strict"] = response_format.strict
    return {"type": "json_schema", "json_schema": spec}


def reasoning_effort(reasoning: ReasoningConfig | None) -> str | None:
    """The effort to ask for: the client's own, else its budget's; none when reasoning is off."""
    if reasoning is None:
        return None
    if reasoning.effort is not None:
        return reasoning.effort
    if not reasoning.enabled or reasoning.budget_tokens is None:
        return None
    return next((effort for limit, effort in EFFORT_BUDGETS if reasoning.budget_tokens <= limit), "high")


# --- response --------------------------------------------------------------------------------


def decode_chat_response(payload: Payload) -> GenerationResponse:
    """The first choice of a ``chat.completion``, in the gateway's form."""
    choice = _first_choice(payload)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UpstreamError("upstream answered a choice without a message")
    raw_finish = choice.get("finish_reason")
    return GenerationResponse(
        id=str(payload.get("id") or ""),
        model=str(payload.get("model") or ""),
        parts=_message_parts(message),
        finish_reason=finish_reason(raw_finish),
        usage=_usage(payload.get("usage")),
        raw_finish_reason=raw_finish if isinstance(raw_finish, str) else None,
        created=payload.get("created") if isinstance(payload.get("created"), int) else None,
    )


def _first_choice(payload: Payload) -> Mapping[str, Any]:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("upstream answered without a choice")
    return choices[0]


def _message_parts(message: Mapping[str, Any]) -> list[Part]:
    """Reasoning, then text (a refusal is the model's text too), then tool calls."""
    parts: list[Part] = []
    reasoning = _reasoning_of(message)
    if reasoning:
        parts.append(Reasoning(reasoning))
    for name in ("content", "refusal"):
        if isinstance(message.get(name), str) and message[name]:
            parts.append(Text(message[name]))
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise UpstreamError("upstream answered a tool call without a function")
        parts.append(
            ToolCall(
                id=str(call.get("id") or ""),
                name=str(function.get("name") or ""),
                arguments=function.get("arguments") or "{}",
            )
        )
    return parts


def _reasoning_of(delta_or_message: Mapping[str, Any]) -> str | None:
    """``reasoning_content`` (vLLM, DeepSeek) or ``reasoning`` (OpenRouter, newer vLLM)."""
    for name in ("reasoning_content", "reasoning"):
        value = delta_or_message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def finish_reason(raw: Any) -> FinishReason:
    """Our finish reason for OpenAI's (anything unknown is OTHER; its raw value is kept)."""
    return _FINISH_REASONS.get(raw, FinishReason.OTHER) if isinstance(raw, str) else FinishReason.OTHER


def _usage(raw: Any) -> Usage:
    return Usage.from_openai(raw) if isinstance(raw, dict) else Usage()


# --- stream ----------------------------------------------------------------------------------


class ChatChunkDecoder:
    """``chat.completion.chunk`` payloads of one stream → gateway events.

    One block is open at a time: a text run, a reasoning run or one tool call (keyed by its
    ``tool_calls[].index``). Content of another kind closes the open block and opens the next;
    ``finish_reason`` closes the last one before :class:`StreamFinish`. Only the first choice is read.
    """

    def __init__(self) -> None:
        self._started = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (what, block index): "text", "reasoning", "tool:<k>"
        self._closed_tools: set[int] = set()

    def decode(self, event: Payload) -> list[StreamEvent]:
        """The events carried by one chunk."""
        error = event.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError(
                message if isinstance(message, str) else "upstream reported an error mid-stream"
            )
        out: list[StreamEvent] = []
        choices = event.get("choices") or []
        usage = event.get("usage")
        if not self._started and (choices or isinstance(usage, dict)):
            self._started = True
            created = event.get("created")
            out.append(
                StreamStart(
                    id=str(event.get("id") or ""),
                    model=str(event.get("model") or ""),
                    created=created if isinstance(created, int) else None,
                )
            )
        if choices and isinstance(choices[0], dict):
            out.extend(self._choice(choices[0]))
        if isinstance(usage, dict):
            out.append(UsageUpdate(Usage.from_openai(usage)))
        return out

    def finish(self) -> list[StreamEvent]:
        """Close a block left open by a stream that ended without a finish reason."""
        return self._close()

    def _choice(self, choice: Mapping[str, Any]) -> list[StreamEvent]:
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise UpstreamError("upstream sent a stream chunk whose delta is not an object")
        out: list[StreamEvent] = []
        reasoning = _reasoning_of(delta)
        if reasoning:
            out.extend(self._switch_to("reasoning"))
            out.append(ReasoningDelta(self._block(), text=reasoning))
        if isinstance(delta.get("content"), str) and delta["content"]:
            out.extend(self._switch_to("text"))
            out.append(TextDelta(self._block(), delta["content"]))
        for call in delta.get("tool_calls") or []:
            out.extend(self._tool_call(call))
        raw_finish = choice.get("finish_reason")
        if raw_finish:
            out.extend(self._close())
            out.append(StreamFinish(finish_reason(raw_finish), raw_finish_reason=str(raw_finish)))
        return out

    def _tool_call(self, call: Any) -> list[StreamEvent]:
        if not isinstance(call, dict) or not isinstance(call.get("function") or {}, dict):
            raise UpstreamError("upstream sent a malformed tool call delta")
        ordinal = call.get("index", 0)
        function = call.get("function") or {}
        what = f"tool:{ordinal}"
        out: list[StreamEvent] = []
        if self._open is None or self._open[0] != what:
            if ordinal in self._closed_tools:
                raise UpstreamError("upstream interleaved the arguments of parallel tool calls")
            out.extend(self._close())
            self._open = (what, self._take_index())
            out.append(
                ToolCallStart(self._block(), id=str(call.get("id") or ""), name=function.get("name") or "")
            )
        if function.get("arguments"):
            out.append(ToolCallDelta(self._block(), function["arguments"]))
        return out

    def _switch_to(self, what: Literal["text", "reasoning"]) -> list[StreamEvent]:
        if self._open is not None and self._open[0] == what:
            return []
        out = self._close()
        index = self._take_index()
        self._open = (what, index)
        out.append(TextStart(index) if what == "text" else ReasoningStart(index))
        return out

    def _close(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        what, index = self._open
        if what.startswith("tool:"):
            self._closed_tools.add(int(what[5:]))
        self._open = None
        return [BlockStop(index)]

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _block(self) -> int:
        assert self._open is not None
        return self._open[1]


class OpenAIChatUpstreamCodec:
    """The upstream side of Chat Completions (a :class:`odock.llm.codec.UpstreamCodec`)."""

    def __init__(self, max_tokens_field: MaxTokensField) -> None:
        self.max_tokens_field: MaxTokensField = max_tokens_field

    def encode_request(self, request: GenerationRequest, model: str, *, stream: bool) -> Payload:
        """See :func:`encode_chat_request`."""
        return encode_chat_request(request, model, stream=stream, max_tokens_field=self.max_tokens_field)

    def decode_response(self, payload: Payload) -> GenerationResponse:
        """See :func:`decode_chat_response`."""
        return decode_chat_response(payload)

    def stream_decoder(self) -> ChatChunkDecoder:
        """A fresh :class:`ChatChunkDecoder`."""
        return ChatChunkDecoder()


# --- embeddings ------------------------------------------------------------------------------


class OpenAIEmbeddingsUpstreamCodec:
    """The upstream side of OpenAI Embeddings (a :class:`odock.llm.codec.EmbeddingUpstreamCodec`)."""

    def encode_embeddings_request(self, request: EmbeddingRequest, model: str) -> Payload:
        """The embeddings payload, asking for floats."""
        payload: Payload = {"model": model, "input": request.inputs, "encoding_format": "float"}
        if request.dimensions is not None:
            payload["dimensions"] = request.dimensions
        if request.user is not None:
            payload["user"] = request.user
        return payload

    def decode_embeddings_response(self, payload: Payload) -> EmbeddingResponse:
        """The vectors in input order (base64 ones too, should a server send them anyway)."""
        data = payload.get("data")
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise UpstreamError("upstream answered embeddings without data")
        items = sorted(data, key=lambda item: int(item.get("index") or 0))
        return EmbeddingResponse(
            model=str(payload.get("model") or ""),
            vectors=[_vector(item.get("embedding")) for item in items],
            usage=_usage(payload.get("usage")),
        )


def _vector(embedding: Any) -> list[float]:
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if isinstance(embedding, list):
        return [float(value) for value in embedding]
    raise UpstreamError("upstream answered an embedding that is neither floats nor base64")


OPENAI_CHAT_UPSTREAM = OpenAIChatUpstreamCodec("max_completion_tokens")
OPENAI_COMPATIBLE_CHAT_UPSTREAM = OpenAIChatUpstreamCodec("max_tokens")
OPENAI_EMBEDDINGS_UPSTREAM = OpenAIEmbeddingsUpstreamCodec()
