"""The MCP directory: (organisation, slug or id) → :class:`ResolvedMcpServer`, from the cache tiers.

The hot path's lookup of MCP servers, like ``ModelCatalog`` for models::

    resolve(org, ident) ─► in-process tier ─► shared tier (Redis in production) ─► database
                           (records: secrets still encrypted, as stored)
                        ─► opened once per (server, row version), kept in process memory only

The tiers hold :class:`McpServerRecord` (the row as stored: the shared tier never holds a
plaintext secret); the secrets are opened into the :class:`~odock.mcp.link.UpstreamTarget` of
the resolved server, cached by ``(id, version)`` where the version is the row's ``updated_at``,
so a changed server is opened afresh and an unchanged one never twice. A write publishes the
organisation's invalidation (:class:`~odock.mcp.service.McpServerService`): every entry of that
organisation leaves the in-process tier, and the shared tier's generation moves on.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.cache.local import TtlCache
from odock.cache.lookup import TieredLookup
from odock.cache.shared import SharedCache
from odock.errors import DependencyUnavailable, McpUpstreamError
from odock.mcp.link import AuthType, Transport, UpstreamTarget
from odock.mcp.resolved import McpPricing, ResolvedMcpServer
from odock.mcp.secrets import open_auth, open_values
from odock.mcp.tables import McpServer
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError

log = logging.getLogger(__name__)

MAX_IDENT = 100  # slugs are at most 100 characters, ids 26


@dataclass(frozen=True, slots=True)
class McpServerRecord:
    """An MCP server as the cache tiers hold it: secrets still envelopes, as stored."""

    id: str
    organisation_id: str
    slug: str
    name: str
    enabled: bool
    transport: str
    version: str
    endpoint_url: str | None = None
    stdio_command: str | None = None
    stdio_args: list[str] = field(default_factory=list)
    stdio_env: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    auth_type: str = AuthType.NONE.value
    auth_config: dict[str, Any] = field(default_factory=dict)
    team_id: str | None = None
    api_key_id: str | None = None
    allowed_tools: list[str] = field(default_factory=list)
    blocked_tools: list[str] = field(default_factory=list)
    blocked_keywords: list[str] = field(default_factory=list)
    pricing: dict[str, Any] = field(default_factory=dict)
    policies: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, server: McpServer) -> McpServerRecord:
        """The record of a stored row."""
        keywords = (server.semantic_filter or {}).get("blocked_keywords") or []
        return cls(
            id=server.id,
            organisation_id=server.organisation_id,
            slug=server.slug,
            name=server.name,
            enabled=server.enabled,
            transport=server.transport,
            version=server.updated_at.isoformat(),
            endpoint_url=server.endpoint_url,
            stdio_command=server.stdio_command,
            stdio_args=list(server.stdio_args or []),
            stdio_env=dict(server.stdio_env or {}),
            headers=dict(server.headers or {}),
            auth_type=server.auth_type,
            auth_config=dict(server.auth_config or {}),
            team_id=server.team_id,
            api_key_id=server.api_key_id,
            allowed_tools=list(server.allowed_tools or []),
            blocked_tools=list(server.blocked_tools or []),
            blocked_keywords=[str(k) for k in keywords],
            pricing=dict(server.pricing or {}),
            policies=dict(server.policies or {}),
        )

    def to_json(self) -> bytes:
        """Serialise for the shared cache."""
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, raw: bytes) -> McpServerRecord:
        """Inverse of :meth:`to_json`."""
        return cls(**orjson.loads(raw))


def _encode_all(records: list[McpServerRecord]) -> bytes:
    return orjson.dumps([asdict(r) for r in records])


def _decode_all(raw: bytes) -> list[McpServerRecord]:
    return [McpServerRecord(**item) for item in orjson.loads(raw)]


class McpDirectory:
    """Resolves MCP servers within an organisation, without the database once warm."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        shared: SharedCache,
        bus: InvalidationBus,
        decrypter: EnvelopeDecrypter | None,
        *,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
        timeout_seconds: float = 60.0,
    ) -> None:
        self._sessions = sessions
        self._decrypter = decrypter
        self._ttl = ttl
        self._timeout = timeout_seconds
        self._lookup: TieredLookup[McpServerRecord] = TieredLookup(
            "mcp",
            local=TtlCache(max_entries),
            shared=shared,
            bus=bus,
            loader=self._load,
            encode=McpServerRecord.to_json,
            decode=McpServerRecord.from_json,
            ttl=ttl,
            negative_ttl=negative_ttl,
        )
        self._all: TieredLookup[list[McpServerRecord]] = TieredLookup(
            "mcp-all",
            local=TtlCache(max_entries),
            shared=shared,
            bus=bus,
            loader=self._load_all,
            encode=_encode_all,
            decode=_decode_all,
            ttl=ttl,
            negative_ttl=negative_ttl,
        )
        self._opened: TtlCache[tuple[str, str], ResolvedMcpServer] = TtlCache(max_entries)
        self.decrypt_failures = 0
        bus.subscribe(self._on_invalidation)

    async def resolve(self, organisation_id: str, ident: str) -> ResolvedMcpServer | None:
        """The organisation's server with this slug or id (enabled or not), or None.

        Raises ``McpUpstreamError`` when a secret of the server cannot be opened by this gateway,
        ``DependencyUnavailable`` when the database cannot be read on a cold lookup.
        """
        if not ident or len(ident) > MAX_IDENT or "\x00" in ident or "/" in ident:
            return None
        record = await self._lookup.get(f"{organisation_id}/{ident}")
        return None if record is None else self._resolved(record)

    async def servers(self, organisation_id: str) -> list[ResolvedMcpServer]:
        """Every server of the organisation (enabled or not), by slug."""
        records = await self._all.get(organisation_id) or []
        return [self._resolved(r) for r in records]

    def _resolved(self, record: McpServerRecord) -> ResolvedMcpServer:
        key = (record.id, record.version)
        opened = self._opened.get(key)
        if opened is None:
            opened = self._open(record)
            self._opened.set(key, opened, self._ttl)
        return opened

    def _open(self, record: McpServerRecord) -> ResolvedMcpServer:
        try:
            auth_config = open_auth(record.auth_config, self._decrypter)
            headers = open_values(record.headers, self._decrypter)
            env = open_values(record.stdio_env, self._decrypter)
        except EnvelopeError as exc:
            self.decrypt_failures += 1
            log.error("a secret of MCP server %s cannot be opened: %s", record.id, exc)
            raise McpUpstreamError(
                f"a secret of MCP server '{record.slug}' cannot be decrypted by this gateway"
            ) from exc
        target = UpstreamTarget(
            server_id=record.id,
            slug=record.slug,
            transport=Transport(record.transport),
            version=record.version,
            endpoint_url=record.endpoint_url,
            command=record.stdio_command,
            args=tuple(record.stdio_args),
            env=env,
            headers=headers,
            auth_type=AuthType(record.auth_type),
            auth_config=auth_config,
            timeout_seconds=self._timeout,
        )
        return ResolvedMcpServer(
            id=record.id,
            organisation_id=record.organisation_id,
            slug=record.slug,
            name=record.name,
            enabled=record.enabled,
            target=target,
            team_id=record.team_id,
            api_key_id=record.api_key_id,
            allowed_tools=frozenset(record.allowed_tools),
            blocked_tools=frozenset(record.blocked_tools),
            blocked_keywords=tuple(k.lower() for k in record.blocked_keywords),
            pricing=McpPricing.from_json(record.pricing),
            policies=dict(record.policies),
        )

    def _on_invalidation(self, inv: Invalidation) -> None:
        if inv.scope == "all":
            self._lookup.local.clear()
            self._all.local.clear()
            self._opened.clear()
        elif inv.scope == "organisation" and inv.organisation_id:
            org = inv.organisation_id
            prefix = org + "/"
            self._lookup.local.delete_where(lambda k, _v: k.startswith(prefix))
            self._all.local.delete(org)

    async def _load(self, cache_key: str) -> McpServerRecord | None:
        organisation_id, _, ident = cache_key.partition("/")
        query = select(McpServer).where(
            McpServer.organisation_id == organisation_id, or_(McpServer.slug == ident, McpServer.id == ident)
        )
        try:
            async with self._sessions() as session:
                rows = list((await session.execute(query)).scalars())
        except SQLAlchemyError as exc:
            raise DependencyUnavailable("MCP server lookup unavailable") from exc
        if not rows:
            return None
        # An id and another server's slug can be the same text: the id wins.
        return McpServerRecord.of(next((r for r in rows if r.id == ident), rows[0]))

    async def _load_all(self, organisation_id: str) -> list[McpServerRecord]:
        query = select(McpServer).where(McpServer.organisation_id == organisation_id).order_by(McpServer.slug)
        try:
            async with self._sessions() as session:
                return [McpServerRecord.of(r) for r in (await session.execute(query)).scalars()]
        except SQLAlchemyError as exc:
            raise DependencyUnavailable("MCP server lookup unavailable") from exc
