"""``GET /metrics`` against real calls: the official OpenAI SDK through a gateway to a scripted upstream.

Every value is read from a real scrape, parsed as Prometheus parses it, before and after what a
test does (the metric objects are one set per process: tests assert deltas). A scrape is taken
once nothing is in flight (:func:`settled`): by then every earlier request has been recorded, its
model call included. The last test starts ``odock serve --workers 2`` on PostgreSQL and Redis
and checks that any worker's answer to a scrape counts every worker's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from odock import __version__
from odock.app import create_app
from odock.providers.crypto import KeyPair
from odock.settings import Settings
from tests.conftest import BACKEND, Gateway, GatewayFactory, SettingsFactory, settings_factory
from tests.fakes.scripted_upstream import ScriptedUpstream, cut_after_chunks, fail, ok, stall_before_headers
from tests.support.governance import ODOCK, Served, bearer, eventually, fire, operator, serve_env, stop_served
from tests.support.metrics import Scrape, scrape
from tests.support.routing import MESSAGES, RoutingTenant, request_id_of, routing_tenant
from tests.support.server import ThreadedServer, free_port

TOKEN = "scrape-" + secrets.token_hex(8)
CHAT = "/v1/chat/completions"
FAILOVER: dict[str, Any] = {
    "strategy": "failover",
    "candidates": [{"modelName": "primary"}, {"modelName": "backup"}],
    "failoverOn": ["5xx"],
    "maxRetries": 1,
}
# Every label the catalogue allows (docs/observability.md#metrics), plus the histograms' ``le``.
CATALOGUE_LABELS = {
    "route", "status_class", "provider", "endpoint", "outcome", "code", "gen_ai_provider_name",
    "gen_ai_operation_name", "gen_ai_token_type", "token_type", "ratelimit_stage", "decision",
    "version", "le",
}  # fmt: skip


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    """The scripted upstream every provider of the module points at."""
    with ScriptedUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def metered(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, provider_keypair: KeyPair
) -> Iterator[Gateway]:
    """The module's gateway on the active backend, its metrics behind a bearer token."""
    settings = settings_factory(BACKEND, tmp_path_factory, request)(
        provider_key_encryption_key_id=provider_keypair.key_id,
        provider_key_encryption_private_key=provider_keypair.private_pem,
        metrics_token=TOKEN,
    )
    app = create_app(settings)
    gateway = Gateway(server=ThreadedServer(app).start(), app=app)
    yield gateway
    gateway.server.stop()


def tenant_of(gateway: Gateway, upstream: ScriptedUpstream, **options: Any) -> RoutingTenant:
    """``primary`` (1 USD per 1K tokens, on ``main``) and ``backup`` (2 USD, on ``backup``), both OpenAI."""
    models = {"primary": ("main", 1.0), "backup": ("backup", 2.0)}
    return routing_tenant(gateway, upstream.base_url + "/v1", models, **options)


def settled(gateway: Gateway) -> Scrape:
    """A scrape taken once no request is in flight (each one before it is then fully recorded)."""
    taken: list[Scrape] = []

    async def idle() -> bool:
        taken.append(await asyncio.to_thread(scrape, gateway.base_url, TOKEN))
        return taken[-1].value("gateway_requests_in_flight") == 0

    asyncio.run(eventually(idle, "no request in flight"))
    return taken[-1]


def stream_text(tenant: RoutingTenant, model: str) -> str:
    """One streamed call; its text."""
    with tenant.client(timeout=30).chat.completions.with_streaming_response.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as response:
        return "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)


def test_requests_are_counted_by_bounded_route_and_status_class(
    metered: Gateway, upstream: ScriptedUpstream
) -> None:
    """Model calls by their route, fixed routes by their path, unknown paths as ``other``."""
    tenant = tenant_of(metered, upstream)
    base = metered.base_url
    before = settled(metered)
    tenant.chat("primary")
    assert httpx.post(base + CHAT, json={"model": "primary"}, headers=bearer("sk-nobody")).status_code == 401
    assert httpx.get(base + CHAT).status_code == 405
    assert httpx.get(base + "/v1/models", headers=bearer(tenant.secret)).status_code == 200
    assert httpx.get(base + "/nowhere/" + secrets.token_hex(4)).status_code == 404
    assert httpx.post(base + "/v1beta/models/some-model:countTokens", json={}).status_code == 401
    after = settled(metered)

    def grew(route: str, status_class: str) -> float:
        return after.delta(before, "gateway_requests_total", route=route, status_class=status_class)

    assert grew(CHAT, "2xx") == 1
    assert grew(CHAT, "4xx") == 2  # the unknown key and the wrong method
    assert grew("/v1/models", "2xx") == 1
    assert grew("other", "4xx") == 1
    assert grew("/v1beta/models/{model}:countTokens", "4xx") == 1
    assert after.delta(before, "gateway_request_duration_seconds_count", route=CHAT) == 3
    assert not any(s.labels.get("route", "").startswith("/nowhere") for s in after.samples)


