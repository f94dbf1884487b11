"""The hot path touches no database once warm, and changes reach it at once.

SQL audit: a ``before_cursor_execute`` listener on the gateway's engine counts the statements
run while ``odock.db.engine.request_scope`` is set, i.e. on behalf of a request (the value
crosses into SQLAlchemy's greenlet with the context, which the cold-request positive control
proves). A cold request must run some; the same request warmed must run none.

Invalidation: a same-process change (revoked key, disabled provider) is refused by the very
next request; a change made on one replica is refused by another replica process within 1 s.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from redis.asyncio import Redis
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.audit.recorder import audited_session_factory
from odock.cache.bus import RedisInvalidationBus
from odock.db import migrate
from odock.db.engine import create_engine, request_scope
from odock.keys.secrets import hash_secret
from odock.keys.tables import ApiKey
from odock.pipeline.exchange import Exchange
from odock.providers.service import ProviderChanges
from odock.providers.tables import ProviderType
from odock.settings import Settings
from tests.conftest import Gateway, SettingsFactory, Tenant, provision
from tests.support.server import free_port

REVOCATION_DEADLINE = 1.0
MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
CHAT = {"messages": MESSAGES}


@dataclass
class StatementAudit:
    """SQL statements executed on behalf of a request (request_scope set), with their scope."""

    statements: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        scope = request_scope.get()
        if scope is not None:
            with self._lock:
                self.statements.append((scope, statement))

    def during(self, action: Callable[[], object]) -> list[tuple[str, str]]:
        """The request-scoped statements executed while ``action`` ran."""
        with self._lock:
            self.statements.clear()
        action()
        with self._lock:
            return list(self.statements)


class FinishedProbe:
    """A pipeline stage placed first, so its after() runs last: it marks a request as finished."""

    name = "test_finished_probe"

    def __init__(self) -> None:
        self._finished: set[str] = set()
        self._changed = threading.Condition()

    async def before(self, ex: Exchange) -> None:
        """Nothing on the way in."""

    async def after(self, ex: Exchange) -> None:
        """Record that every other stage has unwound."""
        with self._changed:
            self._finished.add(ex.request_id)
            self._changed.notify_all()

    def wait(self, request_id: str, timeout: float = 10.0) -> None:
        """Block until ``request_id`` has fully finished (failing after ``timeout``)."""
        with self._changed:
            done = self._changed.wait_for(lambda: request_id in self._finished, timeout)
        assert done, f"request {request_id} did not finish within {timeout}s"


@dataclass
class Audited:
    """A gateway with a statement audit on its engine and a probe on its pipeline."""

    gateway: Gateway
    statements: StatementAudit
    probe: FinishedProbe


@pytest.fixture
def audited(gateway: Gateway) -> Iterator[Audited]:
    """The active-backend gateway, audited for the duration of the test."""
    statements, probe = StatementAudit(), FinishedProbe()
    engine = gateway.runtime.engine.sync_engine
    pipeline = gateway.runtime.pipeline
    event.listen(engine, "before_cursor_execute", statements)
    pipeline.stages = (probe, *pipeline.stages)
    yield Audited(gateway, statements, probe)
    pipeline.stages = tuple(s for s in pipeline.stages if s is not probe)
    event.remove(engine, "before_cursor_execute", statements)


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    """The official OpenAI client on the gateway, retries off."""
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def new_request_id() -> str:
    """A request id to send as x-request-id (the gateway honours well-formed ones)."""
    return "audit-" + secrets.token_hex(8)


def call_chat(audited: Audited, tenant: Tenant) -> None:
    """A non-streaming chat completion, waited for until its after() hooks ran."""
    request_id = new_request_id()
    reply = sdk(audited.gateway, tenant.secret).chat.completions.create(
        model=tenant.model, messages=MESSAGES, extra_headers={"x-request-id": request_id}
    )
    assert reply.choices[0].message.content
    audited.probe.wait(request_id)


def call_chat_stream(audited: Audited, tenant: Tenant) -> None:
    """A streaming chat completion read to the end, waited for until its after() hooks ran."""
    request_id = new_request_id()
    stream = sdk(audited.gateway, tenant.secret).chat.completions.create(
        model=tenant.model, messages=MESSAGES, stream=True, extra_headers={"x-request-id": request_id}
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    audited.probe.wait(request_id)


def call_embeddings(audited: Audited, tenant: Tenant) -> None:
    """An embeddings request, waited for until its after() hooks ran."""
    request_id = new_request_id()
    reply = sdk(audited.gateway, tenant.secret).embeddings.create(
        model=tenant.model, input="hello", extra_headers={"x-request-id": request_id}
    )
    assert reply.data[0].embedding
    audited.probe.wait(request_id)


def call_models(audited: Audited, tenant: Tenant) -> None:
    """GET /v1/models (answered before the response completes: nothing runs after it)."""
    assert [m.id for m in sdk(audited.gateway, tenant.secret).models.list()] == [tenant.model]


def call_validate(audited: Audited, tenant: Tenant) -> None:
    """POST /v1/keys/validate (answered before the response completes: nothing runs after it)."""
    reply = httpx.post(
        audited.gateway.base_url + "/v1/keys/validate", headers={"authorization": f"Bearer {tenant.secret}"}
    )
    assert reply.status_code == 200
    assert reply.json()["valid"] is True


CALLS: dict[str, Callable[[Audited, Tenant], None]] = {
    "chat": call_chat,
    "chat-stream": call_chat_stream,
    "embeddings": call_embeddings,
    "models": call_models,
    "keys-validate": call_validate,
}


ROUTES = list(CALLS)


@pytest.mark.parametrize("route", ROUTES)
def test_warm_request_runs_no_sql(audited: Audited, route: str) -> None:
    """A cold request reads the database (positive control); the same request warmed runs zero statements."""
    tenant = provision(audited.gateway, model_type="embeddings" if route == "embeddings" else "chat")
    call = CALLS[route]
    cold = audited.statements.during(lambda: call(audited, tenant))
    assert len(cold) > 0, "the cold request ran no request-scoped SQL: the audit is not seeing the request"
    for _ in range(3):
        warm = audited.statements.during(lambda: call(audited, tenant))
        assert warm == [], f"a warm {route} request ran SQL: {warm}"
    print(f"{route}: cold request ran {len(cold)} statements, warm requests ran 0")


def test_cold_statements_are_attributed_to_their_request(audited: Audited) -> None:
    """The request id crosses into SQLAlchemy's greenlet: cold statements carry the id of their request."""
    tenant = provision(audited.gateway)
    request_id = new_request_id()

    def cold_chat() -> None:
        sdk(audited.gateway, tenant.secret).chat.completions.create(
            model=tenant.model, messages=MESSAGES, extra_headers={"x-request-id": request_id}
        )
        audited.probe.wait(request_id)

    statements = audited.statements.during(cold_chat)
    assert {scope for scope, _ in statements} == {request_id}
    assert any("api_keys.key_hash =" in sql for _, sql in statements)  # the key directory's load
    assert any("models.name =" in sql for _, sql in statements)  # the model catalog's load


