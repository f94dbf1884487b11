"""Upstream calls go through the configured HTTP proxy (HTTP_PROXY, HTTPS_PROXY), except NO_PROXY hosts.

Driven with the official OpenAI SDK through a running gateway whose provider is the fake OpenAI
server, with a recording proxy (tests/support/proxy.py) in between: plain-HTTP upstreams are sent
to the proxy in absolute form, HTTPS upstreams through a CONNECT tunnel (TLS end to end with the
upstream, whose certificate the gateway verifies), each with the proxy's credentials.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Gateway, GatewayFactory, SettingsFactory
from tests.fakes.openai_server import REPLY, FakeOpenAI, running_fake_openai
from tests.fakes.tls import self_signed_certificate, server_context
from tests.integration.conftest import MESSAGES, UPSTREAM_KEY, assert_error_response, openai_tenant, sdk
from tests.support.proxy import RecordingProxy, running_proxy

CREDENTIALS = "proxy-user:proxy-pass"
BASIC = "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    """A recording proxy that forwards."""
    with running_proxy() as running:
        yield running


def _proxy_url(proxy: RecordingProxy) -> str:
    return f"http://{CREDENTIALS}@127.0.0.1:{proxy.port}"


def _chat(gateway: Gateway, fake: FakeOpenAI) -> str | None:
    tenant = openai_tenant(gateway, fake)
    answer = sdk(gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    return answer.choices[0].message.content


def test_plain_http_upstream_goes_through_http_proxy_in_absolute_form(
    gateway_factory: GatewayFactory,
    keyed_settings: SettingsFactory,
    fake_openai: FakeOpenAI,
    proxy: RecordingProxy,
) -> None:
    """An http:// upstream is called through HTTP_PROXY in absolute form, with the proxy's credentials."""
    gateway = gateway_factory(keyed_settings(http_proxy=_proxy_url(proxy)))

    assert _chat(gateway, fake_openai) == REPLY

    [seen] = proxy.seen
    assert (seen.method, seen.target) == ("POST", f"{fake_openai.base_url}/v1/chat/completions")
    assert seen.headers["proxy-authorization"] == BASIC
    assert seen.headers["host"] == f"127.0.0.1:{fake_openai.port}"
    forwarded = fake_openai.requests[-1]
    assert forwarded.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "proxy-authorization" not in forwarded.headers


@pytest.fixture
def tls_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The fake OpenAI server on HTTPS, with a certificate for 127.0.0.1 that this process trusts."""
    certificate, key = self_signed_certificate(tmp_path)
    # OpenSSL's default trust store (what the gateway's upstream client verifies against) reads this.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    with running_fake_openai(api_key=UPSTREAM_KEY, tls=server_context(certificate, key)) as server:
        yield server


def test_https_upstream_goes_through_a_connect_tunnel(
    gateway_factory: GatewayFactory,
    keyed_settings: SettingsFactory,
    tls_fake: FakeOpenAI,
    proxy: RecordingProxy,
) -> None:
    """An https:// upstream is reached by CONNECT through HTTPS_PROXY (streams too), TLS verified inside."""
    gateway = gateway_factory(keyed_settings(https_proxy=_proxy_url(proxy)))
    tenant = openai_tenant(gateway, tls_fake)
    client = sdk(gateway, tenant.secret)

    answer = client.chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert answer.choices[0].message.content == REPLY
    stream = client.chat.completions.create(model=tenant.model, messages=MESSAGES, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == REPLY

    assert proxy.seen, "the proxy saw no request"
    for seen in proxy.seen:  # one tunnel per pooled upstream connection, never the request itself
        assert (seen.method, seen.target) == ("CONNECT", f"127.0.0.1:{tls_fake.port}")
        assert seen.headers["proxy-authorization"] == BASIC
    assert len(tls_fake.requests) == 2


def test_no_proxy_hosts_are_called_directly(
    gateway_factory: GatewayFactory,
    keyed_settings: SettingsFactory,
    fake_openai: FakeOpenAI,
    proxy: RecordingProxy,
) -> None:
    """An upstream matching NO_PROXY is called directly, the proxy sees nothing."""
    settings = keyed_settings(http_proxy=proxy.url, no_proxy=f"example.com, 127.0.0.1:{fake_openai.port}")
    gateway = gateway_factory(settings)

    assert _chat(gateway, fake_openai) == REPLY

    assert proxy.seen == []
    assert len(fake_openai.requests) == 1


def test_a_proxy_that_refuses_the_tunnel_is_an_unavailable_upstream(
    gateway_factory: GatewayFactory, keyed_settings: SettingsFactory, tls_fake: FakeOpenAI
) -> None:
    """A proxy refusing CONNECT (407) is a 502 upstream_unavailable; nothing reaches the upstream."""
    with running_proxy(refuse=407) as refusing:
        gateway = gateway_factory(keyed_settings(https_proxy=refusing.url))
        tenant = openai_tenant(gateway, tls_fake)
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)

    body = assert_error_response(caught.value, status=502, code="upstream_unavailable")
    assert "HTTP 407" in body["message"]
    assert [seen.method for seen in refusing.seen] == ["CONNECT"]
    assert tls_fake.requests == []
