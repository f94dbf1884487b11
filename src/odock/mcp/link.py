"""The upstream side of the MCP gateway: one *link* per transport, behind one contract.

The gateway is the MCP server its clients talk to (Streamable HTTP, sessions it issues); for
each upstream server it is a client, through the link of that server's transport:

    STREAMABLE_HTTP  forwarding: each client session has an upstream session of its own
                     (initialize forwarded, ``Mcp-Session-Id`` kept in the binding), every
                     message is POSTed through, JSON or SSE answers relayed message by message
    SSE              bridged: the legacy HTTP+SSE transport (GET stream → ``endpoint`` event,
                     messages POSTed there, answers on the stream); a few gateway-initialized
                     upstream sessions per server, shared by client sessions, ids mapped
    STDIO            bridged: a supervised pool of server processes (newline-delimited JSON on
                     stdin/stdout), gateway-initialized, shared by client sessions, ids mapped

A :class:`Binding` is everything a replica needs to carry a client session on: it is stored in
the shared session store, so a session opened through one replica works through another (a
bridged link needs only the answer to ``initialize``; a forwarding link also the upstream
session id, and the client's initialize parameters to open a new one if the upstream forgot it).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

JsonRpc = dict[str, Any]  # one JSON-RPC 2.0 message (request, notification, response or error)

HANDSHAKE_VERSION = "2025-11-25"  # the protocol revision the gateway offers upstream when it initializes
GATEWAY_CLIENT_INFO = {"name": "odock-gateway", "version": "1"}


class Transport(StrEnum):
    """How the gateway reaches an upstream MCP server."""

    STREAMABLE_HTTP = "STREAMABLE_HTTP"
    SSE = "SSE"
    STDIO = "STDIO"


class AuthType(StrEnum):
    """How the gateway authenticates to an upstream MCP server (never with the caller's key)."""

    NONE = "NONE"
    BEARER = "BEARER"
    BASIC = "BASIC"
    OAUTH2 = "OAUTH2"


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """What a link needs to reach one server; secrets are plaintext here, in memory only."""

    server_id: str
    slug: str
    transport: Transport
    version: str  # changes whenever the server row changes: pooled channels of an older one retire
    endpoint_url: str | None = None  # STREAMABLE_HTTP, SSE
    command: str | None = None  # STDIO
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # STDIO: added to the gateway's environment
    headers: dict[str, str] = field(default_factory=dict)  # extra headers sent upstream (HTTP, SSE)
    auth_type: AuthType = AuthType.NONE
    # BEARER {"token"}; BASIC {"username", "password"};
    # OAUTH2 {"token_url", "client_id", "client_secret", "scope"?, "audience"?}
    auth_config: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float = 60.0  # the longest the gateway waits for one answer


@dataclass(slots=True)
class Binding:
    """The upstream side of one client session on one server (JSON-serialisable, see the module doc)."""

    protocol_version: str
    initialize_result: dict[str, Any]  # what the upstream answered to initialize (capabilities, info)
    upstream_session_id: str | None = None  # forwarding links
    client_params: dict[str, Any] = field(default_factory=dict)  # the client's initialize params

    def to_json(self) -> dict[str, Any]:
        """The binding as stored in the session store."""
        return {
            "protocol_version": self.protocol_version,
            "initialize_result": self.initialize_result,
            "upstream_session_id": self.upstream_session_id,
            "client_params": self.client_params,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Binding:
        """Inverse of :meth:`to_json`."""
        return cls(
            protocol_version=data["protocol_version"],
            initialize_result=data["initialize_result"],
            upstream_session_id=data.get("upstream_session_id"),
            client_params=data.get("client_params") or {},
        )


class Link(Protocol):
    """One upstream transport. Failures raise ``McpUpstreamError`` / ``McpAuthError`` /
    ``McpStdioError`` (odock.errors), with a message that names the server and what went wrong."""

    async def open(self, target: UpstreamTarget, client_params: dict[str, Any]) -> Binding:
        """Start a session for a client that sent ``initialize`` with ``client_params``."""

    def exchange(
        self, target: UpstreamTarget, binding: Binding, messages: list[JsonRpc]
    ) -> AsyncGenerator[JsonRpc, None]:
        """Send the client's ``messages`` upstream and yield what comes back for them.

        ``messages`` are requests, notifications (e.g. ``notifications/cancelled``) and responses
        to server requests, never ``initialize``. The iterator yields, in the order the upstream
        sent them, the messages that belong to these requests (progress and log notifications,
        server→client requests, then one response per request, with the client's ids) and ends
        after the last response (at once when ``messages`` hold no request). Closing it early
        (the client left) cancels the requests still open upstream. A forwarding link whose
        upstream forgot the session opens a new one and updates ``binding`` in place.
        """

    def listen(self, target: UpstreamTarget, binding: Binding) -> AsyncGenerator[JsonRpc, None]:
        """The session's server stream (the client's GET): messages the upstream sends unprompted
        (``notifications/tools/list_changed``, resource updates), until it closes or the iterator
        is closed."""

    async def close(self, target: UpstreamTarget, binding: Binding) -> None:
        """End the session (the client's DELETE)."""

    async def aclose(self) -> None:
        """Stop everything: pooled processes and connections (the gateway's shutdown)."""
