"""Prompt logging (``ODOCK_LOG_PROMPTS``): the one place a prompt or an answer may reach a log.

Off by default, and then this stage is not in the pipeline at all, so nothing of a prompt is
ever logged. On, it logs at INFO under the ``odock.telemetry.prompts`` logger, with the request
id: each decoded request's messages (OpenAI chat) or input (OpenAI embeddings) — in other
dialects the whole decoded body, which is the prompt — and the answer of a unary call once it
was sent (the answer text of an OpenAI chat completion, the answer body in other dialects).
Streamed answers are not logged (they would have to be kept
whole in memory); API keys never are, since they travel in headers, not in the body.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from odock.llm.upstream import Endpoint
from odock.pipeline.exchange import Exchange

log = logging.getLogger(__name__)

# Where OpenAI's bodies keep the prompt; other dialects' bodies are logged whole.
_PROMPT_FIELDS = {"openai_chat": "messages", "openai_embeddings": "input"}


class LogPrompts:
    """Logs the request's prompt on the way in and a unary answer's text on the way out."""

    name = "log_prompts"

    async def before(self, ex: Exchange) -> None:
        """Log the decoded prompt."""
        field = _PROMPT_FIELDS.get(ex.surface.name)
        prompt = ex.payload.get(field) if field else ex.payload
        log.info(
            "request %s %s: %s", ex.request_id, field or "body", orjson.dumps(prompt, default=str).decode()
        )

    async def after(self, ex: Exchange) -> None:
        """Log the answer text of a successful unary chat completion."""
        if ex.unary is None or ex.error is not None or ex.endpoint == Endpoint.EMBEDDINGS:
            return
        body = ex.unary.body
        answer = answer_text(body) if ex.surface.name == "openai_chat" else body.decode("utf-8", "replace")
        log.info("request %s answer: %s", ex.request_id, answer)


def answer_text(body: bytes) -> str:
    """The text of every choice of a chat completion body (one line per choice)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "(not JSON)"
    choices = data.get("choices") if isinstance(data, dict) else None
    return "\n".join(_content(choice) for choice in choices or [] if isinstance(choice, dict))


def _content(choice: dict[str, Any]) -> str:
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else orjson.dumps(content).decode()
