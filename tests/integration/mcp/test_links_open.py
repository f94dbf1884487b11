"""``open_links``: the gateway's entry point to the links (one per transport, one shutdown)."""

from __future__ import annotations

import os
from pathlib import Path

from odock.mcp.link import Transport, UpstreamTarget
from odock.mcp.links import Links, open_links
from odock.settings import load_settings
from tests.support.mcp_links import (
    CLIENT_PARAMS,
    collect,
    http_server,
    http_target,
    sse_server,
    text_of,
    tool_call,
)
from tests.support.mcp_servers import McpTestServer, crashing_server_command

__all__ = ["http_server", "sse_server"]


async def test_open_links_serves_every_transport_and_closes_them(
    tmp_path: Path, http_server: McpTestServer, sse_server: McpTestServer
) -> None:
    settings = load_settings(data_dir=tmp_path, demo=False)
    command, args = crashing_server_command()
    targets = [
        http_target(http_server.url, server_id="h"),
        http_target(sse_server.url, Transport.SSE, server_id="s"),
        UpstreamTarget("p", "p", Transport.STDIO, "1", command=command, args=args),
    ]
    async with open_links(settings) as links:
        assert isinstance(links, Links)
        assert set(links) == set(Transport)
        for target in targets:
            link = links[target.transport]
            binding = await link.open(target, CLIENT_PARAMS)
            [echoed] = await collect(link, target, binding, tool_call(1, "echo", text=target.transport.value))
            assert text_of(echoed) == target.transport.value
        [process] = links.stdio._pools["p"].processes
        assert process.process is not None
        pid = process.process.pid
        assert links.stdio.stats()["p"]["processes"] == 1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError("the STDIO process outlived the links")
