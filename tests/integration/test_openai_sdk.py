"""The OpenAI-compatible surface, driven by the official OpenAI SDK against a fake OpenAI upstream."""

from __future__ import annotations

import re

import openai
import pytest

from odock.providers.tables import ProviderType
from tests.conftest import Gateway, Tenant, provision
from tests.fakes.openai_server import LARGE_EVENT_TEXT, REPLY, USAGE, FakeOpenAI, embedding_of
from tests.integration.conftest import (
    MESSAGES,
    UPSTREAM_KEY,
    only_usage_record,
    openai_tenant,
    sdk,
)

SLUG = "gpt-4o-2024-08-06"


@pytest.fixture
def tenant(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> Tenant:
    """A tenant whose model is served by the fake OpenAI server under an upstream slug."""
    return openai_tenant(openai_gateway, fake_openai, slug=SLUG)


def test_chat_completion_round_trip(openai_gateway: Gateway, tenant: Tenant) -> None:
    """A chat completion comes back through the gateway exactly as the upstream answered it."""
    reply = sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == REPLY
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == USAGE["prompt_tokens"]
    assert reply.usage.completion_tokens == USAGE["completion_tokens"]
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 8
    assert reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens == 2


def test_upstream_receives_slug_decrypted_key_and_request_id(
    openai_gateway: Gateway, tenant: Tenant, fake_openai: FakeOpenAI
) -> None:
    """The upstream request carries the model slug, the decrypted provider key and the request id."""
    raw = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, temperature=0.2
    )
    sent = fake_openai.last_request()
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {"model": SLUG, "messages": MESSAGES, "temperature": 0.2}
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.headers["x-request-id"] == raw.headers["x-request-id"]
    # The answer is forwarded byte for byte, so it must not come back compressed.
    assert sent.headers["accept-encoding"] == "identity"
    assert tenant.secret not in str(sent.headers)


def test_stream_with_include_usage_ends_with_usage_chunk(
    openai_gateway: Gateway, tenant: Tenant, fake_openai: FakeOpenAI
) -> None:
    """A client that asks for stream usage gets OpenAI's final usage chunk with no choices."""
    stream = sdk(openai_gateway, tenant.secret).chat.completions.create(
        model=tenant.model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == USAGE["total_tokens"]
    assert all(c.usage is None for c in chunks[:-1])
    assert fake_openai.last_request().body["stream_options"] == {"include_usage": True}


def test_stream_without_include_usage_hides_usage_but_meters_it(
    openai_gateway: Gateway, tenant: Tenant, fake_openai: FakeOpenAI
) -> None:
    """Usage is always requested upstream, stripped for a client that did not ask, and still recorded."""
    raw = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, stream=True
    )
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert fake_openai.last_request().body["stream_options"] == {"include_usage": True}
    record = only_usage_record(openai_gateway, raw.headers["x-request-id"])
    assert record.status == "success"
    assert record.stream is True
    assert (record.prompt_tokens, record.completion_tokens) == (21, 9)


def test_embeddings_default_base64(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Embeddings requested the SDK's default way (base64) decode to the upstream's vectors."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug=SLUG, model_type="embeddings")
    result = sdk(openai_gateway, tenant.secret).embeddings.create(model=tenant.model, input=["alpha", "beta"])
    assert [d.embedding for d in result.data] == [embedding_of("alpha", 8), embedding_of("beta", 8)]
    assert result.usage.prompt_tokens == 10
    sent = fake_openai.last_request()
    assert sent.path == "/v1/embeddings"
    assert sent.body["model"] == SLUG
    assert sent.body["encoding_format"] == "base64"


def test_embeddings_float_with_dimensions(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Float embeddings with a dimensions parameter pass through unchanged."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug=SLUG, model_type="embeddings")
    result = sdk(openai_gateway, tenant.secret).embeddings.create(
        model=tenant.model, input="gamma", encoding_format="float", dimensions=4
    )
    assert result.data[0].embedding == embedding_of("gamma", 4)
    assert fake_openai.last_request().body["dimensions"] == 4


def test_models_lists_only_granted_models(openai_gateway: Gateway, tenant: Tenant) -> None:
    """GET /v1/models lists the models the key may call and nothing else of its organisation."""
    control = openai_gateway.runtime.control
    openai_gateway.run(
        control.models.create(tenant.organisation_id, "not-granted", provider_id=tenant.provider_id)
    )
    models = sdk(openai_gateway, tenant.secret).models.list()
    assert [m.id for m in models.data] == [tenant.model]
    assert models.data[0].object == "model"


def test_valid_inbound_request_id_is_honoured(
    openai_gateway: Gateway, tenant: Tenant, fake_openai: FakeOpenAI
) -> None:
    """A well-formed X-Request-Id is kept: returned, forwarded upstream and used for the usage record."""
    raw = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, extra_headers={"X-Request-Id": "trace-42.a:b"}
    )
    assert raw.headers["x-request-id"] == "trace-42.a:b"
    assert fake_openai.last_request().headers["x-request-id"] == "trace-42.a:b"
    assert only_usage_record(openai_gateway, "trace-42.a:b").http_status == 200


@pytest.mark.parametrize("inbound", ["has spaces", "x" * 129, "-leading-dash", "semi;colon"])
def test_invalid_inbound_request_id_is_replaced(
    openai_gateway: Gateway, tenant: Tenant, inbound: str
) -> None:
    """A malformed X-Request-Id is replaced by a fresh 32-hex-character id."""
    raw = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, extra_headers={"X-Request-Id": inbound}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", raw.headers["x-request-id"])


@pytest.mark.parametrize("stream", [False, True])
def test_overhead_header_on_answers(openai_gateway: Gateway, tenant: Tenant, stream: bool) -> None:
    """Unary and streamed answers carry x-odock-overhead-ms as a non-negative number."""
    raw = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, stream=stream
    )
    assert float(raw.headers["x-odock-overhead-ms"]) >= 0


