"""Helpers for the governance proofs: deterministic prices, request storms, ledger reads, replicas.

Costs are made exact by the mock provider and a price of 1 USD per 1K tokens in and out, so one
token costs 1,000,000 nanos. ``MESSAGES`` estimates to 5 prompt tokens (4 per message + 1 for
"hi"), and every request asks for ``max_tokens = COMPLETION_TOKENS`` while the mock answers with
exactly that many words: the reservation estimate equals the settled actual, so a limit of
``K * REQUEST_COST`` (or ``K * REQUEST_TOKENS``) fits exactly K requests.

Gateways run either in-thread (the ``gateway`` fixture; ``Ledger.of(gateway)`` reads its database
on its own loop) or as ``odock serve`` subprocesses (:func:`serve_gateways`), provisioned by an
:class:`Operator` that holds only a database engine and the deployment's invalidation bus.
:func:`private_redis` is a Redis a test may take away. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.audit.recorder import audited_session_factory
from odock.budgets.control import BudgetControl
from odock.budgets.tables import MeterSettlement, MeterWindow
from odock.cache.bus import InvalidationBus, LocalInvalidationBus, RedisInvalidationBus
from odock.db import migrate
from odock.db.engine import create_engine
from odock.providers.tables import ProviderType
from odock.settings import Settings
from odock.usage.tables import UsageRecord
from tests.conftest import Gateway, Tenant
from tests.support.server import free_port

T = TypeVar("T")

PRICING: dict[str, Any] = {
    "input": {"text_cost_per_1k_tokens": 1.0},
    "output": {"text_cost_per_1k_tokens": 1.0},
}
NANOS_PER_TOKEN = 1_000_000
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hi"}]
PROMPT_TOKENS = 5
COMPLETION_TOKENS = 10
REQUEST_TOKENS = PROMPT_TOKENS + COMPLETION_TOKENS
REQUEST_COST = REQUEST_TOKENS * NANOS_PER_TOKEN
MOCK_CONFIG: dict[str, Any] = {"completion_tokens": COMPLETION_TOKENS, "latency_ms": 50}
ODOCK = str(Path(sys.executable).parent / "odock")
POLL_INTERVAL = 0.05  # between polls; every wait is bounded by a deadline


def chat_body(model: str, **extra: Any) -> dict[str, Any]:
    """A chat completion whose estimate equals its actual usage (max_tokens = the mock's answer)."""
    return {"model": model, "messages": MESSAGES, "max_tokens": COMPLETION_TOKENS, **extra}


def bearer(secret: str) -> dict[str, str]:
    """The authorization header of an API key."""
    return {"authorization": f"Bearer {secret}"}


async def fire(
    client: httpx.AsyncClient, urls: Sequence[str], secret: str, model: str, count: int, **extra: Any
) -> list[httpx.Response]:
    """``count`` chat completions sent at once, spread round-robin over the gateways at ``urls``."""
    body = chat_body(model, **extra)

    async def one(n: int) -> httpx.Response:
        url = urls[n % len(urls)] + "/v1/chat/completions"
        return await client.post(url, json=body, headers=bearer(secret))

    return list(await asyncio.gather(*(one(n) for n in range(count))))


@contextlib.asynccontextmanager
async def http_client(connections: int = 20) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that can hold ``connections`` requests at once (a whole storm)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        yield client


def error_of(reply: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error reply."""
    return dict(reply.json()["error"])


async def key_self(client: httpx.AsyncClient, url: str, secret: str) -> dict[str, Any]:
    """``GET /v1/keys/self`` on the gateway at ``url``."""
    reply = await client.get(url + "/v1/keys/self", headers=bearer(secret))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def eventually(probe: Callable[[], Awaitable[T]], what: str, deadline: float = 20.0) -> T:
    """Await ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    give_up = time.monotonic() + deadline
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < give_up, f"timed out after {deadline}s waiting for {what}"
        await asyncio.sleep(POLL_INTERVAL)


async def on_gateway(gateway: Gateway, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on an in-thread gateway's loop without blocking the test's loop."""
    return await asyncio.to_thread(gateway.run, coro)


# --- the durable side ---------------------------------------------------------------------


@dataclass
class Ledger:
    """Reads usage records and ledger windows; ``via`` is the in-thread gateway owning ``sessions``."""

    sessions: async_sessionmaker[AsyncSession]
    via: Gateway | None = None

    @classmethod
    def of(cls, gateway: Gateway) -> Ledger:
        """The ledger of an in-thread gateway, read on that gateway's loop."""
        return cls(gateway.runtime.sessions, gateway)

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await (on_gateway(self.via, coro) if self.via is not None else coro)

    async def usage(self, key_id: str) -> list[UsageRecord]:
        """Every usage record of an API key."""
        return await self._run(self._select(select(UsageRecord).where(UsageRecord.api_key_id == key_id)))

    async def windows(self, meter_id: str) -> list[MeterWindow]:
        """The ledger windows of a budget or quota."""
        return await self._run(self._select(select(MeterWindow).where(MeterWindow.meter_id == meter_id)))

    async def settlements(self, window_key: str) -> dict[str, int]:
        """What each request (by usage record id) settled into one ledger window."""
        query = select(MeterSettlement).where(MeterSettlement.window_key == window_key)
        rows = await self._run(self._select(query))
        return {row.request_key: row.amount for row in rows}

    async def records(self, key_id: str, count: int, deadline: float = 20.0) -> list[UsageRecord]:
        """The key's usage records, once at least ``count`` are written (polling with a deadline)."""

        async def written() -> list[UsageRecord] | None:
            records = await self.usage(key_id)
            return records if len(records) >= count else None

        found = await eventually(written, f"{count} usage records of key {key_id}", deadline)
        assert found is not None
        return found

    async def _select(self, query: Any) -> list[Any]:
        async with self.sessions() as session:
            return list((await session.execute(query)).scalars())


def cost_of(record: UsageRecord) -> int:
    """What a usage record cost (the amount a budget settles)."""
    assert record.total_cost_nanos_usd is not None
    return record.total_cost_nanos_usd


def tokens_of(record: UsageRecord) -> int:
    """The tokens a usage record used (the amount a TOKENS quota settles)."""
    return record.prompt_tokens + record.completion_tokens


def meter_entry(standing: dict[str, Any], meter_id: str) -> dict[str, Any]:
    """The budget or quota ``meter_id`` in a ``/v1/keys/self`` body."""
    for entry in [*standing["budgets"], *standing["quotas"]]:
        if entry["id"] == meter_id:
            return dict(entry)
    raise AssertionError(f"{meter_id} is not in /v1/keys/self: {standing}")


@dataclass(frozen=True)
class StormProof:
    """What a storm against one budget or quota did, as measured."""

    fired: int
    admitted: int
    limit: int
    used: int


async def prove_storm(
    ledger: Ledger,
    client: httpx.AsyncClient,
    url: str,
    tenant: Tenant,
    meter_id: str,
    replies: Sequence[httpx.Response],
    *,
    denial: tuple[int, str],
    measure: Callable[[UsageRecord], int],
) -> StormProof:
    """Every request recorded, refusals before the upstream, every admission settled, spend ≤ limit."""
    status, code = denial
    refused = [r for r in replies if r.status_code != 200]
    assert all((r.status_code, error_of(r)["code"]) == (status, code) for r in refused), [
        (r.status_code, r.text) for r in refused if (r.status_code, error_of(r).get("code")) != denial
    ]
    records = await ledger.records(tenant.key_id, len(replies))
    assert len(records) == len(replies)
    admitted = [r for r in records if r.http_status == 200]
    assert len(admitted) == len(replies) - len(refused)
    for record in records:
        if record.http_status != 200:
            assert (record.http_status, record.error_code) == denial
            assert record.upstream_latency_ms is None, "a refused request reached the upstream"
    (window,) = await ledger.windows(meter_id)
    settled = await ledger.settlements(window.key)
    assert set(settled) == {r.id for r in admitted}, "not exactly the admitted requests settled"
    assert all(settled[r.id] == measure(r) for r in admitted)
    assert window.used == sum(settled.values()) <= window.limit
    entry = meter_entry(await key_self(client, url, tenant.secret), meter_id)
    assert (entry["reserved"], entry["used"], entry["limit"]) == (0, window.used, window.limit)
    return StormProof(len(replies), len(admitted), window.limit, window.used)


# --- provisioning outside a gateway -------------------------------------------------------


@dataclass
class Operator:
    """An admin process: a control plane and budget control on the deployment's database and bus."""

    control: ControlPlane
    budgets: BudgetControl
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine

    async def tenant(self, provider_config: dict[str, Any] | None = None, **key: Any) -> Tenant:
        """A fresh organisation with a priced mock model and a key that may call it."""
        control = self.control
        org = await control.tenancy.create_organisation("gov-" + secrets.token_hex(4))
        config = provider_config if provider_config is not None else MOCK_CONFIG
        provider = await control.providers.create(org.id, "mock", ProviderType.MOCK, config=config)
        model = await control.models.create(org.id, "test-model", provider_id=provider.id, pricing=PRICING)
        issued = await control.keys.create(org.id, "governed", models=["test-model"], **key)
        return Tenant(org.id, provider.id, "test-model", model.id, issued.key.id, issued.secret)


@contextlib.asynccontextmanager
async def operator(settings: Settings) -> AsyncIterator[Operator]:
    """Migrate the deployment's database and open a publish-only control plane on it."""
    engine = create_engine(settings.resolved_database_url, pool_size=2)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        await migrate.upgrade(engine)
        sessions = audited_session_factory(engine)
        bus: InvalidationBus = (
            RedisInvalidationBus(redis, settings.redis_prefix, settings.cache_invalidation_channel)
            if redis is not None
            else LocalInvalidationBus()
        )
        yield Operator(ControlPlane(sessions, bus, None), BudgetControl(sessions, bus), sessions, engine)
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


# --- odock serve subprocesses -------------------------------------------------------------


@dataclass
class Served:
    """One ``odock serve`` process."""

    name: str
    process: asyncio.subprocess.Process
    base_url: str
    log: Path

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace")

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook, no settle, no flush."""
        self.process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.process.wait(), 30) == -signal.SIGKILL


def serve_env(settings: Settings, data_dir: Path, port: int, overrides: dict[str, str]) -> dict[str, str]:
    """The environment of one ``odock serve`` process of the deployment described by ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODOCK_")}
    env.update(
        ODOCK_HOST="127.0.0.1",
        ODOCK_PORT=str(port),
        ODOCK_DATA_DIR=str(data_dir),
        ODOCK_DATABASE_URL=settings.resolved_database_url,
        ODOCK_MIGRATE_ON_START="true",  # the operator has migrated already: a no-op
        ODOCK_DEMO="false",
        ODOCK_LOG_LEVEL="warning",
        ODOCK_SHUTDOWN_GRACE_SECONDS="5",
        ODOCK_USAGE_FLUSH_INTERVAL_SECONDS="0.05",
    )
    if settings.redis_url:
        env.update(
            ODOCK_REDIS_URL=settings.redis_url,
            ODOCK_REDIS_PREFIX=settings.redis_prefix,
            ODOCK_CACHE_INVALIDATION_CHANNEL=settings.cache_invalidation_channel,
        )
    env.update(overrides)
    return env


async def start_served(
    name: str, settings: Settings, tmp_path: Path, *, home: str | None = None, **overrides: str
) -> Served:
    """Start one ``odock serve`` (data directory ``tmp_path/<home or name>``) and wait until it is healthy."""
    port = free_port()
    log = tmp_path / f"{name}-{secrets.token_hex(2)}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            ODOCK,
            "serve",
            env=serve_env(settings, tmp_path / (home or name), port, overrides),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    served = Served(name, process, f"http://127.0.0.1:{port}", log)
    async with httpx.AsyncClient(timeout=2) as client:

        async def healthy() -> bool:
            assert process.returncode is None, f"{name} exited: {served.output()}"
            with contextlib.suppress(httpx.TransportError):
                return (await client.get(served.base_url + "/v1/health")).status_code == 200
            return False

        await eventually(healthy, f"{name} to become healthy", deadline=60)
    return served


async def stop_served(served: Sequence[Served]) -> None:
    """SIGTERM every process still running and reap it (SIGKILL past 30 s)."""
    for one in served:
        if one.process.returncode is None:
            one.process.send_signal(signal.SIGTERM)
    for one in served:
        try:
            await asyncio.wait_for(one.process.wait(), 30)
        except TimeoutError:
            one.process.kill()
            await one.process.wait()


@contextlib.asynccontextmanager
async def serve_gateways(
    settings: Settings, tmp_path: Path, names: Sequence[str], **overrides: str
) -> AsyncIterator[list[Served]]:
    """One ``odock serve`` per name, sharing the deployment; all are stopped on exit."""
    started: list[Served] = []
    try:
        for name in names:
            started.append(await start_served(name, settings, tmp_path, **overrides))
        yield started
    finally:
        await stop_served(started)


# --- a Redis of one's own, to take away -----------------------------------------------------


@dataclass
class PrivateRedis:
    """A ``redis-server`` on a free local port that a test may stop and start again (empty)."""

    port: int
    workdir: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """Its URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it (without persistence) and wait until it answers PING."""
        process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.process = process
        client = Redis.from_url(self.url)
        try:

            async def answers() -> bool:
                assert process.returncode is None, "redis-server exited"
                with contextlib.suppress(OSError, RedisError):
                    return bool(await client.ping())
                return False

            await eventually(answers, f"redis-server on port {self.port}", deadline=10)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL it: every connection to it drops, new ones are refused."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@contextlib.asynccontextmanager
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    """A running private Redis, killed on exit."""
    server = PrivateRedis(free_port(), tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