def test_a_stream_is_in_flight_until_its_last_byte_then_counted_completed(
    metered: Gateway, upstream: ScriptedUpstream
) -> None:
    """While a stream waits on its upstream it is in flight; once done: a completed session with its times."""
    tenant = tenant_of(metered, upstream)
    slug = tenant.slug("primary")
    upstream.script(slug, stall_before_headers())
    before = settled(metered)
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(stream_text, tenant, "primary")

        async def waiting() -> bool:
            now = await asyncio.to_thread(scrape, metered.base_url, TOKEN)
            return upstream.calls(slug) == 1 and now.value("gateway_requests_in_flight") == 1

        asyncio.run(eventually(waiting, "the stream in flight, waiting on the upstream"))
        upstream.release()
        text = call.result(timeout=30)
    assert text
    after = settled(metered)
    assert after.delta(before, "gateway_stream_sessions_total", provider="openai", outcome="completed") == 1
    assert after.delta(before, "gateway_stream_duration_seconds_count", provider="openai") == 1
    first_token = "gen_ai_server_time_to_first_token_seconds_count"
    assert after.delta(before, first_token, gen_ai_provider_name="openai") == 1
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert after.delta(before, duration, gen_ai_provider_name="openai", gen_ai_operation_name="chat") == 1
    attempts = "gateway_provider_requests_total"
    assert after.delta(before, attempts, provider="openai", endpoint="chat", outcome="success") == 1


def test_a_stream_cut_by_the_upstream_is_interrupted_and_a_failed_attempt(
    metered: Gateway, upstream: ScriptedUpstream
) -> None:
    """The upstream drops the stream after two chunks: an interrupted session, an attempt in error."""
    tenant = tenant_of(metered, upstream)
    upstream.script(tenant.slug("primary"), cut_after_chunks(2))
    before = settled(metered)
    with contextlib.suppress(openai.APIError):
        stream_text(tenant, "primary")
    after = settled(metered)
    assert after.delta(before, "gateway_stream_sessions_total", provider="openai", outcome="interrupted") == 1
    assert after.delta(before, "gateway_stream_sessions_total", provider="openai", outcome="completed") == 0
    attempts = "gateway_provider_requests_total"
    assert after.delta(before, attempts, provider="openai", endpoint="chat", outcome="error") == 1
    errors = "gateway_provider_errors_total"
    assert after.delta(before, errors, provider="openai", code="upstream_stream_interrupted") == 1


def test_a_failover_counts_the_failed_attempt_and_the_reroute(
    metered: Gateway, upstream: ScriptedUpstream
) -> None:
    """The primary answers 503, the backup answers: two upstream attempts, one failed, one reroute."""
    tenant = tenant_of(metered, upstream, policy=FAILOVER)
    upstream.script(tenant.slug("primary"), fail(503))
    upstream.script(tenant.slug("backup"), ok("from the backup"))
    before = settled(metered)
    raw = tenant.chat("primary")
    assert raw.parse().choices[0].message.content == "from the backup"
    after = settled(metered)
    (failed, answered) = tenant.record(request_id_of(raw)).routing["attempts"]
    code = failed["error"]["code"]
    attempts = "gateway_provider_requests_total"
    assert after.delta(before, attempts, provider="openai", endpoint="chat", outcome="error") == 1
    assert after.delta(before, attempts, provider="openai", endpoint="chat", outcome="success") == 1
    assert after.delta(before, "gateway_provider_errors_total", provider="openai", code=code) == 1
    assert after.delta(before, "gateway_routing_attempts_total", outcome="failed") == 1
    assert after.delta(before, "gateway_routing_attempts_total", outcome="success") == 1
    assert after.delta(before, "gateway_routing_decisions_total", decision="rerouted") == 1
    assert after.delta(before, "gateway_routing_decisions_total", decision="first_choice") == 0
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert after.delta(before, duration, gen_ai_provider_name="openai", gen_ai_operation_name="chat") == 2
    assert answered["outcome"] == "success"


