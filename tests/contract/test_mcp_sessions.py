"""The MCP session store contract, on the in-process shared cache and on Redis.

A session is found only by its key and endpoint, keeps its bindings, slides its expiry when used,
and ends for everyone; two stores over one Redis namespace are two replicas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from odock.cache.shared import MemorySharedCache, RedisSharedCache, SharedCache
from odock.mcp.link import Binding
from odock.mcp.sessions import AGGREGATE, McpSessionStore
from tests.support import services

INIT = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}


@dataclass
class Deployment:
    """Stores of one deployment: every store made shares one namespace (like replicas)."""

    store: Callable[[float], McpSessionStore]


@pytest.fixture(params=["memory", "redis"])
async def deployment(request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    if request.param == "memory":
        shared: SharedCache = MemorySharedCache()
        yield Deployment(lambda ttl: McpSessionStore(shared, ttl))
        return
    services.require_services()
    redis = Redis.from_url(services.REDIS_URL)
    prefix = services.unique_name("odock_contract_mcp") + ":"
    try:
        yield Deployment(lambda ttl: McpSessionStore(RedisSharedCache(redis, prefix), ttl))
    finally:
        await services.delete_redis_prefix(prefix)
        await redis.aclose()


async def test_a_session_is_found_by_its_key_and_endpoint_only(deployment: Deployment) -> None:
    store = deployment.store(60)
    binding = Binding("2025-06-18", {"capabilities": {"tools": {}}}, "upstream-1", INIT)
    session = await store.open("key-a", "server-1", "2025-06-18", INIT, {"server-1": binding})
    found = await store.get(session.id, "key-a", "server-1")
    assert found is not None
    assert found.bindings["server-1"].to_json() == binding.to_json()
    assert (found.protocol_version, found.client_params) == ("2025-06-18", INIT)
    assert await store.get(session.id, "key-b", "server-1") is None  # another key
    assert await store.get(session.id, "key-a", "server-2") is None  # another server
    assert await store.get(session.id, "key-a", AGGREGATE) is None
    assert await store.get("0" * 32, "key-a", "server-1") is None
    assert await store.get("x" * 500, "key-a", "server-1") is None


async def test_replicas_share_sessions_and_their_changes(deployment: Deployment) -> None:
    one, other = deployment.store(60), deployment.store(60)
    session = await one.open("key", AGGREGATE, "2025-11-25", INIT)
    assert (await other.get(session.id, "key", AGGREGATE)) is not None
    session.bindings["s"] = Binding("2025-11-25", {}, "up-2", INIT)
    await one.save(session)
    seen = await other.get(session.id, "key", AGGREGATE)
    assert seen is not None
    assert seen.bindings["s"].upstream_session_id == "up-2"
    await other.end(seen)
    assert await one.get(session.id, "key", AGGREGATE) is None


async def test_session_ids_are_unguessable_and_distinct(deployment: Deployment) -> None:
    store = deployment.store(60)
    ids = {(await store.open("key", "s", "2025-06-18", INIT)).id for _ in range(20)}
    assert len(ids) == 20
    assert all(len(session_id) == 32 for session_id in ids)
