"""Client dialects beyond the matrix: pass-through fidelity, token counting, model lists,
embeddings, errors in each dialect's shape, refusals, and governance through every SDK.

One gateway (active backend) and one set of fake vendors serve the module; tests that change
governance make their own organisation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google.genai import errors as gerrors
from google.genai import types as gtypes

from odock.app import create_app
from odock.budgets.windows import Period
from odock.providers.tables import ProviderType
from odock.surfaces import gemini as gemini_surface
from tests.conftest import BACKEND, Gateway, provision, settings_factory
from tests.fakes import script
from tests.fakes.anthropic_server import count_of
from tests.integration.conftest import only_usage_record
from tests.support.dialects import (
    ANTHROPIC_KEY,
    World,
    anthropic_client,
    fake_vendors,
    gemini_client,
    openai_client,
    three_vendor_world,
)
from tests.support.server import ThreadedServer

EXTRA = {
    "anthropic-429": ("anthropic", "fake-error-429"),
    "anthropic-stream-error": ("anthropic", "fake-stream-error"),
    "gemini-429": ("gemini", "fake-error-429"),
}
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """One gateway on the active backend that can store provider keys."""
    pair = request.getfixturevalue("provider_keypair")
    settings = settings_factory(BACKEND, tmp_path_factory, request)(
        provider_key_encryption_key_id=pair.key_id,
        provider_key_encryption_private_key=pair.private_pem,
    )
    app = create_app(settings)
    served = Gateway(server=ThreadedServer(app).start(), app=app)
    yield served
    served.server.stop()


@pytest.fixture(scope="module")
def vendors() -> Iterator[Any]:
    """The three fake vendors."""
    with fake_vendors() as running:
        yield running


@pytest.fixture(scope="module")
def world(gateway: Gateway, vendors: Any) -> World:
    """An organisation calling the three vendors, with their error models too."""
    return three_vendor_world(gateway, vendors, extra=EXTRA)


# --- pass-through ----------------------------------------------------------------------------


def test_an_anthropic_request_to_an_anthropic_model_passes_through_unchanged(world: World) -> None:
    """Fields the gateway does not translate (cache_control, metadata) reach Anthropic as sent,
    with only the model renamed; anthropic-beta is forwarded."""
    body: dict[str, Any] = {
        "model": world.model("anthropic"),
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hello there"}],
        "metadata": {"user_id": "u-1"},
    }
    answer = httpx.post(
        world.gateway.base_url + "/v1/messages",
        json=body,
        headers={"x-api-key": world.secret, "anthropic-version": "2023-06-01", "anthropic-beta": "tools-1"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    received = world.anthropic.last_request()
    assert received.body == {**body, "model": "fake-echo"}
    assert received.headers["anthropic-beta"] == "tools-1"
    assert received.headers["x-api-key"] == ANTHROPIC_KEY
    assert answer.json()["content"][0]["text"] == "Echo: Hello there"


def test_a_chat_request_to_an_anthropic_model_is_translated(world: World) -> None:
    """An OpenAI chat body reaches Anthropic as a Messages body (system split out, max_tokens set)."""
    answer = openai_client(world).chat.completions.create(
        model=world.model("anthropic"),
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],  # type: ignore[list-item]
    )
    assert answer.choices[0].message.content == "Echo: Hello there"
    received = world.anthropic.last_request().body
    assert received["system"] == [{"type": "text", "text": "Be brief."}]
    assert received["messages"][0]["role"] == "user"
    assert received["max_tokens"] > 0


# --- Anthropic SDK features --------------------------------------------------------------------


def test_anthropic_count_tokens_asks_anthropic_and_estimates_elsewhere(world: World) -> None:
    """count_tokens is the provider's own count on an Anthropic model, the gateway's estimate
    (positive) on another vendor's."""
    client = anthropic_client(world)
    counted = client.messages.count_tokens(model=world.model("anthropic"), messages=HELLO)  # type: ignore[arg-type]
    assert world.anthropic.last_request().path == "/v1/messages/count_tokens"
    assert counted.input_tokens == count_of({"model": "fake-echo", "messages": HELLO})  # the fake's count
    estimated = client.messages.count_tokens(model=world.model("openai"), messages=HELLO)  # type: ignore[arg-type]
    assert estimated.input_tokens > 0