def test_tokens_and_cost_are_counted_by_provider_type(metered: Gateway, upstream: ScriptedUpstream) -> None:
    """10 input and 5 output tokens at 1 USD per 1K: counters, per-request histograms and 0.015 USD."""
    tenant = tenant_of(metered, upstream)
    upstream.script(tenant.slug("primary"), ok(prompt_tokens=10, completion_tokens=5))
    before = settled(metered)
    tenant.chat("primary")
    after = settled(metered)
    assert after.delta(before, "gateway_tokens_total", provider="openai", token_type="input") == 10
    assert after.delta(before, "gateway_tokens_total", provider="openai", token_type="output") == 5
    usage = {"gen_ai_provider_name": "openai", "gen_ai_operation_name": "chat"}
    assert after.delta(before, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **usage) == 10
    assert after.delta(before, "gen_ai_client_token_usage_sum", gen_ai_token_type="output", **usage) == 5
    assert after.delta(before, "gen_ai_client_token_usage_count", gen_ai_token_type="input", **usage) == 1
    assert after.delta(before, "gateway_cost_usd_total", provider="openai") == pytest.approx(0.015)


def test_a_rate_limit_rejection_is_counted_at_its_gate(metered: Gateway, upstream: ScriptedUpstream) -> None:
    """One request a minute: the second is refused by the early gate."""
    policies = {"ratelimit": {"requests": {"per_minute": 1}}}
    tenant = tenant_of(metered, upstream, key_policies=policies)
    before = settled(metered)
    tenant.chat("primary")
    with pytest.raises(openai.RateLimitError):
        tenant.chat("primary")
    after = settled(metered)
    decisions = "gateway_ratelimit_decisions_total"
    assert after.delta(before, decisions, ratelimit_stage="early", decision="allow") == 1
    assert after.delta(before, decisions, ratelimit_stage="early", decision="reject") == 1
    assert after.delta(before, decisions, ratelimit_stage="early", decision="fail_open") == 0


def test_a_budget_rejection_is_counted(metered: Gateway, upstream: ScriptedUpstream) -> None:
    """A budget of one nano-dollar refuses the call before the upstream."""
    tenant = tenant_of(metered, upstream, budget_nanos=1)
    before = settled(metered)
    with pytest.raises(openai.APIStatusError) as refused:
        tenant.chat("primary")
    assert refused.value.status_code == 402
    after = settled(metered)
    assert after.delta(before, "gateway_budget_decisions_total", decision="reject") == 1
    assert after.delta(before, "gateway_budget_decisions_total", decision="allow") == 0
    assert after.delta(before, "gateway_provider_requests_total") == 0


def test_provider_keys_are_decrypted_once_and_invalidations_counted(
    metered: Gateway, upstream: ScriptedUpstream
) -> None:
    """Provisioning publishes invalidations; two calls with a new provider key decrypt it once."""
    before = settled(metered)
    tenant = tenant_of(metered, upstream)
    provisioned = settled(metered)
    assert provisioned.delta(before, "gateway_cache_invalidations_total") >= 1
    tenant.chat("primary")
    tenant.chat("primary")
    after = settled(metered)
    assert after.delta(provisioned, "gateway_provider_key_decryptions_total") == 1


def test_usage_records_written_are_counted(metered: Gateway, upstream: ScriptedUpstream) -> None:
    """The writer's batch reports its records stored; nothing is left queued."""
    tenant = tenant_of(metered, upstream)
    before = settled(metered)
    tenant.chat("primary")
    tenant.chat("primary")

    async def written() -> Scrape | None:
        now = await asyncio.to_thread(scrape, metered.base_url, TOKEN)
        stored = now.delta(before, "gateway_usage_flushed_total") >= 2
        return now if stored and now.value("gateway_usage_queue_depth") == 0 else None

    after = asyncio.run(eventually(written, "two usage records stored"))
    assert after.delta(before, "gateway_usage_flushes_total", outcome="ok") >= 1
    assert after.delta(before, "gateway_usage_flushes_total", outcome="error") == 0
    assert after.delta(before, "gateway_usage_dead_letters_total") == 0


def test_no_label_value_is_an_identifier(metered: Gateway, upstream: ScriptedUpstream) -> None:
    """No organisation, key, model, provider, record or request id (nor a model name) is a label."""
    tenant = tenant_of(metered, upstream, policy=FAILOVER)
    upstream.script(tenant.slug("primary"), fail(500))
    request_id = "req-metrics-" + secrets.token_hex(6)
    raw = tenant.client(timeout=30).chat.completions.with_raw_response.create(
        model="primary", messages=MESSAGES, extra_headers={"x-request-id": request_id}
    )
    record = tenant.record(request_id_of(raw))
    after = settled(metered)
    identifiers = {
        request_id, record.id, record.organisation_id, record.api_key_id, record.model_id, record.provider_id,
        tenant.organisation_id, tenant.key_id, tenant.budget_id, *tenant.providers.values(),
        *tenant.slugs.values(), "primary", "backup",
    }  # fmt: skip
    assert request_id_of(raw) == request_id
    for sample in after.samples:
        assert set(sample.labels) <= CATALOGUE_LABELS, sample
        assert not identifiers & set(sample.labels.values()), sample


