"""One usage record per OpenAI-compatible request, with the right outcome, tokens and cost."""

from __future__ import annotations

import httpx
import openai
import pytest

from odock import estimate
from tests.conftest import Gateway, Tenant
from tests.fakes.openai_server import DRIP_TEXT, FakeOpenAI
from tests.integration.conftest import MESSAGES, only_usage_record, openai_tenant, sdk, usage_records

# USD per 1K tokens; the fake's usage (21 prompt of which 8 cached, 9 completion of which 2
# reasoning) then costs 13*2,000 + 8*1,000 + 7*8,000 + 2*12,000 = 114,000 nanos.
PRICING = {
    "input": {"text_cost_per_1k_tokens": 0.002},
    "output": {"text_cost_per_1k_tokens": 0.008, "reasoning_cost_per_1k_tokens": 0.012},
    "cached_input_discount_percent": 50,
    "embeddings_cost_per_1k_tokens": 0.0001,
}
CHAT_COST_NANOS = 114_000


def _priced_tenant(
    gateway: Gateway, fake: FakeOpenAI, slug: str = "gpt-4o", model_type: str = "chat"
) -> Tenant:
    return openai_tenant(gateway, fake, slug=slug, pricing=PRICING, model_type=model_type)


@pytest.mark.parametrize("stream", [False, True])
def test_success_record(openai_gateway: Gateway, fake_openai: FakeOpenAI, stream: bool) -> None:
    """A served chat is recorded once as a success with the provider's tokens and their cost."""
    tenant = _priced_tenant(openai_gateway, fake_openai)
    raw = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, stream=stream
    )
    if stream:
        list(raw.parse())
    record = only_usage_record(openai_gateway, raw.headers["x-request-id"])
    assert (record.status, record.http_status, record.error_code) == ("success", 200, None)
    assert record.stream is stream
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (21, 9, 30)
    assert (record.cached_tokens, record.reasoning_tokens) == (8, 2)
    assert record.total_cost_nanos_usd == CHAT_COST_NANOS
    assert record.model == tenant.model
    assert record.model_id == tenant.model_id
    assert record.api_key_id == tenant.key_id
    assert record.provider == "openai"
    assert record.endpoint == "/v1/chat/completions"
    assert record.metadata_["usage_estimated"] is False
    assert record.provider_request_id is not None
    assert record.provider_request_id.startswith("req_fake_")
    if stream:
        assert record.time_to_first_token_ms is not None


def test_embeddings_record(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Embeddings are recorded with their input tokens at the embeddings rate."""
    tenant = _priced_tenant(
        openai_gateway, fake_openai, slug="text-embedding-3-small", model_type="embeddings"
    )
    raw = sdk(openai_gateway, tenant.secret).embeddings.with_raw_response.create(
        model=tenant.model, input=["a", "b", "c"]
    )
    record = only_usage_record(openai_gateway, raw.headers["x-request-id"])
    assert (record.status, record.endpoint) == ("success", "/v1/embeddings")
    assert (record.prompt_tokens, record.completion_tokens) == (15, 0)
    assert record.total_cost_nanos_usd == 15 * 100  # 15 tokens at $0.0001/1K


@pytest.mark.parametrize(
    ("slug", "http_status", "code"),
    [("fake-error-429", 429, "upstream_rate_limited"), ("fake-error-500", 502, "upstream_error")],
)
def test_upstream_error_record(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, slug: str, http_status: int, code: str
) -> None:
    """An upstream failure is recorded once as an error with its status and code, and no tokens."""
    tenant = _priced_tenant(openai_gateway, fake_openai, slug=slug)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    record = only_usage_record(openai_gateway, caught.value.response.headers["x-request-id"])
    assert (record.status, record.http_status, record.error_code) == ("error", http_status, code)
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (0, 0, 0)
    assert record.total_cost_nanos_usd is None
    assert record.metadata_["error_message"]


def test_rejection_after_authentication_record(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A request refused after the key was known is recorded with the refusal's status and code."""
    tenant = _priced_tenant(openai_gateway, fake_openai)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model="nope", messages=MESSAGES)
    record = only_usage_record(openai_gateway, caught.value.response.headers["x-request-id"])
    assert (record.status, record.http_status, record.error_code) == ("error", 400, "model_not_found")
    assert record.model_id is None