def test_unknown_key_flood_is_negatively_cached(audited: Audited) -> None:
    """The first unknown key is looked up once; the same bad key again, twenty times, runs zero statements."""
    tenant = provision(audited.gateway)
    bad = sdk(audited.gateway, "odk-not-a-real-key-" + secrets.token_hex(8))

    def refused() -> None:
        request_id = new_request_id()
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.chat.completions.create(
                model=tenant.model, messages=MESSAGES, extra_headers={"x-request-id": request_id}
            )
        assert caught.value.code == "unauthorized"
        audited.probe.wait(request_id)

    def flood() -> None:
        for _ in range(20):
            refused()

    assert len(audited.statements.during(refused)) > 0
    assert audited.statements.during(flood) == []


def test_unknown_model_is_negatively_cached(audited: Audited) -> None:
    """A warm key asking for a missing model is looked up once; asking again runs zero statements."""
    tenant = provision(audited.gateway)
    call_chat(audited, tenant)
    client = sdk(audited.gateway, tenant.secret)

    def missing() -> None:
        request_id = new_request_id()
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="no-such-model", messages=MESSAGES, extra_headers={"x-request-id": request_id}
            )
        assert caught.value.code == "model_not_found"
        audited.probe.wait(request_id)

    assert len(audited.statements.during(missing)) > 0
    assert audited.statements.during(missing) == []


# --- same-process invalidation (the active backend) -----------------------------------------


def error_code(reply: httpx.Response) -> str:
    """The stable error code of an error response."""
    return str(reply.json()["error"]["code"])


def post_chat(base_url: str, tenant: Tenant) -> httpx.Response:
    """A raw chat completion request."""
    return httpx.post(
        base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {tenant.secret}"},
        json={"model": tenant.model, **CHAT},
        timeout=10,
    )


def test_revoked_key_is_refused_by_the_next_request(gateway: Gateway, tenant: Tenant) -> None:
    """Right after ControlPlane.revoke_api_key returns, the warmed key gets 401 api_key_revoked."""
    for _ in range(2):
        assert post_chat(gateway.base_url, tenant).status_code == 200
    gateway.run(gateway.runtime.control.keys.revoke(tenant.key_id))
    reply = post_chat(gateway.base_url, tenant)
    assert reply.status_code == 401
    assert error_code(reply) == "api_key_revoked"


