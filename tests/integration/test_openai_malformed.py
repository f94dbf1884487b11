"""Malformed requests to the OpenAI-compatible routes get a clean JSON 4xx, never a 500, never a forward."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from odock.providers.tables import ProviderType
from tests.conftest import Gateway, SettingsFactory, Tenant
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.conftest import ERROR_FIELDS, MESSAGES, openai_tenant

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"


@pytest.fixture
def tenant(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> Tenant:
    """A tenant with an OPENAI provider (the strict one about unknown fields)."""
    return openai_tenant(openai_gateway, fake_openai)


def _post(gateway: Gateway, tenant: Tenant, path: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    headers = {"authorization": f"Bearer {tenant.secret}", "content-type": "application/json"}
    return httpx.post(gateway.base_url + path, content=content, headers=headers, timeout=30)


def _error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_FIELDS
    assert body["error"]["code"] == code
    return dict(body["error"])


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "MODEL", "messages": MESSAGES, **fields}


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        pytest.param(b"", None, id="empty"),
        pytest.param(b"{not json", None, id="not-json"),
        pytest.param(b'{"model": "\xff\xfe", "messages": []}', None, id="invalid-utf8"),
        pytest.param(b'\xef\xbb\xbf{"model": "m"}', None, id="byte-order-mark"),
        pytest.param(b"[1, 2]", None, id="json-array"),
        pytest.param(b"null", None, id="json-null"),
        pytest.param(b'"a string"', None, id="json-string"),
        pytest.param(b"[" * 5000 + b"]" * 5000, None, id="deeply-nested"),
        pytest.param(b'{"model": "m", "messages": [], "temperature": 1e999}', None, id="infinite-number"),
    ],
)
def test_undecodable_chat_body(
    openai_gateway: Gateway, tenant: Tenant, fake_openai: FakeOpenAI, raw: bytes, param: str | None
) -> None:
    """A chat body that is not a decodable JSON object is a 400 invalid_request_body."""
    error = _error_of(_post(openai_gateway, tenant, CHAT, raw), 400, "invalid_request_body")
    assert error["param"] == param
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"messages": MESSAGES}, "model", id="no-model"),
        pytest.param(_chat(model=5), "model", id="model-not-string"),
        pytest.param(_chat(model="  "), "model", id="model-blank"),
        pytest.param({"model": "MODEL"}, "messages", id="no-messages"),
        pytest.param(_chat(messages="hello"), "messages", id="messages-not-list"),
        pytest.param(_chat(messages=[]), "messages", id="messages-empty"),
        pytest.param(_chat(messages=["hello"]), "messages[0]", id="message-not-object"),
        pytest.param(_chat(messages=[{"content": "hi"}]), "messages[0]", id="message-without-role"),
        pytest.param(_chat(stream="yes"), "stream", id="stream-not-bool"),
        pytest.param(_chat(stream_options=[]), "stream_options", id="stream-options-not-object"),
        pytest.param(
            _chat(stream=True, stream_options={"include_usage": "no"}),
            "stream_options.include_usage",
            id="include-usage-not-bool",
        ),
        pytest.param(_chat(logprobs="false"), "logprobs", id="logprobs-not-bool"),
        pytest.param(_chat(parallel_tool_calls=1), "parallel_tool_calls", id="parallel-tool-calls-not-bool"),
        pytest.param(_chat(max_tokens=2**63 - 1), "max_tokens", id="max-tokens-past-range"),
        pytest.param(_chat(seed=2**64 - 1), "seed", id="seed-past-int64"),
        pytest.param(_chat(temperature="hot"), "temperature", id="temperature-not-number"),
        pytest.param(_chat(max_tokens=True), "max_tokens", id="max-tokens-bool"),
        pytest.param(_chat(max_tokens=2.5), "max_tokens", id="max-tokens-float"),
        pytest.param(_chat(max_tokens=0), "max_tokens", id="max-tokens-zero"),
        pytest.param(_chat(n=-1), "n", id="n-negative"),
        pytest.param(_chat(tools={"type": "function"}), "tools", id="tools-not-list"),
    ],
)
def test_ill_typed_chat_body(
    openai_gateway: Gateway, tenant: Tenant, fake_openai: FakeOpenAI, body: dict[str, Any], param: str
) -> None:
    """A chat body with a missing or ill-typed field is a 400 naming the field."""
    if body.get("model") == "MODEL":
        body = {**body, "model": tenant.model}
    error = _error_of(_post(openai_gateway, tenant, CHAT, orjson.dumps(body)), 400, "invalid_request_body")
    assert error["param"] == param
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"model": "MODEL"}, "input", id="no-input"),
        pytest.param({"model": "MODEL", "input": []}, "input", id="input-empty"),
        pytest.param({"model": "MODEL", "input": 5}, "input", id="input-number"),
        pytest.param(
            {"model": "MODEL", "input": "x", "dimensions": "8"}, "dimensions", id="dimensions-string"
        ),
        pytest.param({"model": "MODEL", "input": "x", "dimensions": 0}, "dimensions", id="dimensions-zero"),
    ],
)
def test_ill_typed_embeddings_body(
    openai_gateway: Gateway, tenant: Tenant, fake_openai: FakeOpenAI, body: dict[str, Any], param: str
) -> None:
    """An embeddings body with a missing or ill-typed field is a 400 naming the field."""
    body = {**body, "model": tenant.model}
    error = _error_of(
        _post(openai_gateway, tenant, EMBEDDINGS, orjson.dumps(body)), 400, "invalid_request_body"
    )
    assert error["param"] == param
    assert fake_openai.requests == []


def test_unknown_field_refused_for_openai_provider(
    openai_gateway: Gateway, tenant: Tenant, fake_openai: FakeOpenAI
) -> None:
    """A field the OpenAI API does not define is a 400 naming it when the provider is OpenAI."""
    body = orjson.dumps(_chat(model=tenant.model, top_k=5))
    error = _error_of(_post(openai_gateway, tenant, CHAT, body), 400, "invalid_request_body")
    assert error["param"] == "top_k"
    assert "top_k" in error["message"]
    assert fake_openai.requests == []


def test_unknown_field_forwarded_for_vllm_provider(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """The same unknown field passes through to a vLLM provider."""
    tenant = openai_tenant(
        openai_gateway, fake_openai, provider_type=ProviderType.VLLM, base_url=fake_openai.base_url
    )
    body = orjson.dumps(_chat(model=tenant.model, top_k=5))
    response = _post(openai_gateway, tenant, CHAT, body)
    assert response.status_code == 200, response.text
    assert fake_openai.last_request().body["top_k"] == 5


@pytest.fixture
def small_gateway(gateway_factory: Callable[..., Gateway], keyed_settings: SettingsFactory) -> Gateway:
    """A gateway that accepts request bodies of at most 2 KiB."""
    return gateway_factory(keyed_settings(max_request_bytes=2048))


def _oversize(tenant: Tenant) -> bytes:
    return orjson.dumps(_chat(model=tenant.model, messages=[{"role": "user", "content": "x" * 4096}]))


def test_oversize_body_with_length(small_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A body whose declared length exceeds max_request_bytes is a 413 payload_too_large."""
    tenant = openai_tenant(small_gateway, fake_openai)
    response = _post(small_gateway, tenant, CHAT, _oversize(tenant))
    _error_of(response, 413, "payload_too_large")
    assert response.headers["x-request-id"]
    assert fake_openai.requests == []


