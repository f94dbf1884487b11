"""The OpenAI Responses dialect's answers: the Response object and the typed ``response.*`` events.

:func:`response_object` writes a complete answer; :class:`ResponsesStreamEncoder` writes a
stream in the order OpenAI sends one (response.created, response.in_progress; per output item
output_item.added, its part and deltas, their .done events, output_item.done; then
response.completed or response.incomplete carrying the whole response with its usage). Both
repeat the request's settings (tools, tool choice, sampling, …) as a Response object does.

Output items follow the answer's parts in order: a run of text is one assistant ``message``
(``msg_…``) with one ``output_text``; reasoning is a ``reasoning`` item (``rs_…``) whose summary is
the reasoning text and whose ``encrypted_content`` carries the upstream's signature; each tool
call is a ``function_call`` item (``fc_…``) keeping the call id.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from odock.errors import OdockError
from odock.llm.codec import Payload
from odock.llm.types import (
    BlockStop,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
    Part,
    Reasoning,
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
    UsageUpdate,
)
from odock.llm.upstream import Usage


def response_object(request: GenerationRequest | None, response: GenerationResponse) -> Payload:
    """``response`` as a Response object repeating ``request``'s settings (defaults without one)."""
    ids = _Ids()
    items = [_item_of(run, ids, _item_status(response.finish_reason)) for run in _runs(response.parts)]
    return _response_object(
        ids.response,
        request,
        model=response.model,
        created=response.created or int(time.time()),
        output=items,
        finish=response.finish_reason,
        usage=response.usage,
    )


# --- encoding: GenerationResponse → a Response object ---------------------------------------------


class _Ids:
    """The ids of one answer: ``resp_…`` and its items' ``msg_…``, ``rs_…``, ``fc_…``."""

    def __init__(self) -> None:
        self._base = secrets.token_hex(16)
        self._count = 0
        self.response = f"resp_{self._base}"

    def item(self, prefix: str) -> str:
        """A fresh item id with ``prefix`` (msg, rs or fc)."""
        self._count += 1
        return f"{prefix}_{self._base}{self._count:03d}"


def _runs(parts: list[Part]) -> list[list[Part]]:
    """Parts grouped by output item: consecutive texts make one message; others stand alone."""
    runs: list[list[Part]] = []
    for part in parts:
        if isinstance(part, Text) and runs and isinstance(runs[-1][0], Text):
            runs[-1].append(part)
        elif isinstance(part, Text | Reasoning | ToolCall):
            runs.append([part])
    return runs


def _item_of(run: list[Part], ids: _Ids, status: str) -> Payload:
    first = run[0]
    if isinstance(first, Reasoning):
        text = None if first.redacted is not None else first.text
        return _reasoning_item(ids.item("rs"), text, first.signature)
    if isinstance(first, ToolCall):
        return _function_call_item(ids.item("fc"), first, "completed")
    text = "".join(p.text for p in run if isinstance(p, Text))
    return _message_item(ids.item("msg"), text, status)


def _message_item(item_id: str, text: str | None, status: str) -> Payload:
    content = [] if text is None else [_output_text(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _output_text(text: str) -> Payload:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _reasoning_item(item_id: str, text: str | None, signature: str | None) -> Payload:
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    item: Payload = {"id": item_id, "type": "reasoning", "summary": summary}
    if signature is not None:
        item["encrypted_content"] = signature
    return item


def _function_call_item(item_id: str, call: ToolCall, status: str) -> Payload:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
    }


def _item_status(finish: FinishReason) -> str:
    return "incomplete" if finish in _INCOMPLETE else "completed"


_INCOMPLETE = {FinishReason.LENGTH: "max_output_tokens", FinishReason.CONTENT_FILTER: "content_filter"}


def _response_object(
    response_id: str,
    request: GenerationRequest | None,
    *,
    model: str,
    created: int,
    output: list[Payload],
    finish: FinishReason | None,
    usage: Usage | None,
) -> Payload:
    """The Response object; ``finish`` None means still in progress."""
    reason = _INCOMPLETE.get(finish) if finish is not None else None
    status = "in_progress" if finish is None else "incomplete" if reason else "completed"
    body: Payload = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "model": model,
        "output": output,
        "usage": _usage_object(usage) if usage is not None else None,
        "previous_response_id": None,
        "store": False,  # the gateway keeps no response to continue from
        "truncation": "disabled",
        "metadata": {},
        "background": False,
    }
    body.update(_echo(request))
    if status == "completed":
        body["completed_at"] = int(time.time())
    return body


