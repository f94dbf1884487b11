"""What the HTTP server answers by itself, seen through raw sockets: bounds, timeouts, malformed requests.

Every answer is the JSON error shape with an ``X-Request-Id``, and the connection closes after it.
The gateway runs in-thread with the same protocol as ``odock serve`` and short timeouts.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.conftest import Gateway, GatewayFactory, SettingsFactory, provision
from tests.support.raw_http import RawResponse, connect, parse, read_to_close, send_raw

TIMEOUT = 0.5  # the gateway's header and body timeouts in these tests
ERROR_FIELDS = {"code", "message", "type", "param"}


@pytest.fixture
def served(gateway_factory: GatewayFactory, make_settings: SettingsFactory) -> Gateway:
    """A gateway with half-second header and body timeouts and the default size limits."""
    return gateway_factory(
        make_settings(request_header_timeout_seconds=TIMEOUT, request_body_timeout_seconds=TIMEOUT)
    )


def assert_json_error(reply: RawResponse, status: int, code: str) -> None:
    """The reply is Odock's JSON error ``code`` with ``status``, a request id, and a closed connection."""
    assert reply.status == status, reply
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"]
    assert reply.headers["connection"] == "close"
    error = reply.json()["error"]
    assert set(error) == ERROR_FIELDS
    assert error["code"] == code
    assert error["message"]


def head(*lines: str, end: bytes = b"\r\n\r\n") -> bytes:
    """A request head from its lines (CRLF line ends unless the test says otherwise)."""
    return "\r\n".join(lines).encode("latin-1") + end


CHAT = "POST /v1/chat/completions HTTP/1.1"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(head(CHAT, "Host: x", "Content-Length: abc"), id="bad-content-length"),
        pytest.param(
            head(CHAT, "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n",
            id="content-length-and-transfer-encoding",
        ),
        pytest.param(b"GET /v1/health HTTP/1.1\nHost: x\n\n", id="bare-lf"),
        pytest.param(head("GET /v1/health HTTP/1.1", "Host: x", "Bad Header: y"), id="space-in-header-name"),
    ],
)
def test_malformed_request_gets_a_json_400(served: Gateway, request_bytes: bytes) -> None:
    """A request the parser refuses is answered 400 malformed_http_request in JSON with a request id."""
    assert_json_error(send_raw(served.server.port, request_bytes), 400, "malformed_http_request")


def test_oversized_header_gets_a_json_431(served: Gateway) -> None:
    """An unauthenticated request with 128 KiB of headers is refused 431 before it reaches the app."""
    big = "X-Padding: " + "a" * (128 * 1024)
    reply = send_raw(served.server.port, head(CHAT, "Host: x", big, "Content-Length: 2") + b"{}")
    assert_json_error(reply, 431, "request_headers_too_large")


def test_too_many_header_fields_get_a_json_431(served: Gateway) -> None:
    """101 header fields (the default allows 100) are refused 431."""
    fields = [f"X-Field-{n}: v" for n in range(100)]
    reply = send_raw(served.server.port, head("GET /v1/health HTTP/1.1", "Host: x", *fields))
    assert_json_error(reply, 431, "request_headers_too_large")


def test_a_header_that_never_ends_is_refused_while_it_grows(served: Gateway) -> None:
    """A head still growing past the limit is refused at once, without waiting for its end."""
    with connect(served.server.port) as sock:
        sock.sendall(head(CHAT, "Host: x", end=b"\r\nX-Endless: "))
        refused = b""
        for _ in range(64):  # up to 4 MiB of one header value, 64 KiB at a time
            try:
                sock.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server refused and closed; its answer is already in our receive buffer
        refused = read_to_close(sock)
    assert_json_error(parse(refused), 431, "request_headers_too_large")


def test_normal_requests_pass_the_bounds(served: Gateway) -> None:
    """Positive control: 90 header fields, and a 1 MiB body read together with its head, reach the app."""
    fields = [f"X-Field-{n}: v" for n in range(90)]
    health = send_raw(
        served.server.port, head("GET /v1/health HTTP/1.1", "Host: x", "Connection: close", *fields)
    )
    assert health.status == 200
    assert b'{"status":"ok"}' in health.body  # (chunked: the raw body frames it)
    body = b'{"model": "m", "messages": [], "pad": "' + b"p" * (1024 * 1024) + b'"}'
    lines = (
        CHAT,
        "Host: x",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    )
    unauthorised = send_raw(served.server.port, head(*lines) + body)
    assert unauthorised.status == 401  # the app answered: no key


