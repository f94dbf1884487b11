"""The gateway's dispatch: routes and methods, the request-body limit, the request id, and the
routes it answers itself (health, readiness, models, cache invalidation).

A real embedded runtime serves the gateway, which is called as the ASGI server calls it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from odock.providers.crypto import KeyPair
from odock.runtime import Runtime, open_runtime
from odock.settings import load_settings
from odock.web.asgi import Message
from odock.web.gateway import Gateway
from tests.support.stages import Rows

DEADLINE = 10.0  # seconds; only bounds a call that would otherwise hang on a regression
BODY_LIMIT = 64
INVALIDATION_SECRET = "invalidate-me"


@pytest.fixture
async def runtime(migrated_sqlite: Path, encryption_pair: KeyPair, tmp_path: Path) -> AsyncIterator[Runtime]:
    """An embedded runtime with a small request-body limit (on a copy of a migrated database)."""
    shutil.copyfile(migrated_sqlite, tmp_path / "odock.db")
    settings = load_settings(
        data_dir=tmp_path,
        demo=False,
        log_level="warning",
        max_request_bytes=BODY_LIMIT,
        cache_invalidation_secret=INVALIDATION_SECRET,
        provider_key_encryption_key_id=encryption_pair.key_id,
        provider_key_encryption_private_key=encryption_pair.private_pem,
    )
    async with open_runtime(settings) as opened:
        yield opened


@pytest.fixture
def gateway(runtime: Runtime) -> Gateway:
    """The gateway routes over the runtime."""
    return Gateway(runtime)


@dataclass
class Answer:
    """What the gateway sent back."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The JSON error object of the body."""
        error: dict[str, Any] = orjson.loads(self.body)["error"]
        return error


@dataclass
class Client:
    """The ASGI server's side of one request: hands over the body chunks, collects the answer."""

    chunks: list[bytes] = field(default_factory=lambda: [b""])
    disconnect: bool = False
    sent: list[Message] = field(default_factory=list)
    _next: int = 0

    async def receive(self) -> Message:
        if self._next < len(self.chunks):
            chunk = self.chunks[self._next]
            self._next += 1
            return {"type": "http.request", "body": chunk, "more_body": self._next < len(self.chunks)}
        if self.disconnect:
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()  # the client keeps the connection open
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def answer(self) -> Answer:
        """The response, once complete."""
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return Answer(start["status"], headers, body)


async def call(
    gateway: Gateway,
    path: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    client: Client | None = None,
) -> Client:
    """Run one request through the gateway; the client side afterwards."""
    client = client or Client()
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
    }
    await asyncio.wait_for(gateway(scope, client.receive, client.send), DEADLINE)
    return client


def test_handles_only_its_own_routes(gateway: Gateway) -> None:
    """The gateway claims the /v1 routes it serves and nothing else (the rest goes to the API)."""
    assert gateway.handles("/v1/chat/completions")
    assert gateway.handles("/v1/models")
    assert not gateway.handles("/api/organisations")
    assert not gateway.handles("/v1/chat/completions/")


async def test_an_unknown_path_is_a_json_404_with_the_request_id(gateway: Gateway) -> None:
    """A path no route serves is a JSON 404 not_found carrying the caller's request id."""
    answer = (await call(gateway, "/v1/nothing", headers={"x-request-id": "trace-1"})).answer()
    assert answer.status == 404
    assert answer.error()["code"] == "not_found"
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"] == "trace-1"


async def test_a_wrong_method_is_a_405_naming_the_allowed_ones(gateway: Gateway) -> None:
    """A known path with another method is a JSON 405 with ``Allow`` and a request id."""
    answer = (await call(gateway, "/v1/chat/completions", method="GET")).answer()
    assert answer.status == 405
    assert answer.error()["code"] == "method_not_allowed"
    assert answer.headers["allow"] == "POST"
    assert answer.headers["x-request-id"]


async def test_a_declared_body_over_the_limit_is_refused_before_reading(gateway: Gateway) -> None:
    """A Content-Length above max_request_bytes is 413 without reading a byte of the body."""
    client = Client(chunks=[])  # receiving anything would hang the call
    headers = {"content-length": str(BODY_LIMIT + 1), "x-request-id": "big-1"}
    answer = (await call(gateway, "/v1/chat/completions", headers=headers, client=client)).answer()
    assert answer.status == 413
    assert answer.error()["code"] == "payload_too_large"
    assert answer.headers["x-request-id"] == "big-1"


async def test_a_body_growing_past_the_limit_is_refused(gateway: Gateway) -> None:
    """A body without Content-Length is refused with 413 once its chunks exceed the limit."""
    client = Client(chunks=[b"x" * BODY_LIMIT, b"x"])
    answer = (await call(gateway, "/v1/embeddings", client=client)).answer()
    assert answer.status == 413


async def test_a_client_gone_while_sending_gets_nothing(gateway: Gateway) -> None:
    """A client that disconnects before its body is complete is sent nothing at all."""
    client = Client(chunks=[], disconnect=True)
    await call(gateway, "/v1/chat/completions", client=client)
    assert client.sent == []


