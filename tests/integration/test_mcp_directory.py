"""The MCP directory: servers resolved by slug or id, secrets opened in memory only, no SQL once warm,
changes seen at once (in the process, and by another runtime on the shared Redis bus)."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from odock.cache.bus import Invalidation
from odock.mcp.link import AuthType, Transport
from odock.mcp.resolved import McpPricing
from odock.runtime import Runtime, open_runtime
from odock.settings import Settings
from tests.conftest import SettingsFactory

ALLOWED = "odock-test-mcp"
SECRETS = ("bearer-token-1", "header-value-2", "env-value-3")


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every SQL statement the runtime's engine runs inside the block."""
    seen: list[str] = []
    lock = threading.Lock()

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        with lock:
            seen.append(statement)

    engine = runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def settings(make_backend_settings: SettingsFactory) -> Settings:
    """Settings of the backend under test (made outside the event loop), allowing one STDIO command."""
    return make_backend_settings(mcp_stdio_allowed_commands=[ALLOWED])


async def _server(runtime: Runtime, organisation_id: str, slug: str = "files", **extra: Any) -> str:
    fields = {
        "name": "Files",
        "slug": slug,
        "transport": "STREAMABLE_HTTP",
        "endpoint_url": "https://mcp.example.test/files",
        "auth_type": "BEARER",
        "auth_config": {"token": SECRETS[0]},
        "headers": {"X-Org": SECRETS[1]},
        "allowed_tools": ["read"],
        "blocked_tools": ["write"],
        "semantic_filter": {"blocked_keywords": ["DROP TABLE"]},
        "pricing": {"call_nanos_usd": 1000, "input_byte_nanos_usd": 50, "output_byte_nanos_usd": 50},
        "policies": {"ratelimit": {"requests": {"per_minute": 300}}},
    }
    server = await runtime.control.mcp_servers.create(organisation_id, fields | extra)
    return server.id


async def test_resolves_by_slug_and_id_with_secrets_opened(settings: Settings) -> None:
    """Slug and id name the same server; the target carries the plaintext secrets, the shared tier none."""
    async with open_runtime(settings) as runtime:
        org = (await runtime.control.tenancy.create_organisation(f"mcp-{secrets.token_hex(4)}")).id
        other = (await runtime.control.tenancy.create_organisation(f"other-{secrets.token_hex(4)}")).id
        server_id = await _server(runtime, org)
        stdio_id = await _server(
            runtime,
            org,
            slug="local",
            transport="STDIO",
            endpoint_url=None,
            stdio_command=ALLOWED,
            stdio_args=["--flag"],
            stdio_env={"TOKEN": SECRETS[2]},
            auth_type="NONE",
            auth_config={},
            headers={},
        )
        by_slug = await runtime.mcp_servers.resolve(org, "files")
        by_id = await runtime.mcp_servers.resolve(org, server_id)
        assert by_slug is not None
        assert by_id is not None
        assert by_slug == by_id
        assert (by_slug.id, by_slug.slug, by_slug.enabled) == (server_id, "files", True)
        target = by_slug.target
        assert (target.transport, target.endpoint_url, target.auth_type) == (
            Transport.STREAMABLE_HTTP,
            "https://mcp.example.test/files",
            AuthType.BEARER,
        )
        assert target.auth_config == {"token": SECRETS[0]}
        assert target.headers == {"X-Org": SECRETS[1]}
        assert target.timeout_seconds == runtime.settings.mcp_upstream_timeout_seconds
        assert by_slug.tool_permitted("read")
        assert not by_slug.tool_permitted("write")
        assert not by_slug.tool_permitted("other")
        assert by_slug.blocked_keywords == ("drop table",)
        assert by_slug.pricing == McpPricing(1000, 50, 50)
        assert by_slug.policies["ratelimit"]["requests"]["per_minute"] == 300
        stdio = await runtime.mcp_servers.resolve(org, "local")
        assert stdio is not None
        assert (stdio.target.command, stdio.target.args, stdio.target.env) == (
            ALLOWED,
            ("--flag",),
            {"TOKEN": SECRETS[2]},
        )
        assert await runtime.mcp_servers.resolve(org, "missing") is None
        assert await runtime.mcp_servers.resolve(other, "files") is None
        assert await runtime.mcp_servers.resolve(other, server_id) is None
        assert await runtime.mcp_servers.resolve(org, "bad\x00slug") is None
        assert [s.id for s in await runtime.mcp_servers.servers(org)] == [server_id, stdio_id]
        assert await runtime.mcp_servers.servers(other) == []
        # The shared tier holds the row as stored: envelopes, never a plaintext secret.
        shared = await runtime.shared.get(f"mcp:g{runtime.bus.generation}:{org}/files")
        assert shared is not None
        assert b"ciphertext" in shared
        everything = await runtime.shared.get(f"mcp-all:g{runtime.bus.generation}:{org}")
        assert everything is not None
        for secret in SECRETS:
            assert secret.encode() not in shared
            assert secret.encode() not in everything


