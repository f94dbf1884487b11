"""The legacy HTTP+SSE bridge against a real SDK server: one shared channel, ids mapped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from odock.errors import McpAuthError, McpUpstreamError
from odock.mcp.link import AuthType, Transport, UpstreamTarget
from odock.mcp.links.auth import UpstreamAuth
from odock.mcp.links.sse import SseLink
from tests.support.mcp_links import (
    CLIENT_PARAMS,
    closed_port_url,
    collect,
    http_target,
    request,
    sse_server,
    text_of,
    tool_call,
)
from tests.support.mcp_servers import McpTestServer, start_mcp_server

__all__ = ["sse_server"]


@pytest.fixture
async def link() -> AsyncIterator[SseLink]:
    link = SseLink(UpstreamAuth())
    yield link
    await link.aclose()


def sse_target(server: McpTestServer, **options: object) -> UpstreamTarget:
    return http_target(server.url, Transport.SSE, **options)  # type: ignore[arg-type]


async def test_open_initializes_the_channel_as_the_gateway(link: SseLink, sse_server: McpTestServer) -> None:
    target = sse_target(sse_server)
    binding = await link.open(target, CLIENT_PARAMS)
    assert binding.initialize_result["serverInfo"]["name"] == "odock-test"
    assert binding.protocol_version
    assert binding.client_params == CLIENT_PARAMS
    other = await link.open(target, CLIENT_PARAMS)
    assert other.upstream_session_id != binding.upstream_session_id  # each client session tagged
    assert link.channels == 1


async def test_tools_resources_prompts(link: SseLink, sse_server: McpTestServer) -> None:
    target = sse_target(sse_server)
    binding = await link.open(target, CLIENT_PARAMS)
    [listed] = await collect(link, target, binding, request("l", "tools/list"))
    assert listed["id"] == "l"
    assert "slow_count" in {tool["name"] for tool in listed["result"]["tools"]}
    [echoed] = await collect(link, target, binding, tool_call(1, "echo", text="over sse"))
    assert echoed["id"] == 1
    assert text_of(echoed) == "over sse"
    [failed] = await collect(link, target, binding, tool_call(2, "fail"))
    assert failed["result"]["isError"] is True
    [read] = await collect(link, target, binding, request(3, "resources/read", {"uri": "res://greeting"}))
    assert read["result"]["contents"][0]["text"] == "hello from the test server"
    [prompt] = await collect(
        link, target, binding, request(4, "prompts/get", {"name": "greet", "arguments": {"name": "Lin"}})
    )
    assert "Lin" in prompt["result"]["messages"][0]["content"]["text"]


async def test_progress_goes_to_its_request_with_the_clients_token(
    link: SseLink, sse_server: McpTestServer
) -> None:
    target = sse_target(sse_server)
    one = await link.open(target, CLIENT_PARAMS)
    two = await link.open(target, CLIENT_PARAMS)
    # both sessions use the same request id and the same progress token, at the same time
    first, second = await asyncio.gather(
        collect(link, target, one, tool_call(1, "slow_count", progress="t", n=2)),
        collect(link, target, two, tool_call(1, "slow_count", progress="t", n=4)),
    )
    for messages, n in ((first, 2), (second, 4)):
        assert [m.get("method") for m in messages] == ["notifications/progress"] * n + [None]
        assert all(m["params"]["progressToken"] == "t" for m in messages[:n])
        assert [m["params"]["total"] for m in messages[:n]] == [n] * n
        assert messages[-1]["id"] == 1
        assert text_of(messages[-1]) == f"counted {n}"


async def test_concurrent_exchanges_share_one_channel(link: SseLink, sse_server: McpTestServer) -> None:
    target = sse_target(sse_server)
    bindings = [await link.open(target, CLIENT_PARAMS) for _ in range(4)]
    calls = [
        collect(link, target, bindings[n % 4], tool_call(n % 3, "echo", text=f"message {n}"))
        for n in range(40)
    ]
    answers = await asyncio.gather(*calls)
    for n, [answer] in enumerate(answers):
        assert answer["id"] == n % 3
        assert text_of(answer) == f"message {n}"
    assert link.channels == 1


async def test_batch_over_the_channel(link: SseLink, sse_server: McpTestServer) -> None:
    target = sse_target(sse_server)
    binding = await link.open(target, CLIENT_PARAMS)
    answers = await collect(
        link, target, binding, tool_call("a", "add", a=1, b=2), tool_call("b", "add", a=3, b=4)
    )
    assert {answer["id"]: text_of(answer) for answer in answers} == {"a": "3", "b": "7"}


async def test_closing_an_exchange_cancels_upstream(link: SseLink, sse_server: McpTestServer) -> None:
    target = sse_target(sse_server)
    binding = await link.open(target, CLIENT_PARAMS)
    before = sse_server.state.cancelled
    exchange = link.exchange(target, binding, [tool_call(7, "wait_forever", progress=7)])
    first = await asyncio.wait_for(anext(exchange), 10)
    assert first["params"]["progressToken"] == 7
    await exchange.aclose()
    await sse_server.state.wait_for_async(lambda s: s.cancelled == before + 1)


async def test_a_clients_cancel_notification_is_mapped(link: SseLink, sse_server: McpTestServer) -> None:
    target = sse_target(sse_server)
    binding = await link.open(target, CLIENT_PARAMS)
    before = sse_server.state.cancelled
    exchange = link.exchange(target, binding, [tool_call(8, "wait_forever", progress="w")])
    await asyncio.wait_for(anext(exchange), 10)
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 8}}
    assert await collect(link, target, binding, cancel) == []
    await sse_server.state.wait_for_async(lambda s: s.cancelled == before + 1)
    assert [m async for m in exchange] == []  # the cancelled request's exchange ends


async def test_a_dropped_stream_fails_in_flight_and_is_reestablished(link: SseLink) -> None:
    with start_mcp_server("sse") as server:
        target = sse_target(server)
        binding = await link.open(target, CLIENT_PARAMS)
        exchange = link.exchange(target, binding, [tool_call(1, "wait_forever", progress="d")])
        await asyncio.wait_for(anext(exchange), 10)
        assert server.drop_streams() == 1
        with pytest.raises(McpUpstreamError, match="the SSE stream dropped"):
            await asyncio.wait_for(anext(exchange), 10)
        [echoed] = await collect(link, target, binding, tool_call(2, "echo", text="back again"))
        assert text_of(echoed) == "back again"
        assert link.channels == 1


async def test_a_new_version_gets_a_new_channel(link: SseLink, sse_server: McpTestServer) -> None:
    old = sse_target(sse_server, server_id="versioned", version="1")
    new = sse_target(sse_server, server_id="versioned", version="2")
    binding = await link.open(old, CLIENT_PARAMS)
    [echoed] = await collect(link, new, binding, tool_call(1, "echo", text="v2"))
    assert text_of(echoed) == "v2"
    assert link.channels == 1


async def test_listen_ends_when_the_channel_drops(link: SseLink) -> None:
    with start_mcp_server("sse") as server:
        target = sse_target(server)
        binding = await link.open(target, CLIENT_PARAMS)
        listening = link.listen(target, binding)
        consumer = asyncio.ensure_future(anext(listening, None))
        # one loop turn runs the consumer up to its subscription (no I/O on that path: the
        # channel is up), so the drop below reaches a listener that is already subscribed
        await asyncio.sleep(0)
        server.drop_streams()
        assert await asyncio.wait_for(consumer, 10) is None


async def test_unreachable_and_refused(link: SseLink) -> None:
    with pytest.raises(McpUpstreamError, match="could not be reached"):
        await link.open(http_target(closed_port_url("/sse"), Transport.SSE), CLIENT_PARAMS)
    with start_mcp_server("sse", bearer_token="k") as server:
        bad = sse_target(server, auth_type=AuthType.BEARER, auth_config={"token": "nope"})
        with pytest.raises(McpAuthError):
            await link.open(bad, CLIENT_PARAMS)
        good = sse_target(server, server_id="good", auth_type=AuthType.BEARER, auth_config={"token": "k"})
        binding = await link.open(good, CLIENT_PARAMS)
        [echoed] = await collect(link, good, binding, tool_call(1, "echo", text="authorized"))
        assert text_of(echoed) == "authorized"


async def test_listen_receives_unprompted_messages(link: SseLink, sse_server: McpTestServer) -> None:
    target = sse_target(sse_server)
    binding = await link.open(target, CLIENT_PARAMS)
    listening = link.listen(target, binding)
    consumer = asyncio.ensure_future(anext(listening))
    await asyncio.sleep(0)  # one loop turn: the consumer subscribes (no I/O on that path)
    [announced] = await collect(link, target, binding, tool_call(1, "announce"))
    assert text_of(announced) == "announced"
    heard = await asyncio.wait_for(consumer, 10)
    assert heard["method"] == "notifications/tools/list_changed"
    await listening.aclose()


async def test_a_large_answer(link: SseLink, sse_server: McpTestServer) -> None:
    target = sse_target(sse_server)
    binding = await link.open(target, CLIENT_PARAMS)
    [answer] = await collect(link, target, binding, tool_call(1, "big", size=3_000_000))
    assert text_of(answer) == "x" * 3_000_000
