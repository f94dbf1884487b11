"""The MCP tests' shared upstreams: one SDK test server over Streamable HTTP and one over the
legacy SSE transport for the whole session (tests/support/mcp_links.py)."""

from __future__ import annotations

from tests.support.mcp_links import http_server, sse_server

__all__ = ["http_server", "sse_server"]