def _echo(request: GenerationRequest | None) -> Payload:
    """The request's settings, as a Response object repeats them."""
    if request is None:
        request = GenerationRequest(model="", messages=[])
    fmt = request.response_format
    effort = request.reasoning.effort if request.reasoning else None
    if request.reasoning is not None and not request.reasoning.enabled:
        effort = "none"
    return {
        "instructions": "\n\n".join(t.text for t in request.system) or None,
        "max_output_tokens": request.max_tokens,
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "tool_choice": _tool_choice_object(request.tool_choice),
        "tools": [_tool_object(tool) for tool in request.tools],
        "text": {"format": _format_object(fmt)},
        "reasoning": {"effort": effort, "summary": None},
        "user": request.user,
    }


def _tool_choice_object(choice: ToolChoice | None) -> str | Payload:
    if choice is None:
        return "auto"
    if choice.mode == "tool":
        return {"type": "function", "name": choice.name}
    return choice.mode


def _tool_object(tool: Tool) -> Payload:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": tool.strict,
    }


def _format_object(fmt: ResponseFormat | None) -> Payload:
    if fmt is None or fmt.type != "json_schema":
        return {"type": fmt.type if fmt else "text"}
    return {"type": "json_schema", "name": fmt.name, "schema": fmt.schema, "strict": fmt.strict}


def _usage_object(usage: Usage) -> Payload:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


# --- streaming: gateway events → the typed response.* events --------------------------------------


@dataclass
class _OpenItem:
    """An output item being streamed: its position, its id and what it has gathered so far."""

    output_index: int
    item: Payload
    text: str = ""  # the message's text, the reasoning's summary or the call's arguments
    signature: str | None = None
    redacted: bool = False  # redacted reasoning: no readable summary