def test_anthropic_errors_reach_the_sdk_as_its_own_exceptions(world: World) -> None:
    """An upstream 429 is anthropic.RateLimitError with Retry-After; an Odock refusal keeps its code."""
    client = anthropic_client(world)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="anthropic-429", max_tokens=16, messages=HELLO)  # type: ignore[arg-type]
    assert limited.value.response.headers.get("retry-after")
    assert limited.value.body["error"]["code"] == "upstream_rate_limited"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(model="no-such-model", max_tokens=16, messages=HELLO)  # type: ignore[arg-type]
    assert unknown.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "model 'no-such-model' does not exist",
            "code": "model_not_found",
            "param": "model",
        },
    }
    bad_key = anthropic.Anthropic(base_url=world.gateway.base_url, api_key="odk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad_key.messages.create(model=world.model("anthropic"), max_tokens=16, messages=HELLO)  # type: ignore[arg-type]


def test_a_stream_broken_upstream_ends_with_an_anthropic_error_event(world: World) -> None:
    """An upstream error after the stream began is an in-band ``error`` event the SDK raises."""
    client = anthropic_client(world)
    request: Any = {"model": "anthropic-stream-error", "max_tokens": 64, "messages": HELLO}
    with pytest.raises(anthropic.APIStatusError) as broken, client.messages.stream(**request) as events:
        for _ in events:
            pass
    error = broken.value.body["error"]  # type: ignore[index]
    assert error["code"].startswith("upstream"), error


def test_anthropic_models_list(world: World) -> None:
    """GET /v1/models with anthropic-version answers in Anthropic's shape."""
    page = anthropic_client(world).models.list()
    names = {model.id for model in page.data}
    assert {world.model("anthropic"), world.model("openai")} <= names


# --- Gemini SDK features -----------------------------------------------------------------------


@pytest.mark.parametrize("upstream", ["gemini", "openai"])
def test_gemini_embeddings_single_and_batch(world: World, upstream: str) -> None:
    """embed_content answers one vector per input, from Gemini itself or translated from OpenAI."""
    client = gemini_client(world)
    one = client.models.embed_content(model=f"embed-{upstream}", contents="hello")
    assert one.embeddings is not None
    assert [len(e.values or []) > 0 for e in one.embeddings] == [True]
    assert one.sdk_http_response is not None
    assert one.sdk_http_response.headers is not None
    record = only_usage_record(world.gateway, one.sdk_http_response.headers["x-request-id"])
    assert record.prompt_tokens > 0  # Gemini reports no embeddings usage: the input is estimated
    batch = [gtypes.Content(parts=[gtypes.Part(text=text)]) for text in ("a", "b", "c")]
    many = client.models.embed_content(model=f"embed-{upstream}", contents=batch)
    assert many.embeddings is not None
    assert len(many.embeddings) == 3


def test_gemini_count_tokens_and_model_lists(world: World) -> None:
    """countTokens is Gemini's own count on a Gemini model; models list on v1beta and v1."""
    client = gemini_client(world)
    counted = client.models.count_tokens(model=world.model("gemini"), contents="Hello there")
    assert world.gemini.last_request().path.endswith(":countTokens")
    assert counted.total_tokens is not None
    assert counted.total_tokens > 0
    for version in ("v1beta", "v1"):
        versioned = gemini_client(world, version)
        names = {m.name for m in versioned.models.list()}
        assert f"models/{world.model('gemini')}" in names


def test_gemini_errors_and_the_query_key(world: World) -> None:
    """An upstream 429 is google-genai's ClientError 429; ``?key=`` authenticates like the header;
    a stream without alt=sse is one JSON array."""
    client = gemini_client(world)
    with pytest.raises(gerrors.ClientError) as limited:
        client.models.generate_content(model="gemini-429", contents="hi")
    assert limited.value.code == 429
    url = f"{world.gateway.base_url}/v1beta/models/{world.model('gemini')}:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}
    answer = httpx.post(url, params={"key": world.secret}, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    chunks = answer.json()
    assert isinstance(chunks, list)
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == "Echo: Hello there"
    refused = httpx.post(url, params={"key": "wrong"}, json=body, timeout=30)
    assert refused.status_code == 401
    assert refused.json()["error"]["status"] == "UNAUTHENTICATED"


# --- Responses --------------------------------------------------------------------------------


def test_previous_response_id_passes_through_to_openai_and_is_refused_when_translated(world: World) -> None:
    """An OpenAI upstream keeps the conversation (pass-through); a translated upstream cannot."""
    client = openai_client(world)
    first = client.responses.create(model=world.model("openai"), input="Hello there")
    second = client.responses.create(
        model=world.model("openai"), input="Again", previous_response_id=first.id
    )
    assert second.output_text == "Echo: Again"
    assert world.openai.responses.received[-1]["previous_response_id"] == first.id
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=world.model("anthropic"), input="Again", previous_response_id=first.id)
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"]) == ("unsupported_parameter", "previous_response_id")


# --- refusals ---------------------------------------------------------------------------------


def test_a_field_another_vendor_cannot_take_is_refused_by_name(world: World) -> None:
    """``seed`` has no Anthropic equivalent: 400 unsupported_parameter naming it, nothing sent."""
    before = len(world.anthropic.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(world).chat.completions.create(model=world.model("anthropic"), messages=HELLO, seed=7)  # type: ignore[arg-type]
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"]) == ("unsupported_parameter", "seed")
    assert len(world.anthropic.requests) == before


def test_the_unified_provider_pin_must_match_the_model(world: World) -> None:
    """``provider: anthropic`` on an OpenAI model is 400 provider_not_allowed; matching passes."""
    url = world.gateway.base_url + "/v1/llm/chat"
    headers = {"authorization": f"Bearer {world.secret}"}
    body = {"model": world.model("openai"), "messages": HELLO, "provider": "anthropic"}
    refused = httpx.post(url, json=body, headers=headers, timeout=30)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "provider_not_allowed")
    answer = httpx.post(url, json={**body, "provider": "openai"}, headers=headers, timeout=30)
    assert answer.status_code == 200
    assert (answer.json()["provider"], answer.json()["content"]) == ("openai", "Echo: Hello there")
    pinned = {"model": world.model("gemini"), "messages": HELLO, "provider": "gemini"}
    answer = httpx.post(url, json=pinned, headers=headers, timeout=30)
    assert answer.json()["provider"] == "gemini"  # named as the pin names it, not GOOGLE


def test_strict_provider_family_refuses_translation_on_native_endpoints(
    gateway: Gateway, vendors: Any
) -> None:
    """With strict_provider_family, /v1/chat/completions refuses an Anthropic model; the unified
    endpoint still translates."""
    strict = three_vendor_world(gateway, vendors, strict_provider_family=True)
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(strict).chat.completions.create(model=strict.model("anthropic"), messages=HELLO)  # type: ignore[arg-type]
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["code"] == "provider_not_allowed"
    answer = httpx.post(
        strict.gateway.base_url + "/v1/llm/chat",
        json={"model": strict.model("anthropic"), "messages": HELLO},
        headers={"authorization": f"Bearer {strict.secret}"},
        timeout=30,
    )
    assert answer.status_code == 200
    same_family = openai_client(strict).chat.completions.create(model=strict.model("openai"), messages=HELLO)  # type: ignore[arg-type]
    assert same_family.choices[0].message.content == "Echo: Hello there"


# --- governance and usage ----------------------------------------------------------------------

OUTPUT_ONLY = {"input": {"text_cost_per_1k_tokens": 0}, "output": {"text_cost_per_1k_tokens": 1.0}}
ECHO_WORDS = 3  # "Echo: Hello there"


def test_a_budget_fitting_k_requests_admits_k_through_the_anthropic_sdk(
    gateway: Gateway, vendors: Any
) -> None:
    """Output priced at 1e6 nanos a token, max_tokens 3 = the echo's 3 tokens: each request
    reserves and settles 3e6 nanos, so a budget of 4 of them admits exactly 4."""
    _, fake_anthropic, _ = vendors
    tenant = provision(
        gateway,
        provider_type=ProviderType.ANTHROPIC,
        base_url=fake_anthropic.base_url,
        provider_secret=ANTHROPIC_KEY,
        slug=script.ECHO_MODEL,
        pricing=OUTPUT_ONLY,
    )
    cost = ECHO_WORDS * 1_000_000
    gateway.run(
        gateway.runtime.budgets.create_budget(
            tenant.organisation_id, "budget", amount_nanos_usd=4 * cost, period=Period.DAILY
        )
    )
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=tenant.secret, max_retries=0)
    request: Any = {"model": tenant.model, "max_tokens": ECHO_WORDS, "messages": HELLO}
    for _ in range(4):
        client.messages.create(**request)
    for _ in range(2):
        with pytest.raises(anthropic.APIStatusError) as refused:
            client.messages.create(**request)
        assert refused.value.status_code == 402
        assert refused.value.body["error"]["code"] == "budget_exceeded"  # type: ignore[index]