def test_disabled_provider_is_refused_by_the_next_request(gateway: Gateway, tenant: Tenant) -> None:
    """Right after a provider is disabled, a warmed model call gets 403 provider_disabled."""
    for _ in range(2):
        assert post_chat(gateway.base_url, tenant).status_code == 200
    gateway.run(gateway.runtime.control.providers.update(tenant.provider_id, ProviderChanges(enabled=False)))
    reply = post_chat(gateway.base_url, tenant)
    assert reply.status_code == 403
    assert error_code(reply) == "provider_disabled"


# --- cross-replica invalidation (production backend, two `odock serve` processes) ----------

ODOCK = str(Path(sys.executable).parent / "odock")
INVALIDATION_SECRET = "test-invalidation-" + secrets.token_hex(8)


@dataclass
class Replica:
    """One ``odock serve`` process."""

    name: str
    process: asyncio.subprocess.Process
    base_url: str
    log: Path


def replica_env(settings: Settings, port: int, data_dir: Path) -> dict[str, str]:
    """The environment that makes ``odock serve`` one more replica of ``settings``' deployment."""
    assert settings.database_url
    assert settings.redis_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODOCK_")}
    env.update(
        ODOCK_HOST="127.0.0.1",
        ODOCK_PORT=str(port),
        ODOCK_DATA_DIR=str(data_dir),
        ODOCK_DATABASE_URL=settings.database_url,
        ODOCK_REDIS_URL=settings.redis_url,
        ODOCK_REDIS_PREFIX=settings.redis_prefix,
        ODOCK_CACHE_INVALIDATION_CHANNEL=settings.cache_invalidation_channel,
        ODOCK_CACHE_INVALIDATION_SECRET=INVALIDATION_SECRET,
        ODOCK_MIGRATE_ON_START="false",  # the production default; the operator migrated
        ODOCK_DEMO="false",
        ODOCK_LOG_LEVEL="warning",
        ODOCK_SHUTDOWN_GRACE_SECONDS="5",
    )
    return env


async def wait_healthy(replica: Replica, client: httpx.AsyncClient, deadline: float = 60.0) -> None:
    """Poll /v1/health until it answers 200 (failing if the process exits or the deadline passes)."""
    give_up = time.monotonic() + deadline
    while True:
        assert replica.process.returncode is None, f"{replica.name} exited: {replica.log.read_text()}"
        try:
            if (await client.get(replica.base_url + "/v1/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        log = replica.log.read_text()
        assert time.monotonic() < give_up, f"{replica.name} unhealthy after {deadline}s: {log}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def serve_replicas(
    settings: Settings, tmp_path: Path, names: tuple[str, ...]
) -> AsyncIterator[dict[str, Replica]]:
    """Start one ``odock serve`` per name; SIGTERM and reap them all on exit."""
    replicas: dict[str, Replica] = {}
    try:
        for name in names:
            port = free_port()
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    ODOCK,
                    "serve",
                    env=replica_env(settings, port, tmp_path / name),
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )
            replicas[name] = Replica(name, process, f"http://127.0.0.1:{port}", log)
        async with httpx.AsyncClient(timeout=5) as client:
            for replica in replicas.values():
                await wait_healthy(replica, client)
        yield replicas
    finally:
        for replica in replicas.values():
            if replica.process.returncode is None:
                replica.process.send_signal(signal.SIGTERM)
        hung = []
        for replica in replicas.values():
            try:
                await asyncio.wait_for(replica.process.wait(), timeout=30)
            except TimeoutError:
                hung.append(replica.name)
                replica.process.kill()
                await replica.process.wait()
        assert not hung, f"replicas still running 30 s after SIGTERM (killed): {hung}"


async def chat_status(client: httpx.AsyncClient, replica: Replica, tenant: Tenant) -> tuple[int, str | None]:
    """Status and error code of one chat completion on ``replica``."""
    reply = await client.post(
        replica.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {tenant.secret}"},
        json={"model": tenant.model, **CHAT},
    )
    return reply.status_code, reply.json().get("error", {}).get("code") if reply.status_code != 200 else None


async def seconds_until_revoked(client: httpx.AsyncClient, replica: Replica, tenant: Tenant) -> float:
    """Poll ``replica`` until it refuses the key as revoked; the time it took (failing past the deadline)."""
    started = time.monotonic()
    while True:
        status, code = await chat_status(client, replica, tenant)
        elapsed = time.monotonic() - started
        if status == 401:
            assert code == "api_key_revoked"
            return elapsed
        assert status == 200, f"unexpected {status} {code}"
        assert elapsed < REVOCATION_DEADLINE, f"{replica.name} still accepted the key after {elapsed:.3f}s"


