"""Log records: the JSON and console formats, the request context they carry, the format choice."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from odock.telemetry.context import RequestTag, current_request
from odock.telemetry.logging import (
    ConsoleFormatter,
    JsonFormatter,
    RequestContextFilter,
    configure_logging,
    resolve_format,
)


@dataclass
class Capture:
    """A logger writing through one of Odock's formatters into memory."""

    logger: logging.Logger
    stream: io.StringIO

    def lines(self) -> list[str]:
        """What was written, one entry per line."""
        return self.stream.getvalue().splitlines()

    def json(self) -> list[dict[str, object]]:
        """Every line, parsed as JSON."""
        return [orjson.loads(line) for line in self.lines()]


def capture(formatter: logging.Formatter, name: str) -> Iterator[Capture]:
    """A logger of its own (not propagating) with the formatter and the context filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RequestContextFilter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield Capture(logger, stream)
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def as_json() -> Iterator[Capture]:
    """JSON lines."""
    yield from capture(JsonFormatter(), "odock.test.json")


@pytest.fixture
def as_console() -> Iterator[Capture]:
    """Console lines."""
    yield from capture(ConsoleFormatter(), "odock.test.console")


@dataclass
class Principal:
    """Stands in for a key principal: only its organisation is read."""

    organisation_id: str


@dataclass
class Handled:
    """A request whose key is authenticated part-way, like the pipeline's exchange."""

    request_id: str
    route: str
    principal: Principal | None = None

    @property
    def organisation_id(self) -> str | None:
        """The organisation once authenticated."""
        return self.principal.organisation_id if self.principal else None


def test_a_json_line_outside_a_request_has_no_request_fields(as_json: Capture) -> None:
    """Outside a request a record is ts, level, logger and message only."""
    as_json.logger.info("started %s", "up")
    (entry,) = as_json.json()
    assert set(entry) == {"ts", "level", "logger", "message"}
    assert (entry["level"], entry["logger"], entry["message"]) == ("info", "odock.test.json", "started up")


def test_a_json_line_inside_a_request_carries_its_id_route_and_organisation(as_json: Capture) -> None:
    """The context is read when the record is emitted: the organisation appears once the key is known."""
    request = Handled("req-1", "/v1/chat/completions")
    token = current_request.set(request)
    try:
        as_json.logger.info("before authentication")
        request.principal = Principal("org-7")
        as_json.logger.warning("after authentication")
    finally:
        current_request.reset(token)
    as_json.logger.info("after the request")
    before, after, outside = as_json.json()
    assert (before["request_id"], before["route"]) == ("req-1", "/v1/chat/completions")
    assert "organisation_id" not in before
    assert after["organisation_id"] == "org-7"
    assert "request_id" not in outside


def test_a_calls_own_fields_are_written_and_win_over_the_context(as_json: Capture) -> None:
    """``extra={"fields": …}`` adds structured fields; a shared name takes the call's value."""
    token = current_request.set(RequestTag("req-2", "/v1/models"))
    try:
        as_json.logger.info("request", extra={"fields": {"event": "request", "route": "/x", "status": 429}})
    finally:
        current_request.reset(token)
    (entry,) = as_json.json()
    assert (entry["event"], entry["route"], entry["status"], entry["request_id"]) == (
        "request",
        "/x",
        429,
        "req-2",
    )


def test_an_exception_is_kept_in_the_json_line(as_json: Capture) -> None:
    """A traceback is one field of the one line."""
    try:
        raise ValueError("boom")
    except ValueError:
        as_json.logger.exception("failed")
    (entry,) = as_json.json()
    assert "ValueError: boom" in str(entry["exception"])


