"""A tiny STDIO MCP server for the pool's crash, restart and capacity tests (run as a script).

Hand-written on purpose (no SDK import: it starts in a fraction of a second, so tests that start
many processes stay fast). Newline-delimited JSON-RPC on stdin/stdout; answers ``initialize``,
``ping``, ``tools/list`` and ``tools/call`` for: ``echo(text)``, ``pid()`` (this process's id),
``pause(seconds)`` (answers after that long; requests are served concurrently), ``crash()``
(writes "crashing on request" to stderr and exits with code 3). ``notifications/cancelled``
stops the named request. With ``ODOCK_TEST_CRASH_AT_START=1`` in its environment the process
writes "crashed at start" to stderr and exits with code 4 before serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

TOOLS = [
    {"name": name, "inputSchema": {"type": "object"}, "description": name}
    for name in ("echo", "pid", "pause", "crash")
]


def write(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def text_result(request_id: Any, text: str) -> None:
    write({"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}]}})


async def call(request_id: Any, params: dict[str, Any]) -> None:
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if name == "echo":
        text_result(request_id, str(arguments.get("text", "")))
    elif name == "pid":
        text_result(request_id, str(os.getpid()))
    elif name == "pause":
        await asyncio.sleep(float(arguments.get("seconds", 0)))
        text_result(request_id, "paused")
    elif name == "crash":
        sys.stderr.write("crashing on request\n")
        sys.stderr.flush()
        os._exit(3)
    else:
        write(
            {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": f"unknown tool {name}"}}
        )


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    running: dict[Any, asyncio.Task[None]] = {}
    while line := await reader.readline():
        if not line.strip():
            continue
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        params = message.get("params") or {}
        if method == "initialize":
            result = {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "crashing", "version": "1.0"},
            }
            write({"jsonrpc": "2.0", "id": request_id, "result": result})
        elif method == "ping":
            write({"jsonrpc": "2.0", "id": request_id, "result": {}})
        elif method == "tools/list":
            write({"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}})
        elif method == "tools/call":
            task = loop.create_task(call(request_id, params))
            running[request_id] = task
            task.add_done_callback(lambda _, key=request_id: running.pop(key, None))
        elif method == "notifications/cancelled":
            task = running.get(params.get("requestId"))
            if task is not None:
                task.cancel()
        elif request_id is not None:
            write(
                {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "no such method"}}
            )


def main() -> None:
    """Serve until stdin closes (or crash at once, when asked to)."""
    if os.environ.get("ODOCK_TEST_CRASH_AT_START") == "1":
        sys.stderr.write("crashed at start\n")
        sys.stderr.flush()
        sys.exit(4)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
