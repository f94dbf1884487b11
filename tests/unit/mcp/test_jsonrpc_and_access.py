"""JSON-RPC reading and the request-time access and tool rules of the MCP gateway."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from odock.errors import InvalidMcpMessage, McpGuardrailBlock, McpNotAllowed, McpNotFound
from odock.keys.principal import KeyPrincipal, McpGrant
from odock.mcp import access
from odock.mcp.jsonrpc import error_reply, parse_body, tool_name
from odock.mcp.link import Transport, UpstreamTarget
from odock.mcp.resolved import ResolvedMcpServer


def server(**fields: Any) -> ResolvedMcpServer:
    target = UpstreamTarget(
        server_id="srv", slug="files", transport=Transport.STDIO, version="1", command="x"
    )
    values: dict[str, Any] = {
        "id": "srv",
        "organisation_id": "org",
        "slug": "files",
        "name": "Files",
        "enabled": True,
    }
    return ResolvedMcpServer(**{**values, "target": target, **fields})


def principal(*grants: McpGrant, team: str | None = "team") -> KeyPrincipal:
    return KeyPrincipal(
        key_id="key", key_hash="h", organisation_id="org", team_id=team, user_id=None, type="TEAM",  # type: ignore[arg-type]
        name="k", expires_at=None, revoked=False, granted=(), mcp_grants=grants,
    )  # fmt: skip


def call(tool: str, message_id: int = 1, **arguments: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": message_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{", "not JSON"),
        (b"[]", "an empty batch"),
        (b"42", "a JSON-RPC message is a JSON object"),
        (b'{"id": 1, "method": "ping"}', '"jsonrpc": "2.0"'),
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', "a string or an integer"),
        (b'{"jsonrpc": "2.0", "id": true, "method": "ping"}', "a string or an integer"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": ""}', "non-empty string"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}', "JSON object"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}', "params.name"),
        (b'{"jsonrpc": "2.0", "id": 1}', "a request, a notification or a response"),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "initialize"}]', "initialize cannot be sent in a batch"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body: bytes, why: str) -> None:
    with pytest.raises(InvalidMcpMessage, match=why):
        parse_body(body)


def test_messages_and_batches() -> None:
    single, batch = parse_body(orjson.dumps(call("echo")))
    assert (len(single), batch, tool_name(single[0])) == (1, False, "echo")
    messages, batch = parse_body(
        orjson.dumps(
            [
                call("a", 1),
                {"jsonrpc": "2.0", "method": "notifications/cancelled"},
                {"jsonrpc": "2.0", "id": 9, "result": {}},
            ]
        )
    )
    assert (len(messages), batch) == (3, True)
    assert tool_name(messages[1]) is None


def test_error_replies_carry_the_stable_code_and_status() -> None:
    reply = error_reply(7, McpGuardrailBlock("no", extra={"rule": "blocked_tools"}))
    assert reply["id"] == 7
    assert reply["error"]["code"] == -32000
    assert reply["error"]["data"] == {"code": "mcp_guardrail_block", "status": 403, "rule": "blocked_tools"}
    assert error_reply(None, InvalidMcpMessage("bad"))["error"]["code"] == -32600


def test_access_needs_an_enabled_server_a_grant_and_the_scope() -> None:
    granted = principal(McpGrant("srv"))
    assert access.admitted(granted, server(), "files") == McpGrant("srv")
    with pytest.raises(McpNotFound):
        access.admitted(granted, None, "files")
    with pytest.raises(McpNotFound):
        access.admitted(granted, server(enabled=False), "files")
    with pytest.raises(McpNotAllowed, match="no grant"):
        access.admitted(principal(), server(), "files")
    with pytest.raises(McpNotAllowed, match="one team"):
        access.admitted(granted, server(team_id="other"), "files")
    with pytest.raises(McpNotAllowed, match="one API key"):
        access.admitted(granted, server(api_key_id="another"), "files")
    assert access.usable(granted, server(team_id="team", api_key_id="key"))


@pytest.mark.parametrize(
    ("rules", "grant_tools", "tool", "rule"),
    [
        ({}, None, "read", None),
        ({"blocked_tools": frozenset({"write"})}, None, "write", "blocked_tools"),
        (
            {"allowed_tools": frozenset({"read"}), "blocked_tools": frozenset({"read"})},
            None,
            "read",
            "blocked_tools",
        ),
        ({"allowed_tools": frozenset({"read"})}, None, "list", "allowed_tools"),
        ({}, frozenset({"read"}), "write", "tool_grants"),
        ({}, frozenset(), "read", "tool_grants"),
        ({}, frozenset({"read"}), "read", None),
    ],
)
def test_tool_rules(
    rules: dict[str, Any], grant_tools: frozenset[str] | None, tool: str, rule: str | None
) -> None:
    refusal = access.refusal(server(**rules), McpGrant("srv", grant_tools), call(tool))
    assert (refusal.extra["rule"] if refusal else None) == rule


def test_semantic_filter_is_case_insensitive_on_parameters_only() -> None:
    guarded = server(blocked_keywords=("rm -rf",))
    refusal = access.refusal(guarded, McpGrant("srv"), call("shell", command="sudo RM -RF /"))
    assert isinstance(refusal, McpGuardrailBlock)
    assert refusal.extra["rule"] == "semantic_filter"
    assert access.refusal(guarded, McpGrant("srv"), call("shell", command="ls")) is None


def test_tools_list_shows_only_what_the_key_may_call() -> None:
    listed = {"tools": [{"name": "read"}, {"name": "write"}, {"name": "list"}, {"bad": 1}], "nextCursor": "c"}
    visible = access.visible_tools(
        server(blocked_tools=frozenset({"write"})), McpGrant("srv", frozenset({"read", "write"})), listed
    )
    assert visible == {"tools": [{"name": "read"}], "nextCursor": "c"}