def test_overhead_header_on_errors(openai_gateway: Gateway, tenant: Tenant) -> None:
    """A pipeline rejection also carries x-odock-overhead-ms and x-request-id."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model="no-such-model", messages=MESSAGES)
    response = caught.value.response
    assert float(response.headers["x-odock-overhead-ms"]) >= 0
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_azure_deployment_path_and_api_key(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """An Azure OpenAI provider is called on its deployment path with api-version and an api-key header."""
    tenant = openai_tenant(
        openai_gateway,
        fake_openai,
        provider_type=ProviderType.AZURE_OPENAI,
        base_url=fake_openai.base_url,
        provider_config={"api_version": "2024-06-01"},
        slug="prod-gpt4o",
    )
    reply = sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert reply.choices[0].message.content == REPLY
    sent = fake_openai.last_request()
    assert sent.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert sent.query == {"api-version": "2024-06-01"}
    assert sent.headers["api-key"] == UPSTREAM_KEY
    assert "authorization" not in sent.headers


def test_azure_stream_with_prompt_filter_event(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Azure's choice-less prompt-filter event does not pass for usage, and the usage chunk still arrives."""
    tenant = openai_tenant(
        openai_gateway, fake_openai, provider_type=ProviderType.AZURE_OPENAI, base_url=fake_openai.base_url
    )
    raw = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage is not None
    assert fake_openai.last_request().query == {"api-version": "2024-10-21"}
    assert only_usage_record(openai_gateway, raw.headers["x-request-id"]).completion_tokens == 9


def test_azure_embeddings(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Azure embeddings go to the deployment's embeddings path."""
    tenant = openai_tenant(
        openai_gateway,
        fake_openai,
        provider_type=ProviderType.AZURE_OPENAI,
        base_url=fake_openai.base_url,
        slug="embed-small",
        model_type="embeddings",
    )
    result = sdk(openai_gateway, tenant.secret).embeddings.create(model=tenant.model, input="delta")
    assert result.data[0].embedding == embedding_of("delta", 8)
    assert fake_openai.last_request().path == "/openai/deployments/embed-small/embeddings"


def test_vllm_root_base_url_gets_v1(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A keyless vLLM provider configured with the server root is called under /v1 without credentials."""
    fake_openai.api_key = None
    tenant = provision(
        openai_gateway,
        provider_type=ProviderType.VLLM,
        base_url=fake_openai.base_url + "/",
        slug="meta-llama",
    )
    reply = sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert reply.choices[0].message.content == REPLY
    sent = fake_openai.last_request()
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "meta-llama"
    assert "authorization" not in sent.headers


def test_vllm_accepts_vendor_fields(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Fields outside the OpenAI API (vLLM sampling knobs) are forwarded to a vLLM provider."""
    fake_openai.api_key = None
    tenant = provision(openai_gateway, provider_type=ProviderType.VLLM, base_url=fake_openai.base_url)
    sdk(openai_gateway, tenant.secret).chat.completions.create(
        model=tenant.model, messages=MESSAGES, extra_body={"top_k": 5, "repetition_penalty": 1.1}
    )
    sent = fake_openai.last_request()
    assert sent.body["top_k"] == 5
    assert sent.body["repetition_penalty"] == 1.1


def test_large_stream_event_is_relayed(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A single 1 MiB stream event (bigger than aiohttp's line limit) reaches the client intact."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug="fake-large-event")
    stream = sdk(openai_gateway, tenant.secret).chat.completions.create(
        model=tenant.model, messages=MESSAGES, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == LARGE_EVENT_TEXT


def test_unusual_but_valid_sse_is_relayed(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """Comments, CRLF line ends and multi-line data events from upstream still make a valid stream."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug="fake-quirky-stream")
    raw = sdk(openai_gateway, tenant.secret).chat.completions.with_raw_response.create(
        model=tenant.model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage is not None
    assert only_usage_record(openai_gateway, raw.headers["x-request-id"]).status == "success"
