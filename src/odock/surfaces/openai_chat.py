"""The OpenAI-compatible surface: chat completions and embeddings requests, decoded and checked.

Flow of :func:`decode_chat` and :func:`decode_embeddings`::

    body → JSON object                     400 when empty, malformed or not an object
    required fields present                model + messages (chat), model + input (embeddings)
    each known field of the right type     booleans are strict: "no" or 0 is not a boolean
    integers within their range            token counts, n, seed, …: every integer the gateway
                                           computes with fits the 64-bit counters it feeds
    stream_options.include_usage           strict boolean too
    fields the OpenAI API does not define  set aside in ``ex.extra_fields``; whether they may
                                           pass depends on the provider, decided once it is known

A wrong field is a 400 ``invalid_request_body`` naming it, never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odock import estimate
from odock.errors import InvalidRequestBody
from odock.surfaces.surface import Decoded, Params

_NUMBER = (int, float)

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
STREAM_OPTION_FIELDS: dict[str, tuple[type, ...]] = {
    "include_usage": (bool,),
    "include_obfuscation": (bool,),
}

# The most tokens a request may ask for: far above any model's output, and small enough that an
# allowance times any price, or summed over every scope, stays inside a 64-bit counter.
MAX_TOKEN_COUNT = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# field → inclusive bounds of an integer the client sends (documented in docs/providers.md).
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "max_tokens": (1, MAX_TOKEN_COUNT),
    "max_completion_tokens": (1, MAX_TOKEN_COUNT),
    "n": (1, 128),
    "top_logprobs": (0, 20),
    "seed": (INT64_MIN, INT64_MAX),
    "dimensions": (1, 65_536),
}
LOGIT_BIAS_RANGE = (-100, 100)

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def decode_chat(data: dict[str, Any], params: Params) -> Decoded:
    """A chat completions body, checked."""
    extra = _check_common(data, ("model", "messages"), CHAT_FIELDS)
    _check_messages(data["messages"])
    _check_logit_bias(data.get("logit_bias"))
    return Decoded(
        data,
        stream=data.get("stream") is True,
        include_usage=_include_usage(data.get("stream_options")),
        extra_fields=extra,
    )


def decode_embeddings(data: dict[str, Any], params: Params) -> Decoded:
    """An embeddings body, checked."""
    extra = _check_common(data, ("model", "input"), EMBEDDING_FIELDS)
    if not data["input"]:
        raise InvalidRequestBody("field 'input' must not be empty", param="input")
    return Decoded(data, extra_fields=extra)


def chat_input_tokens(data: Mapping[str, Any]) -> int:
    """Estimated prompt tokens of a chat body."""
    return estimate.prompt_tokens(data.get("messages") or [])


def embeddings_input_tokens(data: Mapping[str, Any]) -> int:
    """Estimated tokens of an embeddings body."""
    return estimate.input_tokens(data.get("input"))


def asked_max_tokens(data: Mapping[str, Any]) -> int | None:
    """The output limit the client set (``max_completion_tokens``, else ``max_tokens``)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def no_output(data: Mapping[str, Any]) -> int | None:
    """Embeddings produce no output tokens."""
    return 0


def with_usage(payload: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """The body for an OpenAI-compatible upstream: its model id, and usage asked for on streams.

    Streams always ask for usage so they are metered; the closing usage chunk is stripped on the
    way back unless the client asked for it.
    """
    body = dict(payload)
    body["model"] = model
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body


def _check_common(
    data: dict[str, Any], required: tuple[str, ...], fields: Mapping[str, tuple[type, ...]]
) -> tuple[str, ...]:
    """Required fields present, known fields typed, integers in range; the unknown field names."""
    for name in required:
        if data.get(name) is None:
            raise InvalidRequestBody(f"missing required field '{name}'", param=name)
    extra = check_fields(data, fields)
    check_integers(data, fields)
    if not data["model"].strip():
        raise InvalidRequestBody("field 'model' must not be empty", param="model")
    return extra


def check_fields(
    data: Mapping[str, Any], fields: Mapping[str, tuple[type, ...]], prefix: str = ""
) -> tuple[str, ...]:
    """Refuse a known field of the wrong type (400 naming it); return the unknown field names."""
    extra = []
    for name, value in data.items():
        types = fields.get(name)
        if types is None:
            extra.append(name)
        elif value is not None and not _type_ok(value, types):
            expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise InvalidRequestBody(f"field '{prefix}{name}' must be {expected}", param=prefix + name)
    return tuple(extra)


def check_integers(data: Mapping[str, Any], fields: Mapping[str, tuple[type, ...]]) -> None:
    """Refuse an integer field of ``fields`` outside its range (400 naming the field and the range)."""
    for name, (low, high) in INTEGER_RANGES.items():
        value = data.get(name)
        # Only known fields were type-checked; an unknown one of the same name is not ours to judge.
        if value is not None and name in fields and not low <= value <= high:
            raise InvalidRequestBody(f"field '{name}' must be between {low} and {high}", param=name)


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    # bool is a subclass of int: true/false is never a number, and only a boolean is a boolean.
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _check_messages(messages: list[Any]) -> None:
    if not messages:
        raise InvalidRequestBody("field 'messages' must not be empty", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequestBody(
                f"messages[{index}] must be an object with a string 'role'", param=f"messages[{index}]"
            )


def _check_logit_bias(bias: Mapping[str, Any] | None) -> None:
    if not bias:
        return
    low, high = LOGIT_BIAS_RANGE
    for token, value in bias.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise InvalidRequestBody(
                f"logit_bias values must be numbers between {low} and {high}", param=f"logit_bias.{token}"
            )


def _include_usage(options: Mapping[str, Any] | None) -> bool:
    if not options:
        return False
    check_fields(options, STREAM_OPTION_FIELDS, prefix="stream_options.")
    return options.get("include_usage") is True