async def test_warm_lookups_run_no_sql_and_changes_are_seen_at_once(
    settings: Settings,
) -> None:
    """A warm resolve reads no database; an update or a deletion is seen by the very next lookup."""
    async with open_runtime(settings) as runtime:
        org = (await runtime.control.tenancy.create_organisation(f"mcp-{secrets.token_hex(4)}")).id
        server_id = await _server(runtime, org)
        with statements(runtime) as cold:
            first = await runtime.mcp_servers.resolve(org, "files")
            await runtime.mcp_servers.servers(org)
        assert cold, "a cold lookup reads the database (the listener works)"
        with statements(runtime) as warm:
            again = await runtime.mcp_servers.resolve(org, "files")
            listed = await runtime.mcp_servers.servers(org)
            missing = await runtime.mcp_servers.resolve(org, "missing")
            missing_again = await runtime.mcp_servers.resolve(org, "missing")
        assert first is not None
        assert again is first, "opened once per row version"
        assert listed == [first]
        assert missing is None
        assert missing_again is None
        assert len(warm) == 1, f"only the first miss of an unknown slug reads the database: {warm}"
        await runtime.control.mcp_servers.update(
            server_id, {"enabled": False, "auth_config": {"token": "rotated-token"}}
        )
        changed = await runtime.mcp_servers.resolve(org, server_id)
        assert changed is not None
        assert changed.enabled is False
        assert changed.target.auth_config == {"token": "rotated-token"}
        assert changed.target.version != first.target.version
        assert [s.enabled for s in await runtime.mcp_servers.servers(org)] == [False]
        await runtime.control.mcp_servers.delete(server_id)
        assert await runtime.mcp_servers.resolve(org, "files") is None
        assert await runtime.mcp_servers.servers(org) == []


@pytest.mark.parametrize("any_backend", ["production"], indirect=True)
async def test_a_change_reaches_another_runtime_on_the_shared_bus(
    settings: Settings,
) -> None:
    """Two runtimes on one PostgreSQL and Redis: a change made through one is seen by the other."""
    async with open_runtime(settings) as one, open_runtime(settings) as two:
        org = (await one.control.tenancy.create_organisation(f"mcp-{secrets.token_hex(4)}")).id
        server_id = await _server(one, org)
        warm = await two.mcp_servers.resolve(org, "files")
        assert warm is not None
        assert warm.target.headers == {"X-Org": SECRETS[1]}
        heard = asyncio.Event()

        def on_invalidation(inv: Invalidation) -> None:
            if inv.scope == "organisation" and inv.organisation_id == org:
                heard.set()

        two.bus.subscribe(on_invalidation)
        await one.control.mcp_servers.update(
            server_id, {"slug": "renamed", "headers": {"X-Org": "new-value"}}
        )
        await asyncio.wait_for(heard.wait(), timeout=5)
        assert await two.mcp_servers.resolve(org, "files") is None
        renamed = await two.mcp_servers.resolve(org, "renamed")
        assert renamed is not None
        assert renamed.target.headers == {"X-Org": "new-value"}
