"""Which upstreams go through a proxy: proxy URLs, NO_PROXY matching, and the settings that hold them."""

from __future__ import annotations

import base64

import pytest

from odock.providers.proxy import Proxy, ProxyRoutes
from odock.settings import SettingsError, load_settings

PROXY = "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        (".example.com", "example.com", 443, True),
        (".example.com", "deep.api.example.com", 443, True),
        ("*.example.com", "api.example.com", 443, True),
        ("EXAMPLE.com", "Api.Example.COM.", 443, True),
        ("api.example.com:8443", "api.example.com", 8443, True),
        ("api.example.com:8443", "api.example.com", 443, False),
        ("10.0.0.0/8", "10.20.30.40", 443, True),
        ("10.0.0.0/8", "11.0.0.1", 443, False),
        ("10.0.0.0/8", "ten.example.com", 443, False),
        ("192.168.1.5", "192.168.1.5", 80, True),
        ("192.168.1.5:8080", "192.168.1.5", 80, False),
        ("::1", "::1", 443, True),
        ("[::1]:443", "::1", 443, True),
        ("[::1]:443", "::1", 80, False),
        ("fd00::/8", "fd12::7", 443, True),
        (" localhost , example.org ,, ", "example.org", 443, True),
        ("localhost,example.org", "example.net", 443, False),
        ("*", "anything.example", 443, True),
        ("", "api.openai.com", 443, False),
    ],
)
def test_no_proxy_matching(no_proxy: str, host: str, port: int, direct: bool) -> None:
    """NO_PROXY exempts hosts, domains and their subdomains, host:port pairs, IP addresses and CIDR blocks."""
    routes = ProxyRoutes(https=PROXY, no_proxy=no_proxy)
    assert (routes.proxy_for("https", host, port) is None) is direct


def test_each_scheme_uses_its_own_proxy() -> None:
    """HTTPS upstreams use HTTPS_PROXY and plain-HTTP ones HTTP_PROXY; a scheme with none goes direct."""
    routes = ProxyRoutes(https="http://tls-proxy:3128", http="http://plain-proxy:8080")
    assert routes.proxy_for("https", "api.openai.com", 443) == Proxy("tls-proxy", 3128)
    assert routes.proxy_for("http", "vllm.internal", 8000) == Proxy("plain-proxy", 8080)
    only_https = ProxyRoutes(https="http://tls-proxy:3128")
    assert only_https.proxy_for("http", "vllm.internal", 8000) is None


def test_routes_without_a_proxy_are_inactive() -> None:
    """No proxy, or NO_PROXY=*, leaves the client on its direct path."""
    assert not ProxyRoutes().active
    assert not ProxyRoutes(https=PROXY, no_proxy="*").active
    assert ProxyRoutes(https=PROXY, no_proxy="example.com").active


def test_proxy_url_credentials_become_basic_authorization() -> None:
    """user:password in a proxy URL (percent-decoded) is presented as Proxy-Authorization: Basic."""
    proxy = Proxy.parse("http://svc%40corp:p%3Ass@proxy.corp:3128")
    assert (proxy.host, proxy.port) == ("proxy.corp", 3128)
    assert proxy.authorization == b"Basic " + base64.b64encode(b"svc@corp:p:ss")
    assert "p:ss" not in repr(proxy)
    assert Proxy.parse("proxy.corp") == Proxy("proxy.corp", 80)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@proxy:3128",
        "socks5://user:hunter2@proxy:1080",
        "http://user:hunter2@proxy:3128/x",
    ],
)
def test_unsupported_proxy_urls_are_refused_without_echoing_them(url: str) -> None:
    """A proxy URL that is not http://host[:port] is refused, and the message never shows its password."""
    with pytest.raises(ValueError, match="proxy URL") as caught:
        Proxy.parse(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("entry", ["example.com:http", "[::1]:99999", ".", "*."])
def test_malformed_no_proxy_entries_are_refused(entry: str) -> None:
    """A NO_PROXY entry with a bad port or no host is an error, not silently ignored."""
    with pytest.raises(ValueError, match="NO_PROXY"):
        ProxyRoutes(no_proxy=entry)


def test_settings_read_the_standard_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY, http_proxy and NO_PROXY are read from the environment; ODOCK_ names take precedence."""
    monkeypatch.setenv("HTTPS_PROXY", "http://standard:3128")
    monkeypatch.setenv("http_proxy", "http://lower-case:8080")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    settings = load_settings()
    assert settings.https_proxy is not None
    assert settings.https_proxy.get_secret_value() == "http://standard:3128"
    assert settings.http_proxy is not None
    assert settings.http_proxy.get_secret_value() == "http://lower-case:8080"
    assert settings.no_proxy == "localhost,.internal"

    monkeypatch.setenv("ODOCK_HTTPS_PROXY", "http://odock-own:3128")
    chosen = load_settings().https_proxy
    assert chosen is not None
    assert chosen.get_secret_value() == "http://odock-own:3128"


def test_settings_treat_an_empty_proxy_variable_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY exported empty means no proxy."""
    monkeypatch.setenv("HTTPS_PROXY", "")
    monkeypatch.setenv("NO_PROXY", " ")
    settings = load_settings()
    assert (settings.https_proxy, settings.no_proxy) == (None, None)


def test_settings_refuse_an_invalid_proxy_naming_the_setting_not_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An invalid HTTPS_PROXY fails settings with the ODOCK_ name and without the URL's password."""
    monkeypatch.setenv("HTTPS_PROXY", "https://user:hunter2@proxy:3128")
    with pytest.raises(SettingsError, match=r"'https_proxy' \(ODOCK_HTTPS_PROXY\)") as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)
