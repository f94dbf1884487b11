"""Shared pieces of the MCP link tests: targets, client params, collecting an exchange, fixtures.

Test modules import the fixtures they use (``from tests.support.mcp_links import http_server``);
the servers are session-scoped (started once, shared).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from odock.mcp.link import AuthType, Binding, JsonRpc, Link, Transport, UpstreamTarget
from tests.support.mcp_servers import McpTestServer

CLIENT_PARAMS: dict[str, Any] = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "link-test", "version": "1"},
}


def http_target(
    url: str,
    transport: Transport = Transport.STREAMABLE_HTTP,
    *,
    server_id: str = "srv-1",
    version: str = "1",
    auth_type: AuthType = AuthType.NONE,
    auth_config: dict[str, str] | None = None,
    timeout_seconds: float = 10.0,
    headers: dict[str, str] | None = None,
) -> UpstreamTarget:
    """A target for an HTTP (or SSE) test server."""
    return UpstreamTarget(
        server_id=server_id,
        slug=f"test-{server_id}",
        transport=transport,
        version=version,
        endpoint_url=url,
        headers=headers or {},
        auth_type=auth_type,
        auth_config=auth_config or {},
        timeout_seconds=timeout_seconds,
    )


def request(request_id: Any, method: str, params: dict[str, Any] | None = None) -> JsonRpc:
    """A JSON-RPC request."""
    message: JsonRpc = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def tool_call(request_id: Any, name: str, progress: Any = None, **arguments: Any) -> JsonRpc:
    """A ``tools/call`` request (with a progress token when ``progress`` is given)."""
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if progress is not None:
        params["_meta"] = {"progressToken": progress}
    return request(request_id, "tools/call", params)


async def collect(link: Link, target: UpstreamTarget, binding: Binding, *messages: JsonRpc) -> list[JsonRpc]:
    """Every message an exchange yields."""
    return [message async for message in link.exchange(target, binding, list(messages))]


def text_of(response: JsonRpc) -> str:
    """The first text content of a ``tools/call`` result."""
    return str(response["result"]["content"][0]["text"])


def closed_port_url(path: str = "/mcp") -> str:
    """A localhost URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@pytest.fixture(scope="session")
def http_server() -> Iterator[McpTestServer]:
    """The Streamable HTTP test server (SSE answers)."""
    with McpTestServer("streamable_http") as server:
        yield server


@pytest.fixture(scope="session")
def sse_server() -> Iterator[McpTestServer]:
    """The legacy HTTP+SSE test server."""
    with McpTestServer("sse") as server:
        yield server