@dataclass
class Operator:
    """What an admin process holds: a control plane publishing on the deployment's Redis bus."""

    control: ControlPlane
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def operator(settings: Settings) -> AsyncIterator[Operator]:
    """Migrate the deployment's database and open a publish-only control plane on it."""
    assert settings.redis_url
    engine = create_engine(settings.resolved_database_url, pool_size=2)
    redis = Redis.from_url(settings.redis_url)
    try:
        await migrate.upgrade(engine)
        sessions = audited_session_factory(engine)
        bus = RedisInvalidationBus(redis, settings.redis_prefix, settings.cache_invalidation_channel)
        yield Operator(ControlPlane(sessions, bus, None), sessions)
    finally:
        await redis.aclose()
        await engine.dispose()


async def provision_in(control: ControlPlane) -> Tenant:
    """A tenant (mock provider, one model, one key) created through ``control``."""
    org = await control.tenancy.create_organisation("org-" + secrets.token_hex(4))
    provider = await control.providers.create(org.id, "provider", ProviderType.MOCK)
    model = await control.models.create(org.id, "test-model", provider_id=provider.id)
    issued = await control.keys.create(org.id, "replicated key", models=["test-model"])
    return Tenant(org.id, provider.id, "test-model", model.id, issued.key.id, issued.secret)


async def warm(client: httpx.AsyncClient, replicas: dict[str, Replica], tenant: Tenant) -> None:
    """Make every replica serve the key from its caches."""
    for replica in replicas.values():
        for _ in range(2):
            assert await chat_status(client, replica, tenant) == (200, None)


@pytest.fixture
def deployment(make_backend_settings: SettingsFactory) -> Settings:
    """Production settings (test PostgreSQL database, a fresh Redis prefix and channel) for replicas."""
    return make_backend_settings(cache_invalidation_secret=INVALIDATION_SECRET)


@pytest.mark.parametrize("any_backend", ["production"], indirect=True)
async def test_revocation_reaches_another_replica_within_a_second(
    deployment: Settings, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """A key revoked by a control plane on the shared bus is refused by both replica processes within 1 s."""
    settings = deployment
    async with (
        operator(settings) as admin,
        serve_replicas(settings, tmp_path, ("a", "b")) as replicas,
        httpx.AsyncClient(timeout=5) as client,
    ):
        tenant = await provision_in(admin.control)
        await warm(client, replicas, tenant)
        await admin.control.keys.revoke(tenant.key_id)
        latency_b = await seconds_until_revoked(client, replicas["b"], tenant)
        latency_a = await seconds_until_revoked(client, replicas["a"], tenant)
        record_property("revocation_latency_ms", {"b": latency_b * 1000, "a": latency_a * 1000})
        print(f"revoked by control plane: b refused in {latency_b * 1e3:.1f} ms, a {latency_a * 1e3:.1f} ms")


@pytest.mark.parametrize("any_backend", ["production"], indirect=True)
async def test_invalidation_posted_to_one_replica_reaches_the_other_within_a_second(
    deployment: Settings, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """B serves a key revoked only in the DB from cache until A is told to invalidate, then refuses in 1 s."""
    settings = deployment
    async with (
        operator(settings) as admin,
        serve_replicas(settings, tmp_path, ("a", "b")) as replicas,
        httpx.AsyncClient(timeout=5) as client,
    ):
        tenant = await provision_in(admin.control)
        await warm(client, replicas, tenant)
        async with admin.sessions() as session:
            await session.execute(update(ApiKey).where(ApiKey.id == tenant.key_id).values(revoked=True))
            await session.commit()
        # Positive control: with no invalidation, B answers from its cache and still accepts the key.
        assert await chat_status(client, replicas["b"], tenant) == (200, None)
        key_hash = hash_secret(tenant.secret)
        command = {"scope": "api_key", "organisation_id": tenant.organisation_id, "key_hash": key_hash}
        refused = await client.post(replicas["a"].base_url + "/v1/internal/cache/invalidate", json=command)
        assert refused.status_code == 401  # the endpoint needs the shared secret
        accepted = await client.post(
            replicas["a"].base_url + "/v1/internal/cache/invalidate",
            json=command,
            headers={"x-odock-invalidation-secret": INVALIDATION_SECRET},
        )
        assert accepted.status_code == 202
        latency_b = await seconds_until_revoked(client, replicas["b"], tenant)
        record_property("revocation_latency_ms", latency_b * 1000)
        print(f"invalidation posted to a seen by b after {latency_b * 1000:.1f} ms")
