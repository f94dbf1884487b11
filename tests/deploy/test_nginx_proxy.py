"""The Compose proxy's nginx.conf, run by a real nginx in front of a real gateway.

The file is used as written, with only the replicas' and the listener's addresses pointed at
this machine: nginx must accept it, forward the client's address so that a trusted-proxy
gateway sees the client behind it, pass a stream through as it is produced, and keep /metrics
to itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from odock.app import create_app
from odock.limits.service import PolicyScope
from odock.providers.crypto import KeyPair
from odock.providers.tables import ProviderType
from tests.conftest import BACKEND, Gateway, Tenant, provision, settings_factory
from tests.deploy.conftest import REPO
from tests.fakes.openai_server import FakeOpenAI, running_fake_openai
from tests.support.server import ThreadedServer, free_port
from tests.support.tools import require_tool

NGINX_CONF = REPO / "deploy" / "compose" / "nginx.conf"
UPSTREAM_KEY = "sk-fake-upstream"
CLIENT_ADDRESS = "127.0.0.2"
OTHER_ADDRESS = "127.0.0.3"


@dataclass
class Stack:
    """nginx (with the repository's nginx.conf) in front of a gateway whose upstream is a fake OpenAI."""

    proxy_url: str
    gateway: Gateway
    fake: FakeOpenAI


def nginx_main_config(directory: Path, gateway_port: int, listen_port: int) -> Path:
    """A main nginx.conf including deploy/compose/nginx.conf, re-pointed at local addresses."""
    site = NGINX_CONF.read_text()
    for replica in ("odock-1:8080", "odock-2:8080"):
        assert replica in site, f"{replica} is no longer in nginx.conf: update this test"
        site = site.replace(replica, f"127.0.0.1:{gateway_port}")
    assert "listen 8080;" in site
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{listen_port};")
    (directory / "site.conf").write_text(site)
    temp_paths = "\n".join(
        f"  {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = directory / "nginx.conf"
    main.write_text(
        f"""daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 64; }}
http {{
  access_log off;
{temp_paths}
  include {directory / "site.conf"};
}}
"""
    )
    return main


def wait_until_serving(url: str, process: subprocess.Popen[bytes], deadline_seconds: float = 20) -> None:
    """Poll ``url`` until it answers (or fail when nginx died or the deadline passed)."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "nginx exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{url} did not answer within {deadline_seconds} s")


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, encryption_pair: KeyPair
) -> Iterator[Stack]:
    """One nginx, one gateway trusting 127.0.0.1 as its proxy, one fake upstream for the module."""
    nginx = require_tool("nginx", "apt-get install nginx-light (.ci/run installs it)")
    make = settings_factory(BACKEND, tmp_path_factory, request)
    settings = make(
        trusted_proxy_cidrs=["127.0.0.1/32"],
        provider_key_encryption_key_id=encryption_pair.key_id,
        provider_key_encryption_private_key=encryption_pair.private_pem,
    )
    app = create_app(settings)
    server = ThreadedServer(app).start()
    directory = tmp_path_factory.mktemp("nginx")
    listen_port = free_port()
    config = nginx_main_config(directory, server.port, listen_port)
    checked = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([nginx, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proxy_url = f"http://127.0.0.1:{listen_port}"
        wait_until_serving(proxy_url + "/v1/health", process)
        with running_fake_openai(api_key=UPSTREAM_KEY) as fake:
            yield Stack(proxy_url, Gateway(server=server, app=app), fake)
    finally:
        process.terminate()
        process.wait(timeout=30)
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def upstream_tenant(stack: Stack, slug: str = "gpt-test") -> Tenant:
    """A tenant whose model is served by the fake OpenAI upstream."""
    return provision(
        stack.gateway,
        provider_type=ProviderType.OPENAI,
        base_url=stack.fake.base_url + "/v1",
        provider_secret=UPSTREAM_KEY,
        slug=slug,
    )


def client(stack: Stack, tenant: Tenant, source: str = "127.0.0.1", **headers: str) -> openai.OpenAI:
    """The official OpenAI SDK, through the proxy, connecting from the loopback address ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    return openai.OpenAI(
        base_url=stack.proxy_url + "/v1",
        api_key=tenant.secret,
        max_retries=0,
        default_headers=headers,
        http_client=httpx.Client(transport=transport),
    )


def test_the_gateway_sees_the_client_behind_the_proxy(stack: Stack) -> None:
    """nginx appends the client's address to X-Forwarded-For: an allowlist on it works, a forged one does not.

    The client connects from 127.0.0.2 or 127.0.0.3; nginx reaches the gateway from 127.0.0.1, the
    only trusted proxy.
    """
    tenant = upstream_tenant(stack)
    envelope = {"ip": {"allowlist": [f"{CLIENT_ADDRESS}/32"]}}
    stack.gateway.run(
        stack.gateway.runtime.control.policies.replace(PolicyScope.API_KEY, tenant.key_id, envelope)
    )
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]
    answer = client(stack, tenant, CLIENT_ADDRESS).chat.completions.create(
        model=tenant.model, messages=messages
    )
    assert answer.choices[0].message.content
    forger = client(stack, tenant, OTHER_ADDRESS, **{"X-Forwarded-For": CLIENT_ADDRESS})
    with pytest.raises(openai.PermissionDeniedError) as refused:
        forger.chat.completions.create(model=tenant.model, messages=messages)
    assert refused.value.code == "ip_not_allowed"


def test_a_stream_reaches_the_client_while_the_upstream_still_writes(stack: Stack) -> None:
    """A streamed call comes through nginx piece by piece: the first before the upstream sent the last."""
    stack.fake.drip_chunks = 40
    stack.fake.chunk_delay_seconds = 0.05
    tenant = upstream_tenant(stack, slug="fake-slow-stream")
    before = len(stack.fake.drip_chunks_sent)
    stream = client(stack, tenant).chat.completions.create(
        model=tenant.model,
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
    )
    sent_when_first_arrived = None
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if sent_when_first_arrived is None:
                sent_when_first_arrived = stack.fake.drip_chunks_sent[before]
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) == 40
    assert sent_when_first_arrived is not None
    assert sent_when_first_arrived < 40


def test_metrics_are_not_served_through_the_proxy(stack: Stack) -> None:
    """nginx itself answers 404 on /metrics (scrapes go to each replica); other paths reach the gateway."""
    metrics = httpx.get(stack.proxy_url + "/metrics", timeout=10)
    assert metrics.status_code == 404
    assert "nginx" in metrics.text
    health = httpx.get(stack.proxy_url + "/v1/health", timeout=10)
    assert health.json() == {"status": "ok"}
