"""Upstream OAuth2 (client credentials) through the links: token fetched once, cached, refreshed,
shared by concurrent callers; a failing token endpoint or a refused token is an McpAuthError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from odock.errors import McpAuthError
from odock.mcp.link import AuthType, Transport, UpstreamTarget
from odock.mcp.links.auth import UpstreamAuth
from odock.mcp.links.sse import SseLink
from odock.mcp.links.streamable_http import StreamableHttpLink
from tests.fakes.oauth_token_server import OAuthTokenServer
from tests.support.mcp_links import CLIENT_PARAMS, closed_port_url, collect, http_target, text_of, tool_call
from tests.support.mcp_servers import McpTestServer


@dataclass
class Clock:
    """A monotonic clock the test moves."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthTokenServer]:
    with OAuthTokenServer(client_id="odock", client_secret="s3cret", expires_in=3600) as server:
        yield server


@pytest.fixture(scope="module")
def protected(oauth: OAuthTokenServer) -> Iterator[McpTestServer]:
    with McpTestServer("streamable_http", token_check=oauth.valid) as server:
        yield server


@pytest.fixture(scope="module")
def protected_sse(oauth: OAuthTokenServer) -> Iterator[McpTestServer]:
    with McpTestServer("sse", token_check=oauth.valid) as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def link(clock: Clock) -> AsyncIterator[StreamableHttpLink]:
    link = StreamableHttpLink(UpstreamAuth(clock=clock))
    yield link
    await link.aclose()


def oauth_target(
    url: str,
    token_url: str,
    *,
    server_id: str,
    secret: str = "s3cret",
    transport: Transport = Transport.STREAMABLE_HTTP,
) -> UpstreamTarget:
    return http_target(
        url,
        transport,
        server_id=server_id,
        auth_type=AuthType.OAUTH2,
        auth_config={
            "token_url": token_url,
            "client_id": "odock",
            "client_secret": secret,
            "scope": "tools",
            "audience": "mcp",
        },
    )


async def test_token_is_fetched_once_and_cached(
    link: StreamableHttpLink, oauth: OAuthTokenServer, protected: McpTestServer
) -> None:
    target = oauth_target(protected.url, oauth.token_url, server_id="cached")
    before = oauth.issued
    binding = await link.open(target, CLIENT_PARAMS)
    for n in range(3):
        [echoed] = await collect(link, target, binding, tool_call(n, "echo", text=f"t{n}"))
        assert text_of(echoed) == f"t{n}"
    assert oauth.issued == before + 1
    grant = oauth.last_request().body
    assert grant is None  # a form, not JSON
    form = oauth.requests[-1]
    assert form.method == "POST"
    assert form.path == "/token"


async def test_grant_form(
    link: StreamableHttpLink, oauth: OAuthTokenServer, protected: McpTestServer
) -> None:
    # the fake refuses anything but the client-credentials grant with these credentials
    target = oauth_target(protected.url, oauth.token_url, server_id="grant", secret="wrong")
    with pytest.raises(McpAuthError, match="test-grant: the OAuth2 token endpoint answered HTTP 401"):
        await link.open(target, CLIENT_PARAMS)


async def test_token_is_refreshed_before_expiry(
    link: StreamableHttpLink, oauth: OAuthTokenServer, protected: McpTestServer, clock: Clock
) -> None:
    target = oauth_target(protected.url, oauth.token_url, server_id="refresh")
    before = oauth.issued
    binding = await link.open(target, CLIENT_PARAMS)
    clock.now += 3600 - 31  # more than 30 s before expiry: still cached
    [echoed] = await collect(link, target, binding, tool_call(1, "echo", text="cached"))
    assert text_of(echoed) == "cached"
    assert oauth.issued == before + 1
    clock.now += 2  # within 30 s of expiry: refreshed on next use
    [echoed] = await collect(link, target, binding, tool_call(2, "echo", text="fresh"))
    assert text_of(echoed) == "fresh"
    assert oauth.issued == before + 2
    auths = protected.state.authorizations
    assert auths[-1] != auths[0]


async def test_concurrent_callers_share_one_fetch(
    link: StreamableHttpLink, oauth: OAuthTokenServer, protected: McpTestServer
) -> None:
    target = oauth_target(protected.url, oauth.token_url, server_id="shared")
    before = oauth.issued
    bindings = await asyncio.gather(*(link.open(target, CLIENT_PARAMS) for _ in range(10)))
    assert len({b.upstream_session_id for b in bindings}) == 10
    assert oauth.issued == before + 1


async def test_refused_token_is_an_auth_error_and_forgotten(
    link: StreamableHttpLink, oauth: OAuthTokenServer, protected: McpTestServer
) -> None:
    target = oauth_target(protected.url, oauth.token_url, server_id="revoked")
    binding = await link.open(target, CLIENT_PARAMS)
    oauth.expire_all()  # the upstream no longer accepts the cached token
    with pytest.raises(McpAuthError, match="test-revoked refused the gateway's credentials"):
        await collect(link, target, binding, tool_call(1, "echo", text="x"))
    before = oauth.issued
    binding = await link.open(target, CLIENT_PARAMS)  # a new token is fetched
    [echoed] = await collect(link, target, binding, tool_call(2, "echo", text="back"))
    assert text_of(echoed) == "back"
    assert oauth.issued == before + 1


async def test_token_endpoint_down(
    link: StreamableHttpLink, oauth: OAuthTokenServer, protected: McpTestServer
) -> None:
    unreachable = oauth_target(protected.url, closed_port_url("/token"), server_id="nowhere")
    with pytest.raises(McpAuthError, match="test-nowhere: the OAuth2 token endpoint could not be reached"):
        await link.open(unreachable, CLIENT_PARAMS)
    oauth.failing = True
    try:
        failing = oauth_target(protected.url, oauth.token_url, server_id="failing")
        with pytest.raises(McpAuthError, match="test-failing: the OAuth2 token endpoint answered HTTP 503"):
            await link.open(failing, CLIENT_PARAMS)
    finally:
        oauth.failing = False


async def test_oauth_over_sse(oauth: OAuthTokenServer, protected_sse: McpTestServer) -> None:
    link = SseLink(UpstreamAuth())
    try:
        target = oauth_target(
            protected_sse.url, oauth.token_url, server_id="sse-oauth", transport=Transport.SSE
        )
        binding = await link.open(target, CLIENT_PARAMS)
        [added] = await collect(link, target, binding, tool_call(1, "add", a=20, b=22))
        assert text_of(added) == "42"
        assert all(value.startswith("Bearer ") for value in protected_sse.state.authorizations)
    finally:
        await link.aclose()
