"""Request decoding for the OpenAI-compatible endpoints: JSON, field types, unknown fields.

Known fields are type-checked here (a wrong type is a 400 naming the field, never a 500).
Fields the OpenAI API does not define are set aside in ``ex.extra_fields``; whether they may
pass depends on the provider and is decided once the provider is known.
"""

from __future__ import annotations

from typing import Any

import orjson

from odock.errors import InvalidRequestBody
from odock.pipeline import Exchange
from odock.providers.adapters.base import Endpoint

_NUMBER = (int, float)
_ANY = object

# field → accepted Python types (None is always accepted for optional fields)
CHAT_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "messages": (list,),
    "stream": (bool,),
    "stream_options": (dict,),
    "max_tokens": (int,),
    "max_completion_tokens": (int,),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "n": (int,),
    "stop": (str, list),
    "presence_penalty": _NUMBER,
    "frequency_penalty": _NUMBER,
    "logit_bias": (dict,),
    "logprobs": (bool,),
    "top_logprobs": (int,),
    "user": (str,),
    "seed": (int,),
    "tools": (list,),
    "tool_choice": (str, dict),
    "parallel_tool_calls": (bool,),
    "response_format": (dict,),
    "service_tier": (str,),
    "store": (bool,),
    "metadata": (dict,),
    "modalities": (list,),
    "audio": (dict,),
    "prediction": (dict,),
    "reasoning_effort": (str,),
    "verbosity": (str,),
    "web_search_options": (dict,),
    "functions": (list,),
    "function_call": (str, dict),
    "prompt_cache_key": (str,),
    "safety_identifier": (str,),
}
EMBEDDING_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "input": (str, list),
    "encoding_format": (str,),
    "dimensions": (int,),
    "user": (str,),
}
_REQUIRED = {Endpoint.CHAT: ("model", "messages"), Endpoint.EMBEDDINGS: ("model", "input")}
_FIELDS = {Endpoint.CHAT: CHAT_FIELDS, Endpoint.EMBEDDINGS: EMBEDDING_FIELDS}
_POSITIVE_INTS = ("max_tokens", "max_completion_tokens", "n", "dimensions")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object body; 400 on anything else (including invalid UTF-8)."""
    if not body.strip():
        raise InvalidRequestBody("request body is empty; a JSON object is required")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestBody(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequestBody("request body must be a JSON object")
    return data


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def decode(ex: Exchange) -> None:
    """Fill ``ex.payload``, ``ex.stream``, ``ex.include_usage`` and ``ex.extra_fields``."""
    data = parse_json_object(ex.body)
    fields = _FIELDS[ex.endpoint]
    for name in _REQUIRED[ex.endpoint]:
        if data.get(name) is None:
            raise InvalidRequestBody(f"missing required field '{name}'", param=name)
    extra = []
    for name, value in data.items():
        types = fields.get(name)
        if types is None:
            extra.append(name)
        elif value is not None and not _type_ok(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise InvalidRequestBody(f"field '{name}' must be {expected}", param=name)
    for name in _POSITIVE_INTS:
        value = data.get(name)
        if value is not None and value < 1:
            raise InvalidRequestBody(f"field '{name}' must be at least 1", param=name)
    if not data["model"].strip():
        raise InvalidRequestBody("field 'model' must not be empty", param="model")
    if ex.endpoint == Endpoint.CHAT:
        _check_messages(data["messages"])
        ex.stream = bool(data.get("stream"))
        options = data.get("stream_options") or {}
        ex.include_usage = bool(options.get("include_usage"))
    elif ex.endpoint == Endpoint.EMBEDDINGS and not data["input"]:
        raise InvalidRequestBody("field 'input' must not be empty", param="input")
    ex.payload = data
    ex.extra_fields = tuple(extra)


def _check_messages(messages: list[Any]) -> None:
    if not messages:
        raise InvalidRequestBody("field 'messages' must not be empty", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequestBody(
                f"messages[{index}] must be an object with a string 'role'", param=f"messages[{index}]"
            )


class DecodeRequest:
    """The decode stage."""

    name = "decode_request"

    async def before(self, ex: Exchange) -> None:
        """Decode and type-check the body."""
        decode(ex)

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo."""
