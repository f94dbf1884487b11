"""A real Prometheus server for a test: started on a free local port, stopped, its data removed.

:class:`RunningPrometheus` writes a configuration that scrapes the given targets every second
under the job ``odock`` and loads the given rule files, starts ``prometheus`` with its storage in
a directory of its own, and waits (with a deadline) until it reports ready. Queries go through
its HTTP API.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import yaml

from tests.support.server import free_port

T = TypeVar("T")

JOB = "odock"
READY_WITHIN_SECONDS = 60.0


class RunningPrometheus:
    """A Prometheus process scraping ``targets`` (``host:port``) every second."""

    def __init__(
        self, binary: str, directory: Path, targets: Sequence[str], rule_files: Sequence[Path] = ()
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = directory / "prometheus.yml"
        self.data = directory / "data"
        self.log = directory / "prometheus.log"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(path) for path in rule_files],
                    "scrape_configs": [
                        {"job_name": JOB, "static_configs": [{"targets": list(targets)}]},
                    ],
                }
            )
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.base_url, timeout=30)  # one connection for every query

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start Prometheus and wait until it is ready."""
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_for(self._ready, "Prometheus to be ready", timeout=READY_WITHIN_SECONDS)

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL after 30 s) and remove its data."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
        self._process = None
        self._http.close()
        shutil.rmtree(self.data, ignore_errors=True)

    def _ready(self) -> bool:
        try:
            return self._http.get("/-/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def api(self, path: str, **params: Any) -> Any:
        """``GET /api/v1/{path}``'s ``data`` (fails on an API error)."""
        reply = self._http.get(f"/api/v1/{path}", params=params)
        body = reply.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector result."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def now(self) -> float:
        """Prometheus's clock (Unix seconds)."""
        return float(self.api("query", query="time()")["result"][1])

    def wait_for(self, found: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
        """Poll ``found`` until it returns something truthy, failing after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"Prometheus exited ({self._process.returncode}):\n{self.logs()}")
            value = found()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{self.logs()}")
            time.sleep(0.2)

    def logs(self) -> str:
        """What Prometheus has logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def instant(timestamp: str) -> float:
    """Unix seconds of an RFC 3339 timestamp of the API (nanosecond fractions included)."""
    match = re.fullmatch(r"([0-9-]+T[0-9:]+)(\.[0-9]+)?(Z|[+-][0-9:]+)", timestamp)
    assert match is not None, timestamp
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return seconds + float("0" + (fraction or ""))
