"""The built-in mock provider behaves as docs/providers.md says (issue #17, defect 16)."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway, Tenant, provision
from tests.integration.conftest import only_usage_record, sdk

TEXT = "one two three"
MESSAGES = [{"role": "user", "content": "hi"}]  # 4 per message + 1 for "hi": 5 prompt tokens


@pytest.fixture
def mock_tenant(gateway: Gateway) -> Tenant:
    """A tenant whose mock model answers seven words of ``TEXT``."""
    return provision(gateway, provider_config={"text": TEXT, "completion_tokens": 7})


@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
def test_a_unary_answer_is_cut_at_the_requested_limit(
    gateway: Gateway, mock_tenant: Tenant, limit_field: str
) -> None:
    """A unary answer stops at the request's token limit with finish_reason length, and usage says so."""
    raw = sdk(gateway, mock_tenant.secret).chat.completions.with_raw_response.create(
        model=mock_tenant.model, messages=MESSAGES, **{limit_field: 4}
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "one two three one"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 4)
    assert only_usage_record(gateway, raw.headers["x-request-id"]).completion_tokens == 4


def test_a_streamed_answer_is_cut_at_the_requested_limit(gateway: Gateway, mock_tenant: Tenant) -> None:
    """A stream stops at max_tokens words, finishes with length, and its usage chunk counts them."""
    stream = sdk(gateway, mock_tenant.secret).chat.completions.create(
        model=mock_tenant.model,
        messages=MESSAGES,
        max_tokens=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 2)


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_within_the_limit_stops_on_its_own(
    gateway: Gateway, mock_tenant: Tenant, stream: bool
) -> None:
    """Without a limit, or under a larger one, the answer has completion_tokens words and ends with stop."""
    client = sdk(gateway, mock_tenant.secret)
    if stream:
        chunks = list(
            client.chat.completions.create(
                model=mock_tenant.model, messages=MESSAGES, max_tokens=50, stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        reply = client.chat.completions.create(model=mock_tenant.model, messages=MESSAGES)
        text, finishes = reply.choices[0].message.content or "", [reply.choices[0].finish_reason]
    assert text == "one two three one two three one"
    assert finishes == ["stop"]
