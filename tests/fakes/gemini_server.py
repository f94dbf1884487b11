"""A fake Gemini API server that speaks Google's wire format, for testing the gateway end to end.

Routes, under both ``/v1beta`` and ``/v1``: ``POST /models/{model}:generateContent``,
``:streamGenerateContent`` (SSE with ``?alt=sse``, a JSON array of the chunks without, as Google
answers), ``:countTokens``, ``:embedContent`` and ``:batchEmbedContents``. The key is read from
``x-goog-api-key`` or ``?key=``: none is a 403 PERMISSION_DENIED, a wrong one a 400
INVALID_ARGUMENT with reason API_KEY_INVALID (Google's own answers). Field names are read in either
spelling, camelCase or the proto's snake_case, as Google's JSON parser does.

Behaviour is chosen by the model in the URL::

    fake-echo              the scripted answer of tests/fakes/script.py (a functionCall part when
                           tools are declared, a thought part first when thinkingConfig asks
                           includeThoughts, images counted, cachedContentTokenCount = CACHED_TOKENS)
    fake-error-400|401|429|500|503   that status in Google's error shape (429 with a RetryInfo)
    fake-broken-stream     streams a few chunks, then drops the connection
    fake-truncated-stream  streams a few chunks, then ends the body cleanly without a finishReason
    fake-blocked           200 with promptFeedback.blockReason SAFETY and no candidates
    anything else          REPLY with USAGE_METADATA

Embeddings are deterministic (:func:`tests.fakes.openai_server.embedding_of` of the text).
Every request is recorded; the server runs on its own event loop in a background thread.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes import script
from tests.fakes.openai_server import embedding_of
from tests.fakes.threaded import ReceivedRequest, ThreadedFake

REPLY = "Hello from the fake Gemini server."
USAGE_METADATA: dict[str, Any] = {
    "promptTokenCount": 11,
    "candidatesTokenCount": 6,
    "totalTokenCount": 17,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11}],
}
MODEL_VERSION_SUFFIX = "-001"
DEFAULT_DIMENSIONS = 8
RETRY_DELAY = "7s"
PARTIAL_CHUNKS = 2  # chunks sent before a broken stream breaks

_ERRORS: dict[str, tuple[int, str, str]] = {
    "fake-error-400": (400, "INVALID_ARGUMENT", "The input token count exceeds the maximum allowed."),
    "fake-error-401": (401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
    "fake-error-429": (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota."),
    "fake-error-500": (500, "INTERNAL", "An internal error has occurred."),
    "fake-error-503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
}


class FakeGemini(ThreadedFake):
    """The fake server."""

    vendor = "Gemini"

    def __init__(self, *, api_key: str | None = "gm-fake-upstream") -> None:
        super().__init__(api_key=api_key)

    def _add_routes(self, app: web.Application) -> None:
        """Every method of a model, under both API versions (:meth:`_route` dispatches)."""
        app.router.add_post("/{version:v1beta|v1}/models/{target}", self._route)

    # --- routes ---------------------------------------------------------------------------
    async def _route(self, request: web.Request) -> web.StreamResponse:
        received = await self._record(request)
        headers, body = received.headers, received.body
        model, _, method = request.match_info["target"].rpartition(":")
        refused = self._refusal(headers.get("x-goog-api-key") or request.query.get("key"), body)
        if refused is not None:
            return refused
        if model in _ERRORS:
            return _error(*_ERRORS[model])
        body = _proto_json(body)
        handler = {
            "generateContent": self._generate,
            "streamGenerateContent": self._stream,
            "countTokens": self._count,
            "embedContent": self._embed,
            "batchEmbedContents": self._batch_embed,
        }.get(method)
        if handler is None:
            return _error(404, "NOT_FOUND", f"Method {method} not found for models/{model}.")
        return await handler(request, model, body)

    def _refusal(self, key: str | None, body: Any) -> web.Response | None:
        if self.api_key is not None and key is None:
            message = "Method doesn't allow unregistered callers (callers without established identity)."
            return _error(403, "PERMISSION_DENIED", message)
        if self.api_key is not None and key != self.api_key:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])
        if not isinstance(body, dict):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        return None

    async def _generate(self, request: web.Request, model: str, body: dict[str, Any]) -> web.StreamResponse:
        if not body.get("contents"):
            return _error(
                400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified"
            )
        return _json(200, _whole(_chunks(model, body)))

    async def _stream(self, request: web.Request, model: str, body: dict[str, Any]) -> web.StreamResponse:
        if not body.get("contents"):
            return _error(
                400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified"
            )
        chunks = _chunks(model, body)
        if request.query.get("alt") != "sse":
            return _json(200, chunks)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for sent, chunk in enumerate(chunks):
            if sent == PARTIAL_CHUNKS and model == "fake-broken-stream":
                assert request.transport is not None
                request.transport.abort()
                return response
            if sent == PARTIAL_CHUNKS and model == "fake-truncated-stream":
                break
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
        await response.write_eof()
        return response

    async def _count(self, request: web.Request, model: str, body: dict[str, Any]) -> web.StreamResponse:
        inner = body.get("generateContentRequest") or body
        return _json(200, {"totalTokens": _words(inner.get("contents") or [])})

    async def _embed(self, request: web.Request, model: str, body: dict[str, Any]) -> web.StreamResponse:
        return _json(200, {"embedding": _embedding(body)})

    async def _batch_embed(
        self, request: web.Request, model: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests: must not be empty")
        return _json(200, {"embeddings": [_embedding(item) for item in requests]})


# --- answers -------------------------------------------------------------------------------------


def _chunks(model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The streamed chunks of the answer (a unary answer is their concatenation)."""
    base = {"modelVersion": model + MODEL_VERSION_SUFFIX, "responseId": "fake-" + model}
    if model == "fake-blocked":
        return [{**base, "promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": USAGE_METADATA}]
    if model != script.ECHO_MODEL:
        words = REPLY.split()
        pieces = [{"text": w if i == 0 else " " + w} for i, w in enumerate(words)]
        return _framed(base, [[p] for p in pieces], USAGE_METADATA)
    answer = script.answer(_seen(body))
    groups: list[list[dict[str, Any]]] = []
    if answer.reasoning is not None:
        groups.append([{"text": answer.reasoning, "thought": True}])
    if answer.tool_name is not None:
        assert answer.tool_arguments is not None
        groups.append(
            [{"functionCall": {"name": answer.tool_name, "args": json.loads(answer.tool_arguments)}}]
        )
    else:
        assert answer.text is not None
        groups.extend([{"text": piece}] for piece in script.pieces(answer.text))
    usage = {
        "promptTokenCount": answer.prompt_tokens,
        "candidatesTokenCount": answer.completion_tokens - answer.reasoning_tokens,
        "totalTokenCount": answer.prompt_tokens + answer.completion_tokens,
        "cachedContentTokenCount": answer.cached_tokens,
    }
    if answer.reasoning_tokens:
        usage["thoughtsTokenCount"] = answer.reasoning_tokens
    return _framed(base, groups, usage)


