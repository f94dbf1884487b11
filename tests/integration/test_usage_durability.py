"""A crash, restart or shutdown never loses a usage record: proofs against real ``odock serve`` processes.

Each test runs gateways as subprocesses on the active backend (embedded: SQLite and the usage
journal in a temporary data directory; production: the run's PostgreSQL database and a fresh
Redis prefix), with a flush interval of an hour so that nothing reaches the database before the
process is killed or stopped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from odock.budgets.windows import Period
from odock.db.engine import create_engine, session_factory
from odock.providers.tables import ProviderType
from odock.runtime import USAGE_JOURNAL_DIR, open_runtime
from odock.settings import Settings
from odock.usage.intent import INTENT_MARK, INTERRUPTED
from odock.usage.stream import FIELD, STREAM_KEY
from odock.usage.tables import UsageRecord
from tests.conftest import BACKEND, SettingsFactory
from tests.support import services
from tests.support.server import free_port

ODOCK = str(Path(sys.executable).parent / "odock")
# Settings that keep records queued for the whole test: the writer wakes neither on its interval
# nor on a full batch (more records than any test sends).
HELD = {"ODOCK_USAGE_FLUSH_INTERVAL_SECONDS": "3600", "ODOCK_USAGE_BATCH_SIZE": "1000"}
PRICING = {"input": {"text_cost_per_1k_tokens": 0.002}, "output": {"text_cost_per_1k_tokens": 0.008}}
MESSAGES = [{"role": "user", "content": "How durable is a usage record?"}]


@dataclass
class Served:
    """One ``odock serve`` process."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace")