def test_tpm_counts_the_tokens_gemini_reported(world: World, gateway: Gateway) -> None:
    """After one Gemini request, a TPM limit one token short of (its reported tokens + the next
    request's reservation) refuses the next: the counter holds Gemini's count, not the estimate."""
    client = gemini_client(world)
    config = gtypes.GenerateContentConfig(max_output_tokens=ECHO_WORDS)
    keys = gateway.runtime.control.keys
    gateway.run(keys.update(world.key_id, policies={"ratelimit": {"tokens": {"per_minute": 100_000}}}))
    try:
        _prove_tpm(world, gateway, client, config)
    finally:
        gateway.run(keys.update(world.key_id, policies={}))


def _prove_tpm(world: World, gateway: Gateway, client: Any, config: gtypes.GenerateContentConfig) -> None:
    first = client.models.generate_content(model=world.model("gemini"), contents="Hello there", config=config)
    assert first.usage_metadata is not None
    reported = (first.usage_metadata.prompt_token_count or 0) + (
        first.usage_metadata.candidates_token_count or 0
    )
    estimate = gemini_surface.estimate_input_tokens(world.gemini.last_request().body)
    reservation = estimate + ECHO_WORDS
    assert reported == script.PROMPT_TOKENS + ECHO_WORDS
    assert 2 * reservation < reported + reservation - 1, "an estimate-based counter would admit too"
    limit = reported + reservation - 1
    policy = {"ratelimit": {"tokens": {"per_minute": limit}}}
    gateway.run(gateway.runtime.control.keys.update(world.key_id, policies=policy))
    with pytest.raises(gerrors.ClientError) as refused:
        client.models.generate_content(model=world.model("gemini"), contents="Hello there", config=config)
    assert refused.value.code == 429
    assert "tpm_exceeded" in json.dumps(refused.value.details)


def test_a_translated_request_is_metered_with_the_vendor_token_classes(world: World) -> None:
    """The usage record of an OpenAI chat call to Anthropic names the provider and the dialect and
    keeps cached tokens apart (Anthropic's cache reads), billed at the model's prices."""
    answer = openai_client(world).chat.completions.with_raw_response.create(
        model=world.model("anthropic"),
        messages=HELLO,  # type: ignore[arg-type]
    )
    record = only_usage_record(world.gateway, answer.headers["x-request-id"])
    assert (record.provider, record.endpoint) == ("anthropic", "/v1/chat/completions")
    assert record.metadata_["dialect"] == "openai_chat"
    assert (record.prompt_tokens, record.cached_tokens, record.completion_tokens) == (
        script.PROMPT_TOKENS,
        script.CACHED_TOKENS,
        ECHO_WORDS,
    )
    assert record.total_cost_nanos_usd == script.PROMPT_TOKENS * 2_000 + ECHO_WORDS * 8_000