def test_a_console_line_appends_fields_as_key_value_pairs(as_console: Capture) -> None:
    """One readable line: level, logger, message, then key=value (quoted when needed, None left out)."""
    token = current_request.set(RequestTag("req-3", "/v1/embeddings"))
    try:
        fields = {"decision": "rpm_exceeded", "stream": False, "model": "my model", "provider": None}
        as_console.logger.info("refused", extra={"fields": fields})
    finally:
        current_request.reset(token)
    (line,) = as_console.lines()
    assert " INFO    odock.test.console: refused " in line
    assert line.endswith(
        'request_id=req-3 route=/v1/embeddings decision=rpm_exceeded stream=false model="my model"'
    )
    assert "provider" not in line


async def test_concurrent_requests_keep_their_own_context(as_json: Capture) -> None:
    """Each task's records name its own request, though both are in flight at once."""
    both_set = asyncio.Barrier(2)

    async def handle(request_id: str) -> None:
        current_request.set(RequestTag(request_id, "/v1/chat/completions"))
        await both_set.wait()
        as_json.logger.info("working")

    await asyncio.gather(handle("a"), handle("b"))  # each runs as a task with a copy of the context
    assert sorted(str(entry["request_id"]) for entry in as_json.json()) == ["a", "b"]


def test_trace_and_span_ids_come_from_the_current_span(as_json: Capture) -> None:
    """With OpenTelemetry loaded, a record inside a span carries its trace and span ids in hex."""
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        as_json.logger.info("inside")
    as_json.logger.info("outside")
    inside, outside = as_json.json()
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside


def test_logging_never_imports_opentelemetry() -> None:
    """A process that configures logging and logs in a request has not loaded opentelemetry.trace."""
    script = (
        "import io, logging, sys\n"
        "from odock.telemetry.context import RequestTag, current_request\n"
        "from odock.telemetry.logging import configure_logging\n"
        "out = io.StringIO()\n"
        "configure_logging('info', 'json', out)\n"
        "current_request.set(RequestTag('r', '/v1/models'))\n"
        "logging.getLogger('odock.x').info('hello')\n"
        'assert \'"request_id":"r"\' in out.getvalue(), out.getvalue()\n'
        "print('opentelemetry.trace' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Always."""
        return True


def test_auto_is_console_on_a_terminal_and_json_otherwise() -> None:
    """``auto`` follows the stream; ``text`` is ``console``; explicit formats are kept."""
    assert resolve_format("auto", Terminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("text", io.StringIO()) == "console"
    assert resolve_format("console", io.StringIO()) == "console"
    assert resolve_format("json", Terminal()) == "json"


@pytest.fixture
def restored_root() -> Iterator[None]:
    """Put the root logger and the quieted libraries back as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    demo = logging.getLogger("odock.demo")
    demo_state = demo.handlers[:], demo.propagate, demo.level
    quieted = ("sqlalchemy", "aiosqlite", "httpx", "httpcore")
    libraries = {name: logging.getLogger(name).level for name in quieted}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    demo.handlers[:], demo.propagate = demo_state[0], demo_state[1]
    demo.setLevel(demo_state[2])
    for name, saved in libraries.items():
        logging.getLogger(name).setLevel(saved)


@pytest.mark.usefixtures("restored_root")
def test_a_python_warning_becomes_a_json_line() -> None:
    """Warnings are logged through the same handler, so stderr holds JSON lines only."""
    out = io.StringIO()
    configure_logging("info", "json", out)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    (entry,) = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert entry["logger"] == "py.warnings"
    assert "DeprecationWarning: old API" in str(entry["message"])


@pytest.mark.usefixtures("restored_root")
def test_debug_keeps_statement_logging_libraries_at_warning() -> None:
    """At debug, Odock's records show while SQLAlchemy's and the SQLite driver's (with parameters) do not."""
    out = io.StringIO()
    configure_logging("debug", "json", out)
    logging.getLogger("odock.some.module").debug("odock detail")
    logging.getLogger("sqlalchemy.engine.Engine").info("INSERT INTO users VALUES (?) ('secret')")
    logging.getLogger("aiosqlite").debug("executing ('secret',)")
    assert [entry["message"] for entry in map(orjson.loads, out.getvalue().splitlines())] == ["odock detail"]
