"""Every gateway and upstream failure reaches the OpenAI SDK as the right exception and error body."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import openai
import pytest

from odock.providers.service import ProviderChanges
from odock.providers.tables import ProviderType
from tests.conftest import Gateway, SettingsFactory, Tenant, provision
from tests.fakes.openai_server import DRIP_TEXT, FakeOpenAI
from tests.integration.conftest import MESSAGES, assert_error_response, openai_tenant, sdk
from tests.support.server import free_port

Break = Callable[[Gateway, Tenant], str]  # changes the tenant's state; returns the key to call with


def _wrong_key(gateway: Gateway, tenant: Tenant) -> str:
    return "sk_not_a_real_key"


def _revoked_key(gateway: Gateway, tenant: Tenant) -> str:
    gateway.run(gateway.runtime.control.keys.revoke(tenant.key_id))
    return tenant.secret


def _expired_key(gateway: Gateway, tenant: Tenant) -> str:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    issued = gateway.run(
        gateway.runtime.control.keys.create(
            tenant.organisation_id, "expired", expires_at=yesterday, models=[tenant.model]
        )
    )
    return str(issued.secret)


def _disabled_provider(gateway: Gateway, tenant: Tenant) -> str:
    gateway.run(gateway.runtime.control.providers.update(tenant.provider_id, ProviderChanges(enabled=False)))
    return tenant.secret


def _revoked_provider_key(gateway: Gateway, tenant: Tenant) -> str:
    control = gateway.runtime.control
    model = gateway.run(control.models.named(tenant.organisation_id, tenant.model))
    gateway.run(control.provider_keys.revoke(model.provider_api_key_id))
    return tenant.secret


@pytest.mark.parametrize(
    ("break_tenant", "error_class", "status", "code"),
    [
        (_wrong_key, openai.AuthenticationError, 401, "unauthorized"),
        (_revoked_key, openai.AuthenticationError, 401, "api_key_revoked"),
        (_expired_key, openai.AuthenticationError, 401, "api_key_expired"),
        (_disabled_provider, openai.PermissionDeniedError, 403, "provider_disabled"),
        (_revoked_provider_key, openai.PermissionDeniedError, 403, "provider_api_key_revoked"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_gateway_rejection_maps_to_sdk_error(
    openai_gateway: Gateway,
    fake_openai: FakeOpenAI,
    break_tenant: Break,
    error_class: type[openai.APIStatusError],
    status: int,
    code: str,
    stream: bool,
) -> None:
    """Key and provider rejections raise the SDK's matching exception with Odock's error body."""
    tenant = openai_tenant(openai_gateway, fake_openai)
    key = break_tenant(openai_gateway, tenant)
    with pytest.raises(error_class) as caught:
        sdk(openai_gateway, key).chat.completions.create(model=tenant.model, messages=MESSAGES, stream=stream)
    assert_error_response(caught.value, status=status, code=code)
    assert fake_openai.requests == []


def test_ungranted_model_is_permission_denied(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A key without a grant for the model gets PermissionDeniedError model_not_allowed."""
    tenant = openai_tenant(openai_gateway, fake_openai, grant=False)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert assert_error_response(caught.value, status=403, code="model_not_allowed")["param"] == "model"


