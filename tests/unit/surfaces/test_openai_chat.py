"""The OpenAI-compatible surface's decoding: required fields, types, integer ranges, strict booleans."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from odock.errors import InvalidRequestBody
from odock.llm.upstream import Endpoint
from odock.pipeline.exchange import Exchange, Timings
from odock.surfaces.openai_chat import INTEGER_RANGES, MAX_TOKEN_COUNT
from odock.surfaces.registry import OPENAI_CHAT, OPENAI_EMBEDDINGS
from odock.surfaces.stage import decode

MESSAGES = [{"role": "user", "content": "hi"}]


def exchange(body: dict[str, Any] | bytes, endpoint: Endpoint = Endpoint.CHAT) -> Exchange:
    """An exchange carrying ``body`` (a dict is sent as JSON)."""
    return Exchange(
        request_id="rid-1",
        endpoint=endpoint,
        route="/v1/" + ("chat/completions" if endpoint == Endpoint.CHAT else "embeddings"),
        method="POST",
        headers={},
        client_ip=None,
        body=body if isinstance(body, bytes) else orjson.dumps(body),
        received_at=datetime.now(UTC),
        timings=Timings(received=time.perf_counter()),
        surface=OPENAI_CHAT if endpoint == Endpoint.CHAT else OPENAI_EMBEDDINGS,
    )


def chat(**fields: Any) -> dict[str, Any]:
    """A valid chat body plus ``fields``."""
    return {"model": "m", "messages": MESSAGES, **fields}


def refusal(body: dict[str, Any] | bytes, endpoint: Endpoint = Endpoint.CHAT) -> InvalidRequestBody:
    """The 400 that decoding ``body`` raises."""
    with pytest.raises(InvalidRequestBody) as caught:
        decode(exchange(body, endpoint))
    assert caught.value.http_status == 400
    return caught.value


def test_a_valid_chat_body_fills_the_exchange() -> None:
    """A valid chat body becomes the payload, its stream flags and its unknown fields."""
    ex = exchange(chat(stream=True, stream_options={"include_usage": True}, top_k=3))
    decode(ex)
    assert ex.payload["messages"] == MESSAGES
    assert (ex.stream, ex.include_usage, ex.extra_fields) == (True, True, ("top_k",))


def test_a_valid_embeddings_body_fills_the_exchange() -> None:
    """A valid embeddings body becomes the payload and is never a stream."""
    ex = exchange({"model": "m", "input": ["a", "b"], "dimensions": 8}, Endpoint.EMBEDDINGS)
    decode(ex)
    assert (ex.payload["input"], ex.stream, ex.extra_fields) == (["a", "b"], False, ())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 9_007_199_254_740_993),
        ("max_tokens", 2**63 - 1),
        ("max_tokens", 2**64 - 1),
        ("max_tokens", MAX_TOKEN_COUNT + 1),
        ("max_completion_tokens", MAX_TOKEN_COUNT + 1),
        ("max_tokens", 0),
        ("n", 0),
        ("n", 129),
        ("top_logprobs", -1),
        ("top_logprobs", 21),
        ("seed", 2**63),
    ],
)
def test_a_chat_integer_out_of_range_is_refused_naming_the_field(field: str, value: int) -> None:
    """A chat integer outside its range is a 400 naming the field and the range."""
    error = refusal(chat(**{field: value}))
    assert error.param == field
    low, high = INTEGER_RANGES[field]
    assert f"between {low} and {high}" in error.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 1),
        ("max_tokens", MAX_TOKEN_COUNT),
        ("max_completion_tokens", MAX_TOKEN_COUNT),
        ("n", 128),
        ("top_logprobs", 0),
        ("top_logprobs", 20),
        ("seed", 2**63 - 1),
        ("seed", -(2**63)),
    ],
)
def test_a_chat_integer_at_the_edge_of_its_range_is_accepted(field: str, value: int) -> None:
    """The bounds themselves are valid values."""
    ex = exchange(chat(**{field: value}))
    decode(ex)
    assert ex.payload[field] == value


@pytest.mark.parametrize("value", [0, 65_537, 2**64 - 1])
def test_embedding_dimensions_out_of_range_are_refused(value: int) -> None:
    """Embedding ``dimensions`` must be between 1 and 65,536."""
    body = {"model": "m", "input": "x", "dimensions": value}
    assert refusal(body, Endpoint.EMBEDDINGS).param == "dimensions"


@pytest.mark.parametrize("value", [2**64, 1e30, 2.5, "8", True])
def test_a_token_count_that_is_not_an_integer_is_refused(value: Any) -> None:
    """A float (also an integer too wide to parse as one), a string or a boolean is not a token count."""
    raw = b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": ' + str(value).encode() + b"}"
    body = raw if isinstance(value, int) and not isinstance(value, bool) else chat(max_tokens=value)
    assert refusal(body).param == "max_tokens"


@pytest.mark.parametrize("field", ["stream", "logprobs", "parallel_tool_calls", "store"])
@pytest.mark.parametrize("value", ["no", "true", 0, 1, [], {}])
def test_a_boolean_field_takes_only_true_or_false(field: str, value: Any) -> None:
    """Booleans are strict: a string, a number or a container is a 400 naming the field."""
    error = refusal(chat(**{field: value}))
    assert error.param == field
    assert "a boolean" in error.message


@pytest.mark.parametrize("value", ["no", "yes", 0, 1, "false"])
def test_include_usage_takes_only_true_or_false(value: Any) -> None:
    """``stream_options.include_usage: "no"`` is a 400 naming the nested field, not a yes."""
    error = refusal(chat(stream=True, stream_options={"include_usage": value}))
    assert error.param == "stream_options.include_usage"


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (None, False)])
def test_include_usage_is_read_as_given(value: bool | None, expected: bool) -> None:
    """A boolean (or null) ``include_usage`` decides whether the client sees the usage chunk."""
    ex = exchange(chat(stream=True, stream_options={"include_usage": value}))
    decode(ex)
    assert ex.include_usage is expected


@pytest.mark.parametrize("bias", [{"50256": 101}, {"50256": -101}, {"50256": "x"}, {"50256": True}])
def test_logit_bias_values_are_numbers_within_100(bias: dict[str, Any]) -> None:
    """A logit bias outside -100..100, or not a number, is a 400 naming the token."""
    assert refusal(chat(logit_bias=bias)).param == "logit_bias.50256"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        (chat(model=" "), "model"),
        ({"model": "m"}, "messages"),
        (chat(messages=[]), "messages"),
        (chat(messages=[{"content": "x"}]), "messages[0]"),
        (chat(temperature="hot"), "temperature"),
        (chat(temperature=True), "temperature"),
    ],
)
def test_a_missing_or_ill_typed_chat_field_is_named(body: dict[str, Any], param: str) -> None:
    """Required fields, message shape and field types are checked, naming the field."""
    assert refusal(body).param == param


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff"])
def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    """Anything but a JSON object is a 400 without a field."""
    assert refusal(raw).param is None


@pytest.mark.parametrize("value", ["many", 2**64 - 1, [1]])
def test_a_chat_field_sent_to_embeddings_is_set_aside_not_range_checked(value: Any) -> None:
    """``n`` is not an embeddings field: whatever its value, it is an unknown field, not a 500."""
    ex = exchange({"model": "m", "input": "x", "n": value}, Endpoint.EMBEDDINGS)
    decode(ex)
    assert ex.extra_fields == ("n",)