def test_build_info_and_process_metrics_are_exposed(metered: Gateway) -> None:
    """``gateway_build_info`` is 1 for this version; the process' memory, CPU and start time are there."""
    now = scrape(metered.base_url, TOKEN)
    assert now.value("gateway_build_info", version=__version__) == 1
    assert now.value("process_resident_memory_bytes") > 0
    assert now.value("process_start_time_seconds") > 0
    assert now.types["process_cpu_seconds"] == "counter"
    assert now.has("process_open_fds")


def test_a_scrape_without_the_token_is_refused(metered: Gateway) -> None:
    """With ODOCK_METRICS_TOKEN set, no token or a wrong one gets a JSON 401."""
    for headers in ({}, bearer("not-" + TOKEN), {"authorization": TOKEN}):
        reply = httpx.get(metered.base_url + "/metrics", headers=headers)
        assert (reply.status_code, reply.headers["content-type"]) == (401, "application/json")
        assert reply.json()["error"]["code"] == "unauthorized"


def test_metrics_can_be_turned_off(gateway_factory: GatewayFactory, make_settings: SettingsFactory) -> None:
    """ODOCK_METRICS_ENABLED=false: /metrics is a JSON 404."""
    gateway = gateway_factory(make_settings(metrics_enabled=False))
    reply = httpx.get(gateway.base_url + "/metrics")
    assert (reply.status_code, reply.headers["content-type"]) == (404, "application/json")
    assert reply.json()["error"]["code"] == "not_found"


# --- several workers -------------------------------------------------------------------------------
FIRED = 24
SCRAPES = 6


def _workers(supervisor: int) -> list[int]:
    """The worker processes uvicorn spawned for the ``odock serve`` process ``supervisor``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            if parent == supervisor and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _resident_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def production_settings(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Settings:
    """Settings on PostgreSQL and Redis, whatever the active backend (made before the test's loop runs)."""
    return settings_factory("production", tmp_path_factory, request)()


async def test_every_worker_answers_a_scrape_with_the_totals_of_all(
    production_settings: Settings, tmp_path: Path
) -> None:
    """`odock serve --workers 2`: N calls spread over fresh connections; every scrape, whichever
    worker answers it, says N, and the process memory is the workers' sum."""
    settings = production_settings
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    async with operator(settings) as admin:
        tenant = await admin.tenant()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            ODOCK, "serve", "--workers", "2", env=serve_env(settings, tmp_path / "data", port, {}),
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    served = Served("workers", process, base_url, log)
    try:
        fresh = httpx.Limits(max_connections=FIRED, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=30, limits=fresh) as client:

            async def both_ready() -> bool:
                assert process.returncode is None, served.output()
                with contextlib.suppress(httpx.TransportError):
                    replies = [await client.get(base_url + "/v1/health") for _ in range(4)]
                    return len(_workers(process.pid)) == 2 and all(r.status_code == 200 for r in replies)
                return False

            await eventually(both_ready, "two workers serving", deadline=90)
            replies = await fire(client, [base_url], tenant.secret, tenant.model, FIRED)
            assert [r.status_code for r in replies] == [200] * FIRED

            async def scraped() -> Scrape:
                reply = await client.get(base_url + "/metrics")
                assert reply.status_code == 200, reply.text
                return Scrape.parse(reply.text)

            async def idle() -> Scrape | None:
                now = await scraped()
                return now if now.value("gateway_requests_in_flight") == 0 else None

            await eventually(idle, "no request in flight")
            scrapes = [await scraped() for _ in range(SCRAPES)]
            workers = _workers(process.pid)
            resident = [_resident_bytes(pid) for pid in workers]
    finally:
        await stop_served([served])
    for now in scrapes:
        assert now.value("gateway_requests_total", route=CHAT, status_class="2xx") == FIRED, served.output()
        assert now.value("gateway_provider_requests_total", provider="mock", outcome="success") == FIRED
        assert now.value("gateway_tokens_total", provider="mock", token_type="output") == FIRED * 10
        assert now.value("gateway_requests_in_flight") == 0
        assert now.value("gateway_build_info", version=__version__) == 1
    assert len(workers) == 2
    memory = scrapes[-1].value("process_resident_memory_bytes")
    # The sum over both workers: well above either one alone, and close to both together.
    assert 1.3 * max(resident) < memory < 1.5 * sum(resident), (memory, resident)
    assert 0 < scrapes[-1].value("process_start_time_seconds") <= time.time()