def test_unknown_model_is_bad_request(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """An unknown model name gets BadRequestError model_not_found naming the model field."""
    tenant = openai_tenant(openai_gateway, fake_openai)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(openai_gateway, tenant.secret).embeddings.create(model="gpt-nope", input="x")
    assert assert_error_response(caught.value, status=400, code="model_not_found")["param"] == "model"


def test_invalid_body_is_bad_request(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A body the SDK sends but the API refuses (no messages) gets BadRequestError invalid_request_body."""
    tenant = openai_tenant(openai_gateway, fake_openai)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=[])
    assert assert_error_response(caught.value, status=400, code="invalid_request_body")["param"] == "messages"
    assert fake_openai.requests == []


def test_a_provider_type_without_an_adapter_is_bad_request(openai_gateway: Gateway) -> None:
    """A model served by a provider type the gateway cannot call yet is 400 provider_type_unsupported."""
    tenant = provision(openai_gateway, provider_type=ProviderType.HUGGINGFACE, base_url="http://127.0.0.1:9")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert_error_response(caught.value, status=400, code="provider_type_unsupported")


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rate_limit_keeps_retry_after(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, stream: bool
) -> None:
    """An upstream 429 is a RateLimitError with the provider's Retry-After and message."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug="fake-error-429")
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(
            model=tenant.model, messages=MESSAGES, stream=stream
        )
    error = assert_error_response(caught.value, status=429, code="upstream_rate_limited")
    assert caught.value.response.headers["retry-after"] == "7"
    assert error["message"].startswith("Rate limit reached")
    assert error["type"] == "rate_limit_error"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_server_error_is_bad_gateway(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, stream: bool
) -> None:
    """An upstream 500 is an InternalServerError with status 502 and code upstream_error."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug="fake-error-500")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(
            model=tenant.model, messages=MESSAGES, stream=stream
        )
    assert_error_response(caught.value, status=502, code="upstream_error")


def test_upstream_overload_keeps_retry_after(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """An upstream 503 is a 502 upstream_error that keeps the provider's Retry-After."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug="fake-error-503")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert_error_response(caught.value, status=502, code="upstream_error")
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_error_with_status_200_is_bad_gateway(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, stream: bool
) -> None:
    """An OpenAI error object sent with status 200 is reported as a 502 with the provider's message."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug="fake-error-200")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(
            model=tenant.model, messages=MESSAGES, stream=stream
        )
    error = assert_error_response(caught.value, status=502, code="upstream_error")
    assert error["message"].startswith("The server had an error")


def test_upstream_context_length_error_is_passed_on(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """An upstream 400 keeps its status, message and offending field for the caller."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug="fake-error-400")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    error = assert_error_response(caught.value, status=400, code="upstream_rejected")
    assert "maximum context length" in error["message"]
    assert error["param"] == "messages"


def test_upstream_rejecting_provider_key_is_bad_gateway(
    openai_gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A provider key the upstream refuses is the gateway's problem: 502 upstream_auth_failed, not a 401."""
    tenant = openai_tenant(openai_gateway, fake_openai, provider_secret="sk-wrong")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert_error_response(caught.value, status=502, code="upstream_auth_failed")
    assert fake_openai.last_request().headers["authorization"] == "Bearer sk-wrong"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_non_json_answer_is_bad_gateway(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, stream: bool
) -> None:
    """A 200 that is not JSON (or not an event stream) fails with a 502 before any byte is sent."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug="fake-not-json")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(
            model=tenant.model, messages=MESSAGES, stream=stream
        )
    assert_error_response(caught.value, status=502, code="upstream_error")


def test_unreachable_upstream_is_bad_gateway(openai_gateway: Gateway) -> None:
    """A provider nobody listens on gives 502 upstream_unavailable."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    tenant = provision(
        openai_gateway, provider_type=ProviderType.OPENAI, base_url=dead, provider_secret="sk-x"
    )
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert_error_response(caught.value, status=502, code="upstream_unavailable")


@pytest.fixture
def impatient_gateway(gateway_factory: Callable[..., Gateway], keyed_settings: SettingsFactory) -> Gateway:
    """A gateway that gives upstreams half a second."""
    return gateway_factory(keyed_settings(upstream_default_timeout_seconds=0.5))


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_timeout_is_gateway_timeout(
    impatient_gateway: Gateway, fake_openai: FakeOpenAI, stream: bool
) -> None:
    """An upstream slower than the provider timeout gives 504 upstream_timeout before any byte."""
    tenant = openai_tenant(impatient_gateway, fake_openai, slug="fake-slow")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(impatient_gateway, tenant.secret).chat.completions.create(
            model=tenant.model, messages=MESSAGES, stream=stream
        )
    assert_error_response(caught.value, status=504, code="upstream_timeout")


def test_upstream_stalling_mid_stream_times_out_in_band(
    impatient_gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A stream that stalls after it began ends with an in-band upstream_timeout error, never [DONE]."""
    fake_openai.chunk_delay_seconds = 5.0
    tenant = openai_tenant(impatient_gateway, fake_openai, slug="fake-slow-stream")
    stream = sdk(impatient_gateway, tenant.secret).chat.completions.create(
        model=tenant.model, messages=MESSAGES, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        received.extend(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert type(caught.value) is openai.APIError
    assert caught.value.code == "upstream_timeout"
    assert "".join(received) == DRIP_TEXT  # the one chunk sent before the stall


@pytest.mark.parametrize("stream", [False, True])
def test_a_providers_first_byte_timeout_overrides_the_default(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, stream: bool
) -> None:
    """``config.first_byte_timeout_ms`` bounds the wait for the upstream's answer: 504 naming it."""
    tenant = openai_tenant(
        openai_gateway, fake_openai, slug="fake-slow", provider_config={"first_byte_timeout_ms": 300}
    )
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(
            model=tenant.model, messages=MESSAGES, stream=stream
        )
    error = assert_error_response(caught.value, status=504, code="upstream_timeout")
    assert error["message"] == "upstream did not send a first byte within 0.3 s"


def test_a_providers_idle_timeout_ends_a_stalled_stream_in_band(
    openai_gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """``config.idle_timeout_ms`` bounds the silence between stream pieces: in-band error naming it."""
    fake_openai.chunk_delay_seconds = 5.0
    tenant = openai_tenant(
        openai_gateway, fake_openai, slug="fake-slow-stream", provider_config={"idle_timeout_ms": 300}
    )
    stream = sdk(openai_gateway, tenant.secret).chat.completions.create(
        model=tenant.model, messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert caught.value.code == "upstream_timeout"
    assert caught.value.message == "upstream stream idle for more than 0.3 s"


@pytest.mark.parametrize(
    ("slug", "code"),
    [
        ("fake-broken-stream", "upstream_stream_interrupted"),
        ("fake-truncated-stream", "upstream_stream_interrupted"),
        ("fake-stream-error", "upstream_error"),
    ],
)
def test_stream_cut_mid_answer_raises_while_iterating(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, slug: str, code: str
) -> None:
    """A stream that breaks after it began makes the SDK raise while iterating, after the partial answer."""
    tenant = openai_tenant(openai_gateway, fake_openai, slug=slug)
    stream = sdk(openai_gateway, tenant.secret).chat.completions.create(
        model=tenant.model, messages=MESSAGES, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        received.extend(chunk.choices[0].delta.content or "" for chunk in stream)
    assert type(caught.value) is openai.APIError  # an in-band error event, not a dropped connection
    assert caught.value.code == code
    assert "".join(received) == "Hello from the"