class ResponsesStreamEncoder:
    """Turns gateway stream events into Responses events, numbered by ``sequence_number``.

    The order is OpenAI's: response.created, response.in_progress; per item
    output_item.added, its part and deltas, their .done, output_item.done; and from
    :meth:`finish` response.completed (or response.incomplete) with the whole response.
    """

    def __init__(self, request: GenerationRequest) -> None:
        self._request = request
        self._ids = _Ids()
        self._sequence = 0
        self._model = request.model
        self._created = int(time.time())
        self._open: dict[int, _OpenItem] = {}  # block index → its item
        self._done: list[tuple[int, Payload]] = []  # finished items with their output index
        self._added = 0
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None

    def encode(self, event: StreamEvent) -> list[Payload]:
        """The Responses events for ``event``."""
        if isinstance(event, StreamStart):
            return self._start(event)
        if isinstance(event, TextStart | ReasoningStart | ToolCallStart):
            return self._begin(event)
        if isinstance(event, TextDelta | ReasoningDelta | ToolCallDelta):
            return self._delta(event)
        if isinstance(event, BlockStop):
            return self._stop(event.index)
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
        elif isinstance(event, StreamFinish):
            self._finish = event.finish_reason
        return []

    def finish(self) -> list[Payload]:
        """Close any item still open, then response.completed or response.incomplete."""
        events = [e for index in sorted(self._open) for e in self._stop(index)]
        finish = self._finish or FinishReason.STOP
        response = self._snapshot(finish)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return [*events, self._event(kind, response=response)]

    def fail(self, error: OdockError) -> list[Payload]:
        """The ``error`` event that ends a stream broken after its start."""
        return [self._event("error", code=error.code, message=error.message, param=error.param)]

    # --- lifecycle ---------------------------------------------------------------------------
    def _start(self, event: StreamStart) -> list[Payload]:
        self._model = event.model or self._model
        self._created = event.created or self._created
        snapshot = self._snapshot(None)
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def _snapshot(self, finish: FinishReason | None) -> Payload:
        """The response so far: empty while in progress, every item with usage once finished."""
        output = [item for _, item in sorted(self._done, key=lambda done: done[0])] if finish else []
        if finish in _INCOMPLETE:
            # The cut was only known after the message's own done event; the final object says it.
            output = [
                {**item, "status": "incomplete"} if item["type"] == "message" else item for item in output
            ]
        usage = (self._usage or Usage()) if finish is not None else None
        return _response_object(
            self._ids.response,
            self._request,
            model=self._model,
            created=self._created,
            output=output,
            finish=finish,
            usage=usage,
        )

    def _event(self, kind: str, **fields: Any) -> Payload:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    # --- items -------------------------------------------------------------------------------
    def _begin(self, event: TextStart | ReasoningStart | ToolCallStart) -> list[Payload]:
        index = self._added
        self._added += 1
        if isinstance(event, TextStart):
            item = _message_item(self._ids.item("msg"), None, "in_progress")
            part_event = "response.content_part.added"
            extra: Payload = {"content_index": 0, "part": _output_text("")}
        elif isinstance(event, ReasoningStart):
            item = _reasoning_item(self._ids.item("rs"), None, None)
            part_event = "response.reasoning_summary_part.added"
            extra = {"summary_index": 0, "part": {"type": "summary_text", "text": ""}}
        else:
            item = _function_call_item(
                self._ids.item("fc"), ToolCall(event.id, event.name, ""), "in_progress"
            )
            part_event = ""
        redacted = isinstance(event, ReasoningStart) and event.redacted is not None
        self._open[event.index] = _OpenItem(index, item, redacted=redacted)
        events = [self._event("response.output_item.added", output_index=index, item=item)]
        if part_event and not redacted:
            events.append(self._event(part_event, item_id=item["id"], output_index=index, **extra))
        return events

    def _delta(self, event: TextDelta | ReasoningDelta | ToolCallDelta) -> list[Payload]:
        open_item = self._open.get(event.index)
        if open_item is None:
            return []
        where = _where(open_item)
        if isinstance(event, TextDelta):
            open_item.text += event.text
            return [
                self._event(
                    "response.output_text.delta", **where, content_index=0, delta=event.text, logprobs=[]
                )
            ]
        if isinstance(event, ToolCallDelta):
            open_item.text += event.arguments
            return [self._event("response.function_call_arguments.delta", **where, delta=event.arguments)]
        if event.signature is not None:
            open_item.signature = event.signature
        if not event.text:
            return []
        open_item.text += event.text
        return [
            self._event("response.reasoning_summary_text.delta", **where, summary_index=0, delta=event.text)
        ]

    def _stop(self, index: int) -> list[Payload]:
        """The done events of block ``index``'s item, ending with output_item.done."""
        open_item = self._open.pop(index, None)
        if open_item is None:
            return []
        kind = open_item.item["type"]
        if kind == "message":
            events, done = self._stop_message(open_item)
        elif kind == "reasoning":
            events, done = self._stop_reasoning(open_item)
        else:
            events, done = self._stop_call(open_item)
        events.append(
            self._event("response.output_item.done", output_index=open_item.output_index, item=done)
        )
        self._done.append((open_item.output_index, done))
        return events

    def _stop_message(self, open_item: _OpenItem) -> tuple[list[Payload], Payload]:
        where, text = _where(open_item), open_item.text
        status = _item_status(self._finish) if self._finish else "completed"
        events = [
            self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]),
            self._event("response.content_part.done", **where, content_index=0, part=_output_text(text)),
        ]
        return events, _message_item(open_item.item["id"], text, status)

    def _stop_reasoning(self, open_item: _OpenItem) -> tuple[list[Payload], Payload]:
        item_id, text = open_item.item["id"], open_item.text
        if open_item.redacted:
            return [], _reasoning_item(item_id, None, open_item.signature)
        where, part = _where(open_item), {"type": "summary_text", "text": text}
        events = [
            self._event("response.reasoning_summary_text.done", **where, summary_index=0, text=text),
            self._event("response.reasoning_summary_part.done", **where, summary_index=0, part=part),
        ]
        return events, _reasoning_item(item_id, text, open_item.signature)

    def _stop_call(self, open_item: _OpenItem) -> tuple[list[Payload], Payload]:
        item, arguments = open_item.item, open_item.text
        events = [
            self._event("response.function_call_arguments.done", **_where(open_item), arguments=arguments)
        ]
        call = ToolCall(item["call_id"], item["name"], arguments)
        return events, _function_call_item(item["id"], call, "completed")


def _where(open_item: _OpenItem) -> Payload:
    """The fields that name an item in its events."""
    return {"item_id": open_item.item["id"], "output_index": open_item.output_index}