def test_a_nul_in_the_model_name_does_not_stop_usage_recording(
    openai_gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A model name with a NUL (which PostgreSQL refuses) is recorded with U+FFFD; so is the next call."""
    tenant = _priced_tenant(openai_gateway, fake_openai)
    client = sdk(openai_gateway, tenant.secret)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt\x00x", messages=MESSAGES)
    refused = only_usage_record(openai_gateway, caught.value.response.headers["x-request-id"])
    assert (refused.error_code, refused.model) == ("model_not_found", "gpt\ufffdx")
    served = client.chat.completions.with_raw_response.create(model=tenant.model, messages=MESSAGES)
    assert only_usage_record(openai_gateway, served.headers["x-request-id"]).status == "success"


def test_stream_cut_mid_answer_record(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A stream the upstream broke is recorded as an error with the streamed tokens estimated."""
    tenant = _priced_tenant(openai_gateway, fake_openai, slug="fake-broken-stream")
    stream = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream.parse())
    record = only_usage_record(openai_gateway, stream.headers["x-request-id"])
    assert (record.status, record.http_status, record.error_code) == (
        "error",
        502,
        "upstream_stream_interrupted",
    )
    streamed = "Hello from the"  # the three content chunks sent before the cut
    assert record.completion_tokens == max(3, estimate.tokens_for_text(len(streamed)))
    assert record.prompt_tokens == estimate.prompt_tokens(MESSAGES)
    assert record.metadata_["usage_estimated"] is True
    assert record.total_cost_nanos_usd is not None
    assert record.total_cost_nanos_usd > 0


def test_client_disconnect_mid_stream_record(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A client leaving mid-stream releases the upstream and is recorded with what was streamed."""
    tenant = _priced_tenant(openai_gateway, fake_openai, slug="fake-slow-stream")
    body = {"model": tenant.model, "messages": MESSAGES, "stream": True}
    headers = {"authorization": f"Bearer {tenant.secret}"}
    read = 0
    with (
        httpx.Client(base_url=openai_gateway.base_url, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if DRIP_TEXT in line:
                read += 1
            if read == 3:
                break
    fake_openai.wait_until(lambda fake: fake.streams_abandoned == 1)
    sent = fake_openai.drip_chunks_sent[0]
    assert sent < fake_openai.drip_chunks  # the upstream stream was cut, not drained
    record = only_usage_record(openai_gateway, request_id)
    assert (record.status, record.http_status, record.error_code) == ("client_disconnected", 499, None)
    # Each chunk is four characters, so the estimate is one token per chunk the gateway relayed.
    assert read <= record.completion_tokens <= sent
    assert record.prompt_tokens == estimate.prompt_tokens(MESSAGES)
    assert record.metadata_["usage_estimated"] is True
    assert record.total_cost_nanos_usd is not None
    assert record.total_cost_nanos_usd > 0


def test_each_request_recorded_once(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Repeated flushes never duplicate a request's record."""
    tenant = _priced_tenant(openai_gateway, fake_openai)
    client = sdk(openai_gateway, tenant.secret)
    ids = [
        client.chat.completions.with_raw_response.create(model=tenant.model, messages=MESSAGES).headers[
            "x-request-id"
        ]
        for _ in range(3)
    ]
    for request_id in ids:
        assert len(usage_records(openai_gateway, request_id)) == 1
    openai_gateway.flush_usage()
    assert [len(usage_records(openai_gateway, request_id)) for request_id in ids] == [1, 1, 1]
