"""Log hygiene: a whole flow through one ``odock serve`` at debug level writes JSON lines only,
a request line per model call, and none of the secrets or contents it handled.

One embedded ``odock serve`` (SQLite, no Redis) runs with ``ODOCK_LOG_LEVEL=debug``,
``ODOCK_LOG_FORMAT=json`` and ``ODOCK_LOG_REQUESTS=all``, its stdout and stderr captured in one
file. The flow: the bootstrap admin signs in with a password (a session cookie); through the API
it creates an organisation, an OpenAI provider on the fake upstream with a provider key, a chat
model, an embeddings model, a model the fake answers with a 500, and an API key; the ``openai`` SDK
then sends a unary chat, a streamed chat and embeddings with a distinctive prompt, a call with a
bad key and one the upstream fails. Then the server stops and its output is read.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.fakes.openai_server import REPLY, FakeOpenAI
from tests.support.governance import ODOCK
from tests.support.server import free_port

ADMIN_EMAIL = "hygiene-admin@example.com"
REQUEST_FIELDS = {
    "event",
    "request_id",
    "organisation_id",
    "key_id",
    "route",
    "model",
    "provider",
    "status",
    "decision",
    "stream",
    "duration_ms",
    "tokens_in",
    "tokens_out",
}
DEADLINE = 60.0


@dataclass
class Flow:
    """What the server wrote, and every value that must not be in it."""

    output: str
    key_id: str
    organisation_id: str
    forbidden: dict[str, str]  # what it is → the value

    def lines(self) -> list[str]:
        """The non-empty lines of the output."""
        return [line for line in self.output.splitlines() if line.strip()]

    def entries(self) -> list[dict[str, Any]]:
        """Every line, parsed."""
        return [orjson.loads(line) for line in self.lines()]

    def requests(self) -> list[dict[str, Any]]:
        """The request log's lines."""
        return [entry for entry in self.entries() if entry.get("event") == "request"]


def wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    """Poll ``/v1/health`` until it answers 200 (fail if the process exits or the deadline passes)."""
    give_up = time.monotonic() + DEADLINE
    with httpx.Client(timeout=2) as client:
        while True:
            assert process.poll() is None, f"odock serve exited:\n{log.read_text(errors='replace')}"
            with contextlib.suppress(httpx.TransportError):
                if client.get(base_url + "/v1/health").status_code == 200:
                    return
            assert time.monotonic() < give_up, f"odock serve not healthy:\n{log.read_text(errors='replace')}"
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and reap (SIGKILL past the deadline)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def configure(admin: httpx.Client, upstream: FakeOpenAI, provider_key: str) -> tuple[str, str, str]:
    """Organisation, provider with its key, three models and an API key; (org id, key id, key secret)."""

    def created(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = admin.post(path, json=body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    org = created("/api/admin/organisations", {"name": "hygiene-" + secrets.token_hex(3)})["id"]
    base = f"/api/organisations/{org}"
    provider = created(
        f"{base}/providers", {"type": "OPENAI", "name": "fake", "base_url": upstream.base_url + "/v1"}
    )
    stored = created(f"{base}/providers/{provider['id']}/keys", {"name": "main", "secret": provider_key})
    for name, slug, kind in (
        ("chat", "gpt-fake", "chat"),
        ("embed", "embed-fake", "embeddings"),
        ("broken", "fake-error-500", "chat"),
    ):
        model = {"name": name, "slug": slug, "type": kind, "provider_id": provider["id"]}
        created(f"{base}/models", {**model, "provider_key_id": stored["id"]})
    key = created(
        f"{base}/apikeys", {"type": "ORGANISATION", "name": "hygiene", "models": ["chat", "embed", "broken"]}
    )
    return org, key["id"], key["secret"]


def call_models(base_url: str, secret: str, prompt: str) -> None:
    """Unary chat, streamed chat, embeddings, a bad key and an upstream failure, through the SDK."""
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=secret, max_retries=0)
    messages: Any = [{"role": "user", "content": prompt}]
    assert client.chat.completions.create(model="chat", messages=messages).choices[0].message.content
    assert list(client.chat.completions.create(model="chat", messages=messages, stream=True))
    assert client.embeddings.create(model="embed", input=prompt).data
    stranger = openai.OpenAI(base_url=base_url + "/v1", api_key="odk-not-a-key-" + secrets.token_hex(8))
    with pytest.raises(openai.AuthenticationError):
        stranger.with_options(max_retries=0).chat.completions.create(model="chat", messages=messages)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="broken", messages=messages)
    assert failed.value.status_code >= 500


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """Run the whole flow once against one ``odock serve`` and hand over what it wrote."""
    workdir = tmp_path_factory.mktemp("hygiene")
    password = "hygiene-password-" + secrets.token_hex(8)
    provider_key = "sk-upstream-" + secrets.token_hex(12)
    prompt = "zebra-quartz-" + secrets.token_hex(6) + " tell me about aardvarks"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODOCK_")}
    env.update(
        ODOCK_HOST="127.0.0.1",
        ODOCK_PORT=str(port),
        ODOCK_DATA_DIR=str(workdir / "data"),
        ODOCK_DEMO="false",
        ODOCK_LOG_LEVEL="debug",
        ODOCK_LOG_FORMAT="json",
        ODOCK_LOG_REQUESTS="all",
        ODOCK_BOOTSTRAP_ADMIN_EMAIL=ADMIN_EMAIL,
        ODOCK_BOOTSTRAP_ADMIN_PASSWORD=password,
        ODOCK_PASSWORD_HASH_TIME_COST="1",
        ODOCK_PASSWORD_HASH_MEMORY_KIB="1024",
        ODOCK_SHUTDOWN_GRACE_SECONDS="5",
        ODOCK_USAGE_FLUSH_INTERVAL_SECONDS="0.05",
    )
    log = workdir / "serve.log"
    with FakeOpenAI(api_key=provider_key) as upstream, log.open("wb") as out:
        process = subprocess.Popen([ODOCK, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_healthy(process, base_url, log)
            with httpx.Client(base_url=base_url, timeout=30) as admin:
                signed_in = admin.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": password})
                assert signed_in.status_code == 200, signed_in.text
                admin.headers["x-csrf-token"] = signed_in.json()["csrf_token"]
                org, key_id, secret = configure(admin, upstream, provider_key)
                call_models(base_url, secret, prompt)
                session = {
                    "session cookie": admin.cookies["odock_session"],
                    "csrf": admin.cookies["odock_csrf"],
                }
        finally:
            stop(process)
    return Flow(
        output=log.read_text(errors="replace"),
        key_id=key_id,
        organisation_id=org,
        forbidden={
            "prompt": prompt,
            "completion": REPLY,
            "API key secret": secret,
            "provider key": provider_key,
            "admin password": password,
            **session,
        },
    )


def test_every_line_is_one_json_object(flow: Flow) -> None:
    """At debug level, with uvicorn, the libraries and every request, each line parses as JSON."""
    assert len(flow.lines()) > 20, flow.output  # debug level: startup, sign-in, requests, shutdown
    for line in flow.lines():
        entry = orjson.loads(line)
        assert {"ts", "level", "logger", "message"} <= set(entry), line


def test_each_model_call_has_a_request_line_with_its_fields(flow: Flow) -> None:
    """Five calls, five request lines: who, what, status, decision, stream, time and tokens, never the key."""
    lines = flow.requests()
    assert all(set(line) >= REQUEST_FIELDS for line in lines), lines
    seen = sorted((line["route"], line["status"], line["decision"], line["stream"]) for line in lines)
    assert seen == [
        ("/v1/chat/completions", 200, "allow", False),
        ("/v1/chat/completions", 200, "allow", True),
        ("/v1/chat/completions", 401, "unauthorized", False),
        ("/v1/chat/completions", 502, "upstream_error", False),
        ("/v1/embeddings", 200, "allow", False),
    ]
    served = [line for line in lines if line["decision"] == "allow"]
    assert {line["key_id"] for line in served} == {flow.key_id}
    assert {line["organisation_id"] for line in served} == {flow.organisation_id}
    assert {line["provider"] for line in served} == {"openai"}
    assert all(line["tokens_in"] > 0 and line["duration_ms"] >= 0 for line in served)
    refused = next(line for line in lines if line["status"] == 401)
    assert (refused["level"], refused["key_id"], refused["organisation_id"]) == ("info", None, None)
    failed = next(line for line in lines if line["status"] >= 500)
    assert (failed["level"], failed["model"]) == ("warning", "broken")


def test_records_written_during_a_request_carry_its_id(flow: Flow) -> None:
    """Records other than the request line, logged while a request was handled, name it and its route."""
    request_ids = {line["request_id"] for line in flow.requests()}
    others = [e for e in flow.entries() if e.get("request_id") in request_ids and e.get("event") != "request"]
    signed_in = [e for e in flow.entries() if "signed in" in e["message"]]
    assert signed_in, "the sign-in was not logged"
    assert all(e.get("route") == "/api/auth/login" and e.get("request_id") for e in signed_in), signed_in
    assert all(e.get("route") for e in others)


def test_no_secret_or_content_reaches_the_log(flow: Flow) -> None:
    """The prompt, the completion, the API key, the provider key, the password and the session are absent."""
    leaked = [what for what, value in flow.forbidden.items() if value in flow.output]
    assert leaked == []