async def test_a_model_call_reaches_the_pipeline_with_the_inbound_request_id(gateway: Gateway) -> None:
    """A body within the limit goes through the pipeline, which answers with the caller's request id."""
    client = Client(chunks=[b'{"model":"m",', b'"messages":[]}'])
    answer = (
        await call(gateway, "/v1/chat/completions", headers={"x-request-id": "abc-2"}, client=client)
    ).answer()
    assert answer.status == 401  # no key: the pipeline's authentication refused it
    assert answer.error()["code"] == "unauthorized"
    assert answer.headers["x-request-id"] == "abc-2"


async def test_a_malformed_request_id_is_replaced(gateway: Gateway) -> None:
    """An inbound request id that is not 1-128 safe characters is replaced by a fresh one."""
    client = await call(gateway, "/v1/chat/completions", headers={"x-request-id": "bad id\t"})
    request_id = client.answer().headers["x-request-id"]
    assert request_id
    assert request_id != "bad id\t"


async def test_each_request_without_an_id_gets_its_own(gateway: Gateway) -> None:
    """Without an inbound id, every request is given a distinct one."""
    first = (await call(gateway, "/v1/chat/completions")).answer().headers["x-request-id"]
    second = (await call(gateway, "/v1/chat/completions")).answer().headers["x-request-id"]
    assert first != second


async def test_health_answers_without_a_key(gateway: Gateway) -> None:
    """The liveness route answers 200 to anyone."""
    answer = (await call(gateway, "/v1/health", method="GET")).answer()
    assert (answer.status, orjson.loads(answer.body)) == (200, {"status": "ok"})


async def test_readiness_checks_the_database(gateway: Gateway) -> None:
    """The readiness route answers 200 once the database answers (no Redis in the embedded mode)."""
    answer = (await call(gateway, "/v1/healthz", method="GET")).answer()
    assert answer.status == 200
    assert orjson.loads(answer.body) == {"status": "ready", "checks": {"database": "ok"}}


async def test_models_lists_what_the_key_may_call(gateway: Gateway, runtime: Runtime) -> None:
    """``GET /v1/models`` lists the presenting key's granted models, and refuses a missing key."""
    rows = Rows(runtime.sessions)
    org = await rows.organisation()
    granted = await rows.model(org, "granted")
    await rows.model(org, "other")
    issued = await rows.key(org, grants=(granted,))
    headers = {"authorization": f"Bearer {issued.secret}"}
    answer = (await call(gateway, "/v1/models", method="GET", headers=headers)).answer()
    assert answer.status == 200
    assert [m["id"] for m in orjson.loads(answer.body)["data"]] == ["granted"]
    refused = (await call(gateway, "/v1/models", method="GET")).answer()
    assert (refused.status, refused.error()["code"]) == (401, "unauthorized")


@pytest.mark.parametrize("presented", [None, "wrong"])
async def test_invalidation_needs_the_shared_secret(gateway: Gateway, presented: str | None) -> None:
    """The cache-invalidation route refuses a caller without the configured secret (401)."""
    headers = {} if presented is None else {"x-odock-invalidation-secret": presented}
    client = Client(chunks=[b'{"scope":"all"}'])
    answer = (await call(gateway, "/v1/internal/cache/invalidate", headers=headers, client=client)).answer()
    assert (answer.status, answer.error()["code"]) == (401, "unauthorized")


async def test_invalidation_with_the_secret_is_published(gateway: Gateway, runtime: Runtime) -> None:
    """With the secret, a well-formed invalidation is published (202, the bus's new generation)."""
    headers = {"x-odock-invalidation-secret": INVALIDATION_SECRET}
    before = runtime.bus.generation
    client = Client(chunks=[b'{"scope":"all"}'])
    answer = (await call(gateway, "/v1/internal/cache/invalidate", headers=headers, client=client)).answer()
    assert answer.status == 202
    assert orjson.loads(answer.body) == {"accepted": True, "generation": runtime.bus.generation}
    assert runtime.bus.generation != before


async def test_a_malformed_invalidation_is_a_400(gateway: Gateway) -> None:
    """An invalidation that names nothing to evict is refused with 400 invalid_request_body."""
    headers = {"x-odock-invalidation-secret": INVALIDATION_SECRET}
    client = Client(chunks=[b'{"scope":"api_key"}'])
    answer = (await call(gateway, "/v1/internal/cache/invalidate", headers=headers, client=client)).answer()
    assert (answer.status, answer.error()["code"]) == (400, "invalid_request_body")


@pytest.mark.parametrize(("path", "method"), [("/v1/health", "GET"), ("/v1/models", "GET")])
async def test_the_gateways_own_routes_carry_the_request_id(gateway: Gateway, path: str, method: str) -> None:
    """Answers the gateway gives outside the pipeline carry the caller's request id too."""
    answer = (await call(gateway, path, method=method, headers={"x-request-id": "own-1"})).answer()
    assert answer.headers.get("x-request-id") == "own-1"
