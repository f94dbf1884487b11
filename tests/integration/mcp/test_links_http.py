"""The Streamable HTTP forwarding link against a real SDK server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from odock.errors import McpAuthError, McpUpstreamError
from odock.mcp.link import AuthType, Binding
from odock.mcp.links.auth import UpstreamAuth
from odock.mcp.links.streamable_http import StreamableHttpLink
from tests.support.mcp_links import (
    CLIENT_PARAMS,
    closed_port_url,
    collect,
    http_server,
    http_target,
    request,
    text_of,
    tool_call,
)
from tests.support.mcp_servers import McpTestServer, start_mcp_server

__all__ = ["http_server"]


@pytest.fixture
async def link() -> AsyncIterator[StreamableHttpLink]:
    link = StreamableHttpLink(UpstreamAuth())
    yield link
    await link.aclose()


async def test_open_forwards_initialize_and_keeps_the_session(
    link: StreamableHttpLink, http_server: McpTestServer
) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    assert binding.upstream_session_id
    assert binding.protocol_version == "2025-11-25"
    assert binding.initialize_result["serverInfo"]["name"] == "odock-test"
    assert binding.client_params == CLIENT_PARAMS
    assert Binding.from_json(binding.to_json()) == binding


async def test_tools_list_call_and_error_result(link: StreamableHttpLink, http_server: McpTestServer) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    [listed] = await collect(link, target, binding, request(1, "tools/list"))
    assert listed["id"] == 1
    names = {tool["name"] for tool in listed["result"]["tools"]}
    assert {"echo", "add", "slow_count", "wait_forever", "fail", "cancelled_count"} <= names
    [echoed] = await collect(link, target, binding, tool_call("e", "echo", text="hi there"))
    assert echoed["id"] == "e"
    assert text_of(echoed) == "hi there"
    [failed] = await collect(link, target, binding, tool_call(3, "fail"))
    assert failed["result"]["isError"] is True


async def test_batch_answers_every_request(link: StreamableHttpLink, http_server: McpTestServer) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    answers = await collect(
        link, target, binding, tool_call(1, "add", a=2, b=3), tool_call(2, "echo", text="x")
    )
    by_id = {answer["id"]: answer for answer in answers}
    assert text_of(by_id[1]) == "5"
    assert text_of(by_id[2]) == "x"


async def test_notifications_only_end_at_once(link: StreamableHttpLink, http_server: McpTestServer) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    assert await collect(link, target, binding, note) == []


async def test_progress_is_relayed_before_the_response(
    link: StreamableHttpLink, http_server: McpTestServer
) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    messages = await collect(link, target, binding, tool_call(9, "slow_count", progress="tok", n=3))
    assert [m.get("method") for m in messages] == ["notifications/progress"] * 3 + [None]
    assert [m["params"]["progress"] for m in messages[:3]] == [1, 2, 3]
    assert all(m["params"]["progressToken"] == "tok" for m in messages[:3])
    assert text_of(messages[3]) == "counted 3"


async def test_progress_streams_and_closing_early_cancels_upstream(
    link: StreamableHttpLink, http_server: McpTestServer
) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    before = http_server.state.cancelled
    exchange = link.exchange(target, binding, [tool_call(5, "wait_forever", progress="p")])
    # the progress arrives while the tool is still running: the answer is really streamed
    first = await asyncio.wait_for(anext(exchange), 10)
    assert first["method"] == "notifications/progress"
    assert first["params"]["progressToken"] == "p"
    await exchange.aclose()
    await http_server.state.wait_for_async(lambda s: s.cancelled == before + 1)


async def test_resources_and_prompts(link: StreamableHttpLink, http_server: McpTestServer) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    [read] = await collect(link, target, binding, request(1, "resources/read", {"uri": "res://greeting"}))
    assert read["result"]["contents"][0]["text"] == "hello from the test server"
    [prompt] = await collect(
        link, target, binding, request(2, "prompts/get", {"name": "greet", "arguments": {"name": "Ada"}})
    )
    assert "Please greet Ada warmly." in prompt["result"]["messages"][0]["content"]["text"]


async def test_a_forgotten_session_is_reopened_once(
    link: StreamableHttpLink, http_server: McpTestServer
) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    old = binding.upstream_session_id
    await link.close(target, binding)  # the upstream forgets it (DELETE)
    [echoed] = await collect(link, target, binding, tool_call(1, "echo", text="again"))
    assert text_of(echoed) == "again"
    assert binding.upstream_session_id not in (None, old)
    await link.close(target, binding)
    await link.close(target, binding)  # already gone: 404 is fine


async def test_json_answers(link: StreamableHttpLink) -> None:
    with start_mcp_server("streamable_http", json_response=True) as server:
        target = http_target(server.url)
        binding = await link.open(target, CLIENT_PARAMS)
        [added] = await collect(link, target, binding, tool_call(1, "add", a=40, b=2))
        assert text_of(added) == "42"


async def test_unreachable_endpoint(link: StreamableHttpLink) -> None:
    with pytest.raises(McpUpstreamError, match="test-srv-1 could not be reached"):
        await link.open(http_target(closed_port_url()), CLIENT_PARAMS)


async def test_upstream_failure_status(link: StreamableHttpLink, http_server: McpTestServer) -> None:
    target = http_target(http_server.url.replace("/mcp", "/nowhere"))
    with pytest.raises(McpUpstreamError, match="HTTP 404") as caught:
        await link.open(target, CLIENT_PARAMS)
    assert not isinstance(caught.value, McpAuthError)


async def test_timeout(link: StreamableHttpLink, http_server: McpTestServer) -> None:
    target = http_target(http_server.url, timeout_seconds=0.5)
    binding = await link.open(target, CLIENT_PARAMS)
    with pytest.raises(McpUpstreamError, match=r"did not answer within 0\.5 s"):
        await collect(link, target, binding, tool_call(1, "wait_forever"))


async def test_bearer_token_is_sent_and_a_wrong_one_refused(link: StreamableHttpLink) -> None:
    with start_mcp_server("streamable_http", bearer_token="sesame") as server:
        good = http_target(server.url, auth_type=AuthType.BEARER, auth_config={"token": "sesame"})
        binding = await link.open(good, CLIENT_PARAMS)
        [echoed] = await collect(link, good, binding, tool_call(1, "echo", text="in"))
        assert text_of(echoed) == "in"
        assert set(server.state.authorizations) == {"Bearer sesame"}
        bad = http_target(server.url, auth_type=AuthType.BEARER, auth_config={"token": "wrong"})
        with pytest.raises(McpAuthError, match="test-srv-1 refused the gateway's credentials"):
            await link.open(bad, CLIENT_PARAMS)
        with pytest.raises(McpAuthError):
            await link.open(http_target(server.url), CLIENT_PARAMS)


async def test_basic_auth(link: StreamableHttpLink) -> None:
    with start_mcp_server("streamable_http", basic=("ada", "pw")) as server:
        good = http_target(
            server.url, auth_type=AuthType.BASIC, auth_config={"username": "ada", "password": "pw"}
        )
        binding = await link.open(good, CLIENT_PARAMS)
        [added] = await collect(link, good, binding, tool_call(1, "add", a=1, b=1))
        assert text_of(added) == "2"
        bad = http_target(
            server.url, auth_type=AuthType.BASIC, auth_config={"username": "ada", "password": "no"}
        )
        with pytest.raises(McpAuthError):
            await link.open(bad, CLIENT_PARAMS)


async def test_target_headers_are_sent(link: StreamableHttpLink) -> None:
    with start_mcp_server("streamable_http", bearer_token="from-headers") as server:
        target = http_target(server.url, headers={"Authorization": "Bearer from-headers"})
        binding = await link.open(target, CLIENT_PARAMS)
        [echoed] = await collect(link, target, binding, tool_call(1, "echo", text="ok"))
        assert text_of(echoed) == "ok"


async def test_listen_ends_when_the_server_stream_drops(link: StreamableHttpLink) -> None:
    with start_mcp_server("streamable_http") as server:
        target = http_target(server.url)
        binding = await link.open(target, CLIENT_PARAMS)
        listening = link.listen(target, binding)
        consumer = asyncio.ensure_future(anext(listening, None))
        await server.state.wait_for_async(lambda s: s.streams == 1)
        assert server.drop_streams() == 1
        assert await asyncio.wait_for(consumer, 10) is None


async def test_a_stateless_upstream(link: StreamableHttpLink) -> None:
    with start_mcp_server("streamable_http", stateless=True) as server:
        target = http_target(server.url)
        binding = await link.open(target, CLIENT_PARAMS)
        assert binding.upstream_session_id is None
        [echoed] = await collect(link, target, binding, tool_call(1, "echo", text="no session"))
        assert text_of(echoed) == "no session"
        await link.close(target, binding)  # nothing to end


async def test_a_large_answer(link: StreamableHttpLink, http_server: McpTestServer) -> None:
    target = http_target(http_server.url)
    binding = await link.open(target, CLIENT_PARAMS)
    [answer] = await collect(link, target, binding, tool_call(1, "big", size=3_000_000))
    assert text_of(answer) == "x" * 3_000_000
