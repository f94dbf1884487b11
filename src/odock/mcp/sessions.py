"""MCP sessions, shared by every replica.

The gateway issues the ``Mcp-Session-Id`` its clients see. A session names the key that opened
it (by hash: another key presenting the id gets 404), the endpoint it was opened on (one server
by id, or the aggregate endpoint) and, per upstream server, the :class:`~odock.mcp.link.Binding`
that carries it upstream. It lives in the shared cache (Redis in production, in-process when
embedded) for ``mcp_session_ttl_seconds`` after its last use, so a request may land on any
replica: a forwarding link finds the upstream session id in the binding, a bridged link
(SSE, STDIO) needs nothing more than the initialize answer it holds, since every replica's
channels are initialized by the gateway alike.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from odock.cache.shared import SharedCache
from odock.mcp.link import Binding

AGGREGATE = "*"  # the server a session of the aggregate endpoint names


@dataclass(slots=True)
class McpSession:
    """One client session of the MCP gateway."""

    id: str
    key_hash: str
    server: str  # the server id, or AGGREGATE
    protocol_version: str
    client_params: dict[str, Any] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)  # by server id
    touched: float = 0.0  # wall-clock seconds of the last save

    def to_json(self) -> bytes:
        """The stored form."""
        return orjson.dumps(
            {
                "id": self.id,
                "key_hash": self.key_hash,
                "server": self.server,
                "protocol_version": self.protocol_version,
                "client_params": self.client_params,
                "bindings": {sid: b.to_json() for sid, b in self.bindings.items()},
                "touched": self.touched,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> McpSession:
        """Inverse of :meth:`to_json`."""
        data = orjson.loads(raw)
        return cls(
            id=data["id"],
            key_hash=data["key_hash"],
            server=data["server"],
            protocol_version=data["protocol_version"],
            client_params=data.get("client_params") or {},
            bindings={sid: Binding.from_json(b) for sid, b in data.get("bindings", {}).items()},
            touched=data.get("touched", 0.0),
        )


class McpSessionStore:
    """Sessions in the shared cache, with a sliding expiry."""

    def __init__(self, shared: SharedCache, ttl: float) -> None:
        self._shared = shared
        self._ttl = ttl

    @staticmethod
    def _key(session_id: str) -> str:
        return f"mcp:session:{session_id}"

    async def open(
        self,
        key_hash: str,
        server: str,
        protocol_version: str,
        client_params: dict[str, Any],
        bindings: dict[str, Binding] | None = None,
    ) -> McpSession:
        """A new session (unguessable id), saved."""
        session = McpSession(
            secrets.token_hex(16), key_hash, server, protocol_version, client_params, dict(bindings or {})
        )
        await self.save(session)
        return session

    async def get(self, session_id: str, key_hash: str, server: str) -> McpSession | None:
        """The session, if it exists, belongs to this key and was opened on this endpoint.

        Its expiry slides: a session used after a quarter of its lifetime is saved again.
        """
        if not session_id or len(session_id) > 128:
            return None
        raw = await self._shared.get(self._key(session_id))
        if raw is None:
            return None
        session = McpSession.from_json(raw)
        if session.key_hash != key_hash or session.server != server:
            return None
        if time.time() - session.touched > self._ttl / 4:
            await self.save(session)
        return session

    async def save(self, session: McpSession) -> None:
        """Store the session (after a binding changed, or to extend its life)."""
        session.touched = time.time()
        await self._shared.set(self._key(session.id), session.to_json(), self._ttl)

    async def end(self, session: McpSession) -> None:
        """Forget the session (the client's DELETE)."""
        await self._shared.delete(self._key(session.id))