def _framed(
    base: dict[str, Any], groups: list[list[dict[str, Any]]], usage: dict[str, Any]
) -> list[dict[str, Any]]:
    """One chunk per group of parts; the last carries finishReason STOP and the usage."""
    chunks = []
    for index, parts in enumerate(groups):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        chunk = {**base, "candidates": [candidate]}
        if index == len(groups) - 1:
            candidate["finishReason"] = "STOP"
            chunk["usageMetadata"] = usage
        else:
            chunk["usageMetadata"] = {"promptTokenCount": usage["promptTokenCount"], "totalTokenCount": 0}
        chunks.append(chunk)
    return chunks


def _whole(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """A unary answer: the chunks' parts merged (consecutive texts of one kind joined)."""
    last = dict(chunks[-1])
    if "candidates" not in last:
        return last
    parts: list[dict[str, Any]] = []
    for chunk in chunks:
        for part in chunk["candidates"][0]["content"]["parts"]:
            if (
                parts
                and "text" in part
                and "text" in parts[-1]
                and part.get("thought") == parts[-1].get("thought")
            ):
                parts[-1] = {**parts[-1], "text": parts[-1]["text"] + part["text"]}
            else:
                parts.append(dict(part))
    candidate = {**last["candidates"][0], "content": {"role": "model", "parts": parts}}
    return {**last, "candidates": [candidate]}


def _seen(body: dict[str, Any]) -> script.Seen:
    """What the scripted answer needs to know of a generateContent body."""
    seen = script.Seen()
    for tool in body.get("tools") or []:
        seen.tools.extend(d["name"] for d in tool.get("functionDeclarations") or [])
    thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    seen.reasoning = thinking.get("includeThoughts") is True and thinking.get("thinkingBudget") != 0
    for content in body.get("contents") or []:
        parts = content.get("parts") or []
        for part in parts:
            if "functionResponse" in part:
                seen.tool_results.append(_result_text(part["functionResponse"].get("response")))
        if content.get("role", "user") == "user" and any("text" in p for p in parts):
            seen.last_user_text = "".join(p["text"] for p in parts if "text" in p)
            seen.images = sum(1 for p in parts if "inlineData" in p or "fileData" in p)
    return seen


_FREE_FORM = {
    "args",
    "response",
    "parameters",
    "parametersJsonSchema",
    "responseSchema",
    "responseJsonSchema",
}


def _proto_json(value: Any) -> Any:
    """The body with field names in camelCase: Google reads ``include_thoughts`` as ``includeThoughts``."""
    if isinstance(value, list):
        return [_proto_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    renamed = {}
    for key, item in value.items():
        head, *rest = key.split("_")
        name = head + "".join(word.capitalize() for word in rest)
        renamed[name] = item if name in _FREE_FORM else _proto_json(item)
    return renamed


def _result_text(response: Any) -> str:
    """A function response's text: its ``output`` or ``result`` string, else its JSON."""
    if isinstance(response, dict):
        for key in ("output", "result"):
            if isinstance(response.get(key), str) and len(response) == 1:
                return str(response[key])
    return json.dumps(response)


def _words(contents: list[Any]) -> int:
    texts = (p.get("text", "") for c in contents for p in c.get("parts") or [])
    return sum(len(text.split()) for text in texts)


def _embedding(item: dict[str, Any]) -> dict[str, Any]:
    text = "\n".join(p.get("text", "") for p in (item.get("content") or {}).get("parts") or [])
    return {"values": embedding_of(text, item.get("outputDimensionality") or DEFAULT_DIMENSIONS)}


def _error(status: int, name: str, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if details:
        error["details"] = details
    elif status == 429:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": RETRY_DELAY}]
    return _json(status, {"error": error})


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


def running_fake_gemini(*, api_key: str | None = "gm-fake-upstream") -> FakeGemini:
    """A :class:`FakeGemini` for a ``with`` block: served inside it, stopped on exit."""
    return FakeGemini(api_key=api_key)


__all__ = ["REPLY", "USAGE_METADATA", "FakeGemini", "ReceivedRequest", "running_fake_gemini"]