def test_half_sent_head_gets_a_json_408(served: Gateway) -> None:
    """A client that stops halfway through its headers gets 408 request_timeout after the header timeout."""
    started = time.monotonic()
    with connect(served.server.port) as sock:
        sock.sendall(head(CHAT, "Host: x", end=b"\r\nX-Incomplete: "))
        reply = parse(read_to_close(sock))
    assert_json_error(reply, 408, "request_timeout")
    assert time.monotonic() - started >= TIMEOUT


def test_half_sent_body_gets_a_json_408(served: Gateway) -> None:
    """A client that stops halfway through its body gets 408 request_timeout once the body timeout passes."""
    with connect(served.server.port) as sock:
        sock.sendall(head(CHAT, "Host: x", "Content-Length: 100") + b'{"model": ')
        reply = parse(read_to_close(sock))
    assert_json_error(reply, 408, "request_timeout")


def test_a_connection_that_sends_nothing_is_closed(served: Gateway) -> None:
    """A connection that never sends a byte is closed after the header timeout, with nothing to answer."""
    with connect(served.server.port) as sock:
        assert read_to_close(sock) == b""


def test_websocket_upgrade_is_an_ordinary_request(served: Gateway) -> None:
    """An Upgrade: websocket request is served as plain HTTP (here a JSON 401), not a plain-text 500."""
    lines = (
        "GET /v1/models HTTP/1.1",
        "Host: x",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    with connect(served.server.port) as sock:
        sock.sendall(head(*lines))
        raw = b""
        while b"\r\n0\r\n\r\n" not in raw and b"}" not in raw.partition(b"\r\n\r\n")[2]:
            piece = sock.recv(65536)
            assert piece, f"closed after {raw!r}"
            raw += piece
    reply = parse(raw)
    assert reply.status == 401
    assert reply.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/health", 200),
        ("GET", "/v1/healthz", 200),
        ("GET", "/v1/models", 401),
        ("GET", "/v1/keys/self", 401),
        ("POST", "/v1/keys/validate", 401),
        ("POST", "/v1/internal/cache/invalidate", 401),
    ],
)
def test_every_gateway_route_answers_with_the_request_id(
    served: Gateway, method: str, path: str, status: int
) -> None:
    """Answers of the routes outside the pipeline carry X-Request-Id: the client's valid one."""
    reply = httpx.request(method, served.base_url + path, headers={"x-request-id": "trace-42"}, timeout=10)
    assert reply.status_code == status
    assert reply.headers["x-request-id"] == "trace-42"


def read_response(sock: socket.socket, deadline: float = 10.0) -> RawResponse:
    """One response (its status and head; a chunked body read to its end) off a kept-alive connection."""
    give_up = time.monotonic() + deadline
    raw = b""
    while True:
        head_end = raw.find(b"\r\n\r\n")
        if head_end >= 0 and raw.endswith(b"\r\n0\r\n\r\n"):
            return parse(raw)
        assert time.monotonic() < give_up, f"no complete response in {raw!r}"
        piece = sock.recv(65536)
        assert piece, f"the server closed the connection after {raw!r}"
        raw += piece


def test_a_pipelined_request_waiting_its_turn_is_not_timed_out(served: Gateway) -> None:
    """A request queued behind a slow one (reading paused) gets its body time only once it runs."""
    tenant = provision(served, provider_config={"latency_ms": int(TIMEOUT * 3000)})
    body = b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}]}' % tenant.model.encode()
    slow = head(CHAT, "Host: x", f"Authorization: Bearer {tenant.secret}", f"Content-Length: {len(body)}")
    queued = head(CHAT, "Host: x", "Connection: close", "Content-Length: 2")  # answered once its body is read
    with connect(served.server.port) as sock:
        sock.sendall(slow + body + queued)  # the second request's body follows only later
        first = read_response(sock)
        sock.sendall(b"{}")
        second = parse(read_to_close(sock))
    assert first.status == 200, first
    assert second.status == 401, second
    assert b'"code":"unauthorized"' in second.body
