"""JSON-RPC 2.0 as MCP carries it: reading a POSTed body, telling messages apart, error replies.

A body is one message or a batch (a JSON array, accepted as the 2025-03-26 revision allows).
A *request* has a ``method`` and an ``id``; a *notification* a ``method`` and no ``id``; a
*response* an ``id`` and a ``result`` or an ``error``. Refusals go back as JSON-RPC errors whose
``data`` carries Odock's stable ``code`` and HTTP ``status``, so the ``mcp`` SDK raises an
``MCPError`` with the gateway's message and an HTTP client still reads the code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from odock.errors import InvalidMcpMessage, OdockError
from odock.mcp.link import JsonRpc

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
GATEWAY_REFUSAL = -32000  # the server-error range: a refusal or failure of the gateway itself

INITIALIZE = "initialize"
TOOLS_CALL = "tools/call"
TOOLS_LIST = "tools/list"


def parse_body(body: bytes) -> tuple[list[JsonRpc], bool]:
    """The messages of a POSTed body and whether it was a batch; 400 ``invalid_mcp_message`` else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMcpMessage(f"the body is not JSON: {exc}") from None
    batch = isinstance(data, list)
    messages = data if batch else [data]
    if not messages:
        raise InvalidMcpMessage("an empty batch")
    for message in messages:
        _check(message)
    if batch and any(m.get("method") == INITIALIZE for m in messages):
        raise InvalidMcpMessage("initialize cannot be sent in a batch")
    return messages, batch


def _check(message: object) -> None:
    if not isinstance(message, dict):
        raise InvalidMcpMessage("a JSON-RPC message is a JSON object")
    if message.get("jsonrpc") != "2.0":
        raise InvalidMcpMessage('a JSON-RPC message has "jsonrpc": "2.0"')
    if "id" in message and not _valid_id(message["id"]):
        raise InvalidMcpMessage("a JSON-RPC id is a string or an integer")
    method = message.get("method")
    if method is not None:
        if not isinstance(method, str) or not method:
            raise InvalidMcpMessage("a JSON-RPC method is a non-empty string")
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            raise InvalidMcpMessage(f"the params of '{method}' are a JSON object")
        if method == TOOLS_CALL and "id" in message:
            name = (params or {}).get("name")
            if not isinstance(name, str) or not name:
                raise InvalidMcpMessage("tools/call names its tool in params.name")
    elif "id" not in message or ("result" not in message and "error" not in message):
        raise InvalidMcpMessage("a JSON-RPC message is a request, a notification or a response")


def _valid_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def is_request(message: JsonRpc) -> bool:
    """A message that expects a response."""
    return "method" in message and "id" in message


def is_response(message: JsonRpc) -> bool:
    """A result or an error answering a request."""
    return "method" not in message and "id" in message


def requests(messages: Iterable[JsonRpc]) -> list[JsonRpc]:
    """The requests among ``messages``."""
    return [m for m in messages if is_request(m)]


def tool_name(message: JsonRpc) -> str | None:
    """The tool a ``tools/call`` request calls (None for any other message)."""
    if message.get("method") != TOOLS_CALL:
        return None
    name = (message.get("params") or {}).get("name")
    return name if isinstance(name, str) else None


def error_reply(message_id: Any, error: OdockError) -> JsonRpc:
    """A JSON-RPC error answering ``message_id`` with an Odock error (code and status in ``data``)."""
    code = INVALID_REQUEST if error.http_status == 400 else GATEWAY_REFUSAL
    data: dict[str, object] = {"code": error.code, "status": error.http_status, **error.extra}
    return {
        "jsonrpc": "2.0",
        "id": message_id,
        "error": {"code": code, "message": error.message, "data": data},
    }


def result_reply(message_id: Any, result: dict[str, Any]) -> JsonRpc:
    """A JSON-RPC result."""
    return {"jsonrpc": "2.0", "id": message_id, "result": result}
