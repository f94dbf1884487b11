"""The exposition's own mechanics: one process's text, a dead worker's live gauges, serve's directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from odock.telemetry import exposition


def test_one_process_exposes_the_catalogue_and_its_process_metrics() -> None:
    """Without a multi-process directory: the registry's metrics and this process's ``process_*``."""
    assert not exposition.is_multiprocess()
    families = {f.name: f.type for f in text_string_to_metric_families(exposition.render().decode())}
    assert families["gateway_requests_in_flight"] == "gauge"
    assert families["gateway_ratelimit_decisions"] == "counter"
    assert families["process_cpu_seconds"] == "counter"
    assert "process_resident_memory_bytes" in families
    assert not any(name.endswith("_created") for name in families)


def test_the_live_gauges_of_a_dead_worker_are_forgotten(tmp_path: Path) -> None:
    """A worker that is gone loses its live gauges; a live one keeps them; counters stay."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(finished.stdout)
    names = [f"gauge_livesum_{dead}.db", f"gauge_liveall_{dead}.db", f"counter_{dead}.db"]
    names.append(f"gauge_livesum_{os.getpid()}.db")
    for name in names:
        (tmp_path / name).write_bytes(b"")
    exposition._forget_dead_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"counter_{dead}.db", names[-1]])


def test_serve_names_a_fresh_directory_and_removes_it() -> None:
    """The workers' directory is announced in PROMETHEUS_MULTIPROC_DIR, then removed with the variable."""
    assert exposition.MULTIPROC_DIR_VARIABLE not in os.environ
    with exposition.multiprocess_directory() as directory:
        assert os.environ[exposition.MULTIPROC_DIR_VARIABLE] == str(directory)
        assert directory.is_dir()
        assert not any(directory.iterdir())
        (directory / "counter_1.db").write_bytes(b"")
    assert exposition.MULTIPROC_DIR_VARIABLE not in os.environ
    assert not directory.exists()
