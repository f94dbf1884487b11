"""Who may use an MCP server, and which of its tools (spec §10.1, §10.4, §16).

Access: the server must be enabled (else 404 ``mcp_not_found``, as if it did not exist), the key
must hold a grant for it, and a server scoped to a team or a key admits only that team's keys or
that key (403 ``mcp_not_allowed``).

Tools, on every ``tools/call`` (each message of a batch on its own): the server's blocked tools
are refused, then, when the server lists allowed tools, every other tool; then the key's own
tool grants, when it has any for the server (deny by default). The semantic filter refuses a
request whose parameters contain one of the server's blocked keywords (case-insensitive
substring: a coarse net, not a substitute for grants). All three answer 403
``mcp_guardrail_block`` naming the rule. ``tools/list`` answers are filtered by the same rules,
so a key only sees the tools it may call.
"""

from __future__ import annotations

from typing import Any

import orjson

from odock.errors import McpGuardrailBlock, McpNotAllowed, McpNotFound
from odock.keys.principal import KeyPrincipal
from odock.mcp.jsonrpc import is_request, tool_name
from odock.mcp.link import JsonRpc
from odock.mcp.resolved import McpGrant, ResolvedMcpServer


def admitted(principal: KeyPrincipal, server: ResolvedMcpServer | None, ident: str) -> McpGrant:
    """The key's grant for ``server`` (named ``ident`` by the client), or the refusal."""
    if server is None or not server.enabled:
        raise McpNotFound(f"no enabled MCP server '{ident}' in this organisation")
    grant = principal.mcp_grant(server.id)
    if grant is None:
        raise McpNotAllowed(f"this API key holds no grant for MCP server '{server.slug}'")
    if server.team_id is not None and principal.team_id != server.team_id:
        raise McpNotAllowed(f"MCP server '{server.slug}' is limited to one team's keys")
    if server.api_key_id is not None and principal.key_id != server.api_key_id:
        raise McpNotAllowed(f"MCP server '{server.slug}' is limited to one API key")
    return grant


def usable(principal: KeyPrincipal, server: ResolvedMcpServer) -> bool:
    """True when the key may use ``server`` (what the aggregate endpoint lists)."""
    try:
        admitted(principal, server, server.slug)
    except (McpNotFound, McpNotAllowed):
        return False
    return True


def tool_refusal(server: ResolvedMcpServer, grant: McpGrant, tool: str) -> McpGuardrailBlock | None:
    """Why the key may not call ``tool`` on ``server``, or None."""
    if tool in server.blocked_tools:
        return McpGuardrailBlock(
            f"tool '{tool}' is blocked on MCP server '{server.slug}'", extra={"rule": "blocked_tools"}
        )
    if server.allowed_tools and tool not in server.allowed_tools:
        return McpGuardrailBlock(
            f"tool '{tool}' is not among the allowed tools of MCP server '{server.slug}'",
            extra={"rule": "allowed_tools"},
        )
    if not grant.may_call(tool):
        return McpGuardrailBlock(
            f"this API key holds no grant for tool '{tool}' on MCP server '{server.slug}'",
            extra={"rule": "tool_grants"},
        )
    return None


def refusal(server: ResolvedMcpServer, grant: McpGrant, message: JsonRpc) -> McpGuardrailBlock | None:
    """Why ``message`` may not go to ``server``, or None (tool rules, then the semantic filter)."""
    tool = tool_name(message)
    if tool is not None and (refused := tool_refusal(server, grant, tool)) is not None:
        return refused
    if server.blocked_keywords and is_request(message):
        text = orjson.dumps(message.get("params") or {}).decode().lower()
        for keyword in server.blocked_keywords:
            if keyword.lower() in text:
                return McpGuardrailBlock(
                    f"the request contains a keyword MCP server '{server.slug}' blocks ('{keyword}')",
                    extra={"rule": "semantic_filter"},
                )
    return None


def visible_tools(server: ResolvedMcpServer, grant: McpGrant, result: dict[str, Any]) -> dict[str, Any]:
    """A ``tools/list`` result with only the tools the key may call."""
    tools = result.get("tools")
    if not isinstance(tools, list):
        return result
    kept = [
        tool
        for tool in tools
        if isinstance(tool, dict)
        and isinstance(tool.get("name"), str)
        and tool_refusal(server, grant, tool["name"]) is None
    ]
    return {**result, "tools": kept}