@dataclass
class Deployment:
    """Settings shared by the gateways of one test, plus a tenant on the mock provider."""

    settings: Settings
    secret: str
    model: str
    tmp_path: Path

    def env(self, data_dir: Path, **overrides: str) -> dict[str, str]:
        """The environment of one ``odock serve`` process of this deployment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ODOCK_")}
        env.update(
            ODOCK_HOST="127.0.0.1",
            ODOCK_PORT=str(free_port()),
            ODOCK_DATA_DIR=str(data_dir),
            ODOCK_DEMO="false",
            ODOCK_LOG_LEVEL="warning",
            ODOCK_SHUTDOWN_GRACE_SECONDS="30",
            ODOCK_USAGE_FLUSH_INTERVAL_SECONDS="0.05",
            ODOCK_USAGE_RECOVERY_INTERVAL_SECONDS="0.5",
            ODOCK_USAGE_CLAIM_IDLE_SECONDS="1",
        )
        settings = self.settings
        # The database is named explicitly, so gateways with different data directories share it.
        env.update(ODOCK_DATABASE_URL=settings.resolved_database_url, ODOCK_MIGRATE_ON_START="true")
        if settings.redis_url:
            env.update(
                ODOCK_REDIS_URL=settings.redis_url,
                ODOCK_REDIS_PREFIX=settings.redis_prefix,
                ODOCK_CACHE_INVALIDATION_CHANNEL=settings.cache_invalidation_channel,
            )
        env.update(overrides)
        return env


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start ``odock serve`` processes; any still running at the end are killed."""
    started: list[Served] = []

    def start(env: dict[str, str]) -> Served:
        log = tmp_path / f"serve-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([ODOCK, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
        served = Served(process, f"http://127.0.0.1:{env['ODOCK_PORT']}", log)
        started.append(served)
        wait_healthy(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(timeout=30)


def wait_healthy(served: Served, deadline: float = 60.0) -> None:
    """Poll /v1/health until it answers 200; fail if the process exits or the deadline passes."""
    give_up = time.monotonic() + deadline
    with httpx.Client(timeout=2) as client:
        while True:
            assert served.process.poll() is None, f"odock serve exited: {served.output()}"
            try:
                if client.get(served.base_url + "/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < give_up, f"odock serve not healthy after {deadline}s: {served.output()}"
            time.sleep(0.05)  # poll interval; the deadline bounds the wait


def poll(condition: Callable[[], Any], what: str, deadline: float = 30.0) -> Any:
    """Call ``condition`` until it returns something truthy; fail naming ``what`` at the deadline."""
    give_up = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < give_up, f"timed out after {deadline}s waiting for {what}"
        time.sleep(0.05)  # poll interval; the deadline bounds the wait


@pytest.fixture
def deployment(make_settings: SettingsFactory, tmp_path: Path) -> Callable[..., Deployment]:
    """Provision a tenant on the mock provider (``provider_config`` tunes it) on fresh settings."""

    def make(*, budget_nanos: int | None = None, **provider_config: Any) -> Deployment:
        settings = make_settings()
        secret = asyncio.run(_provision(settings, provider_config, budget_nanos))
        return Deployment(settings, secret, "test-model", tmp_path)

    return make


async def _provision(settings: Settings, provider_config: dict[str, Any], budget_nanos: int | None) -> str:
    async with open_runtime(settings) as runtime:
        control = runtime.control
        org = await control.tenancy.create_organisation("durability-" + secrets.token_hex(4))
        provider = await control.providers.create(org.id, "mock", ProviderType.MOCK, config=provider_config)
        await control.models.create(org.id, "test-model", provider_id=provider.id, pricing=PRICING)
        if budget_nanos is not None:
            await runtime.budgets.create_budget(
                org.id, "durability", amount_nanos_usd=budget_nanos, period=Period.DAILY
            )
        issued = await control.keys.create(org.id, "durability", models=["test-model"])
        return issued.secret


# --- observing the queue and the database ------------------------------------------------------


def stored(settings: Settings, request_ids: list[str]) -> list[UsageRecord]:
    """The usage records of ``request_ids`` in the database."""

    async def query() -> list[UsageRecord]:
        engine = create_engine(settings.resolved_database_url, pool_size=1)
        try:
            async with session_factory(engine)() as session:
                query = select(UsageRecord).where(UsageRecord.request_id.in_(request_ids))
                return list((await session.execute(query)).scalars())
        finally:
            await engine.dispose()

    return asyncio.run(query())


def journaled(data_dir: Path) -> set[str]:
    """Request ids of the usage events in a data directory's journal files (intent lines aside)."""
    found: set[str] = set()
    for path in (data_dir / USAGE_JOURNAL_DIR).glob("*.jsonl"):
        for line in path.read_bytes().splitlines():
            if not line.startswith(INTENT_MARK):
                found.add(orjson.loads(line)["request_id"])
    return found


def streamed(settings: Settings) -> set[str]:
    """Request ids of the usage events in the deployment's Redis stream (empty when embedded)."""
    if not settings.redis_url:
        return set()

    async def entries() -> set[str]:
        redis = Redis.from_url(settings.redis_url)
        try:
            rows = await redis.xrange(settings.redis_prefix + STREAM_KEY)
        finally:
            await redis.aclose()
        return {orjson.loads(fields[FIELD])["request_id"] for _, fields in rows}

    return asyncio.run(entries())


# --- talking to a gateway ----------------------------------------------------------------------


def chat(served: Served, deployment: Deployment, *, stream: bool) -> str:
    """One chat completion (unary or streamed to the end); return its request id."""
    body = {"model": deployment.model, "messages": MESSAGES, "stream": stream}
    headers = {"authorization": f"Bearer {deployment.secret}"}
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        if not stream:
            reply = client.post("/v1/chat/completions", json=body, headers=headers)
            assert reply.status_code == 200, reply.text
            return reply.headers["x-request-id"]
        with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as reply:
            assert reply.status_code == 200
            lines = [line for line in reply.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        return reply.headers["x-request-id"]


def send_requests(served: Served, deployment: Deployment, count: int) -> list[str]:
    """``count`` chat completions, alternating unary and streamed; their request ids."""
    return [chat(served, deployment, stream=n % 2 == 1) for n in range(count)]


def kill(served: Served) -> None:
    """SIGKILL: no shutdown hook, no flush, no chance to clean up."""
    served.process.send_signal(signal.SIGKILL)
    assert served.process.wait(timeout=30) == -signal.SIGKILL


def assert_all_stored_once(deployment: Deployment, request_ids: list[str]) -> list[UsageRecord]:
    """Every request has exactly one usage record, with its usage and cost (polls with a deadline)."""
    records = poll(
        lambda: (rows := stored(deployment.settings, request_ids)) and len(rows) >= len(request_ids) and rows,
        f"{len(request_ids)} usage records",
    )
    assert sorted(r.request_id for r in records) == sorted(request_ids)
    for record in records:
        assert record.status == "success"
        assert record.completion_tokens == 16
        assert record.total_cost_nanos_usd
        assert record.total_cost_nanos_usd > 0
    return records


# --- the proofs ----------------------------------------------------------------------------------


def test_sigkill_loses_no_usage_record_across_a_restart(
    deployment: Callable[..., Deployment], serve: ServeFactory, tmp_path: Path
) -> None:
    """Records of a gateway SIGKILLed before any flush are all stored by its restart, once each."""
    deploy = deployment()
    data_dir = tmp_path / "gateway"
    first = serve(deploy.env(data_dir, **HELD))
    request_ids = send_requests(first, deploy, 20)
    # A record is queued (journaled) as the response completes; wait until all are, then crash.
    poll(lambda: set(request_ids) <= journaled(data_dir) | streamed(deploy.settings), "records queued")
    assert stored(deploy.settings, request_ids) == []
    kill(first)

    serve(deploy.env(data_dir))
    assert_all_stored_once(deploy, request_ids)
    # The dead process's journal segments are deleted once their records are stored.
    leftovers = lambda: list((data_dir / USAGE_JOURNAL_DIR).glob(f"{first.process.pid}-*"))  # noqa: E731
    poll(lambda: not leftovers(), "the killed process's journal to be removed")


def budget_standing(served: Served, deployment: Deployment) -> dict[str, Any]:
    """The key's one budget as ``GET /v1/keys/self`` reports it (used, reserved, limit)."""
    reply = httpx.get(
        served.base_url + "/v1/keys/self",
        headers={"authorization": f"Bearer {deployment.secret}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    (budget,) = reply.json()["budgets"]
    return dict(budget)


def test_sigkill_with_streams_in_flight_records_each_as_interrupted(
    deployment: Callable[..., Deployment], serve: ServeFactory, tmp_path: Path
) -> None:
    """Streams in flight at a SIGKILL become interrupted records at the estimate; reservations settle."""
    in_flight = 8
    # Streams of 200 words a second apart: they are all mid-stream when the process dies.
    deploy = deployment(budget_nanos=10**12, chunk_delay_ms=1000, completion_tokens=200)
    data_dir = tmp_path / "gateway"
    first = serve(deploy.env(data_dir))
    client = openai.OpenAI(base_url=first.base_url + "/v1", api_key=deploy.secret, max_retries=0)
    streams = []
    for _ in range(in_flight):
        stream = client.chat.completions.create(
            model=deploy.model,
            messages=MESSAGES,
            stream=True,
            max_tokens=500,  # type: ignore[arg-type]
        )
        next(iter(stream))  # the upstream call is under way
        streams.append(stream)
    request_ids = [stream.response.headers["x-request-id"] for stream in streams]
    assert budget_standing(first, deploy)["reserved"] > 0
    kill(first)
    client.close()

    second = serve(deploy.env(data_dir))
    records = poll(
        lambda: (rows := stored(deploy.settings, request_ids)) and len(rows) == in_flight and rows,
        f"{in_flight} interrupted usage records",
    )
    for record in records:
        assert record.status == INTERRUPTED
        assert record.stream is True
        assert record.prompt_tokens > 0
        assert record.completion_tokens == 500  # the output the reservation assumed (max_tokens)
        assert record.total_cost_nanos_usd
        assert record.metadata_["usage_estimated"] is True
    billed = sum(record.total_cost_nanos_usd or 0 for record in records)
    # Nothing stays reserved: each reservation was settled at the amount it held.
    standing = poll(
        lambda: (b := budget_standing(second, deploy))["reserved"] == 0 and b["used"] == billed and b,
        "the interrupted requests' reservations to be settled",
    )
    assert standing["used"] == billed


def test_another_replica_stores_a_killed_replicas_records(
    deployment: Callable[..., Deployment], serve: ServeFactory, tmp_path: Path
) -> None:
    """Production: records a SIGKILLed replica pushed to Redis are stored by a replica on another host."""
    if BACKEND != "production":
        pytest.skip("needs the production backend: another host shares only Redis and PostgreSQL")
    services.require_services()
    deploy = deployment()
    doomed = serve(deploy.env(tmp_path / "host-a", **HELD))
    request_ids = send_requests(doomed, deploy, 20)
    poll(lambda: set(request_ids) <= streamed(deploy.settings), "records pushed to the stream")
    assert stored(deploy.settings, request_ids) == []
    kill(doomed)

    serve(deploy.env(tmp_path / "host-b"))  # a different data directory: nothing local to replay
    assert_all_stored_once(deploy, request_ids)


def test_sigterm_mid_stream_finishes_the_stream_and_stores_every_record(
    deployment: Callable[..., Deployment], serve: ServeFactory, tmp_path: Path
) -> None:
    """SIGTERM mid-stream: the stream ends with every chunk and [DONE], and every queued record is stored."""
    words = 40
    deploy = deployment(chunk_delay_ms=50, completion_tokens=words)
    gateway = serve(deploy.env(tmp_path / "gateway", **HELD))
    queued = [chat(gateway, deploy, stream=False) for _ in range(5)]
    assert stored(deploy.settings, queued) == []

    body = {"model": deploy.model, "messages": MESSAGES, "stream": True}
    headers = {"authorization": f"Bearer {deploy.secret}"}
    contents: list[str] = []
    events: list[str] = []
    with (
        httpx.Client(base_url=gateway.base_url, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as reply,
    ):
        assert reply.status_code == 200
        stream_id = reply.headers["x-request-id"]
        for line in reply.iter_lines():
            if not line:
                continue
            events.append(line)
            if line == "data: [DONE]":
                continue
            delta = orjson.loads(line.removeprefix("data: "))["choices"][0]["delta"]
            if delta.get("content"):
                contents.append(delta["content"])
                if len(contents) == 1:
                    gateway.process.send_signal(signal.SIGTERM)

    assert len(contents) == words
    assert events[-1] == "data: [DONE]"
    # The exit status itself is test_sigterm_exits_zero's concern.
    assert gateway.process.wait(timeout=60) == 0, gateway.output()

    records = {r.request_id: r for r in stored(deploy.settings, [*queued, stream_id])}
    assert sorted(records) == sorted([*queued, stream_id])
    streamed_record = records[stream_id]
    assert streamed_record.stream is True
    assert streamed_record.status == "success"
    assert streamed_record.completion_tokens == words


def test_sigterm_exits_zero(
    deployment: Callable[..., Deployment], serve: ServeFactory, tmp_path: Path
) -> None:
    """A gateway stopped with SIGTERM exits with status 0 once it has shut down gracefully."""
    deploy = deployment()
    gateway = serve(deploy.env(tmp_path / "gateway"))
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(timeout=60) == 0, gateway.output()
