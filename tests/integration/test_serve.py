"""``odock serve`` as an operator starts it: its options, against a real process on the active backend."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from odock.settings import Settings
from odock.tenancy.tables import Organisation
from tests.conftest import SettingsFactory
from tests.support.governance import ODOCK, Served, eventually, operator, serve_env, stop_served
from tests.support.raw_http import send_raw
from tests.support.server import free_port


async def serve_with(args: list[str], env: dict[str, str], base_url: str, log: Path) -> Served:
    """Start ``odock serve ARGS`` and wait until ``base_url`` answers its health probe."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            ODOCK, "serve", *args, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    served = Served("gateway", process, base_url, log)
    async with httpx.AsyncClient(timeout=2) as client:

        async def healthy() -> bool:
            assert process.returncode is None, f"odock serve exited: {served.output()}"
            with contextlib.suppress(httpx.TransportError):
                return (await client.get(base_url + "/v1/health")).status_code == 200
            return False

        await eventually(healthy, "odock serve to become healthy", deadline=60)
    return served


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Fresh settings on the active backend (made before the test's event loop runs)."""
    return make_settings()


async def test_serve_config_option_reads_its_file_and_wins_over_odock_config(
    settings: Settings, tmp_path: Path
) -> None:
    """`odock serve --config FILE` takes settings and declared resources from FILE, not ODOCK_CONFIG."""
    port = free_port()
    organisation = "from-option-" + secrets.token_hex(3)
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text(f"settings:\n  port: {port}\norganisations:\n  - name: {organisation}\n")
    ignored = tmp_path / "ignored.yaml"
    ignored.write_text("settings:\n  port: 70000\n")  # invalid: a server reading it would exit 2
    env = serve_env(settings, tmp_path / "data", port, {"ODOCK_CONFIG": str(ignored)})
    del env["ODOCK_PORT"]  # the port comes from the chosen file only
    async with operator(settings) as admin:
        served = await serve_with(
            ["--config", str(chosen)], env, f"http://127.0.0.1:{port}", tmp_path / "serve.log"
        )
        try:
            async with admin.sessions() as session:
                query = select(Organisation.name).where(Organisation.name == organisation)
                assert await session.scalar(query) == organisation, served.output()
        finally:
            await stop_served([served])


async def test_serve_answers_malformed_requests_in_json(settings: Settings, tmp_path: Path) -> None:
    """`odock serve` runs Odock's HTTP protocol: a request with a bad Content-Length gets a JSON 400."""
    port = free_port()
    env = serve_env(settings, tmp_path / "data", port, {})
    served = await serve_with([], env, f"http://127.0.0.1:{port}", tmp_path / "serve.log")
    try:
        request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
        reply = await asyncio.to_thread(send_raw, port, request)
    finally:
        await stop_served([served])
    assert (reply.status, reply.headers["content-type"]) == (400, "application/json")
    assert reply.json()["error"]["code"] == "malformed_http_request"
    assert reply.headers["x-request-id"]


async def test_serve_workers_run_odocks_http_protocol(settings: Settings, tmp_path: Path) -> None:
    """Production: `odock serve --workers 2` hands the protocol to its workers (JSON 400 from each)."""
    if not settings.redis_url:
        pytest.skip("several workers need the production backend (Redis)")
    port = free_port()
    env = serve_env(settings, tmp_path / "data", port, {})
    served = await serve_with(["--workers", "2"], env, f"http://127.0.0.1:{port}", tmp_path / "serve.log")
    try:
        request = b"GET /v1/health HTTP/1.1\nHost: x\n\n"
        replies = [await asyncio.to_thread(send_raw, port, request) for _ in range(4)]
    finally:
        await stop_served([served])
    assert {(r.status, r.headers["content-type"]) for r in replies} == {(400, "application/json")}