def test_oversize_chunked_body(small_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A chunked body with no declared length is cut off at max_request_bytes with a 413."""
    tenant = openai_tenant(small_gateway, fake_openai)
    payload = _oversize(tenant)
    pieces = iter([payload[i : i + 512] for i in range(0, len(payload), 512)])
    response = _post(small_gateway, tenant, CHAT, pieces)
    _error_of(response, 413, "payload_too_large")
    assert fake_openai.requests == []


def test_body_at_the_limit_is_accepted(small_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A body just under max_request_bytes is served normally."""
    tenant = openai_tenant(small_gateway, fake_openai)
    body = orjson.dumps(_chat(model=tenant.model, messages=[{"role": "user", "content": "x" * 1800}]))
    assert len(body) <= 2048
    assert _post(small_gateway, tenant, CHAT, body).status_code == 200


def test_unknown_route_is_json_404(openai_gateway: Gateway, tenant: Tenant) -> None:
    """An unknown path is a JSON 404 not_found."""
    _error_of(_post(openai_gateway, tenant, "/v1/completions/unknown", b"{}"), 404, "not_found")


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
def test_wrong_method_is_json_405(openai_gateway: Gateway, tenant: Tenant, path: str) -> None:
    """GET on a POST-only model route is a JSON 405 method_not_allowed with an Allow header."""
    response = httpx.get(openai_gateway.base_url + path, headers={"authorization": f"Bearer {tenant.secret}"})
    _error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
