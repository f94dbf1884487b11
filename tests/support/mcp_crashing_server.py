"""A tiny STDIO MCP server for crash and restart tests (run as a script by the STDIO link tests).

Tools: ``echo(text)``, ``pid()`` (this process's id), ``pause(seconds)`` (answers after that
long, to keep requests in flight), ``crash()`` (writes "crashing on request" to stderr and exits
with code 3). With ``ODOCK_TEST_CRASH_AT_START=1`` in its environment the process writes
"crashed at start" to stderr and exits with code 4 before serving.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer


def main() -> None:
    """Serve over STDIO (or crash at once, when asked to)."""
    if os.environ.get("ODOCK_TEST_CRASH_AT_START") == "1":
        print("crashed at start", file=sys.stderr, flush=True)
        sys.exit(4)
    server: MCPServer = MCPServer(name="crashing", version="1.0")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return text

    @server.tool()
    def pid() -> int:
        """This process's id."""
        return os.getpid()

    @server.tool()
    async def pause(seconds: float) -> str:
        """Answer after ``seconds``."""
        await anyio.sleep(seconds)
        return "paused"

    @server.tool()
    def crash() -> str:
        """Exit the process with code 3."""
        print("crashing on request", file=sys.stderr, flush=True)
        os._exit(3)

    anyio.run(server.run_stdio_async)


if __name__ == "__main__":
    main()
