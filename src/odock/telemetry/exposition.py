"""What ``GET /metrics`` answers, in one process or summed over ``odock serve --workers N``.

One process: the registry of :mod:`odock.telemetry.metrics` plus prometheus_client's collector of
this process (``process_*``).

Several workers: ``odock serve`` makes a fresh directory and names it in
``PROMETHEUS_MULTIPROC_DIR`` before the workers start (:func:`multiprocess_directory`), so every
worker's prometheus_client keeps its values in files there; whichever worker answers a scrape
reads them all (``MultiProcessCollector``): counters and histograms summed over every worker that
ever ran, gauges by their mode (``livesum``: summed over the live workers). A worker's own
``process_*`` collector would describe that worker only, so each worker copies its process
figures into gauges of the same names (:func:`sampling_process_metrics`: every few seconds, and
at a scrape for the worker answering it), which the scrape sums over live workers (start time:
the oldest). Live gauges of a worker that died are removed at the next scrape, and a worker's own
at its shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from prometheus_client import Gauge, ProcessCollector, generate_latest, multiprocess, values
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from odock.telemetry import metrics

log = logging.getLogger(__name__)

# prometheus_client's own variable: set by ``odock serve`` for its workers, read by the library.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PROCESS_SAMPLE_SECONDS = 5.0

# Per-worker copies of the process figures, summed by the scrape (never registered: the files
# carry them). ``process_cpu_seconds_total`` is re-typed as a counter when read back.
_PROCESS = {
    "process_resident_memory_bytes": Gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        multiprocess_mode="livesum",
        registry=None,
    ),
    "process_virtual_memory_bytes": Gauge(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes",
        multiprocess_mode="livesum",
        registry=None,
    ),
    "process_cpu_seconds_total": Gauge(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds",
        multiprocess_mode="livesum",
        registry=None,
    ),
    "process_open_fds": Gauge(
        "process_open_fds", "Number of open file descriptors", multiprocess_mode="livesum", registry=None
    ),
    "process_start_time_seconds": Gauge(
        "process_start_time_seconds",
        "Start time of the oldest worker since unix epoch in seconds",
        multiprocess_mode="liveall",  # reduced to the oldest by the scrape, workers not sampled yet aside
        registry=None,
    ),
}
_CPU_FAMILY = "process_cpu_seconds_total"
_START_FAMILY = "process_start_time_seconds"


def is_multiprocess() -> bool:
    """Whether this process keeps its metric values in the multi-process directory's files."""
    return values.ValueClass is not values.MutexValue


def render() -> bytes:
    """The Prometheus text exposition of this process, or of every worker (multi-process)."""
    if not is_multiprocess():
        return generate_latest(metrics.REGISTRY) + generate_latest(ProcessCollector(registry=None))
    directory = os.environ[MULTIPROC_DIR_VARIABLE]
    _sample_process()
    _forget_dead_workers(directory)
    return generate_latest(_Workers(directory))


class _Workers:
    """Every worker's metrics from the directory's files; the process figures as one process's."""

    def __init__(self, directory: str) -> None:
        self._files = multiprocess.MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for family in self._files.collect():  # type: ignore[no-untyped-call]
            if family.name == _CPU_FAMILY:
                family.name, family.type = "process_cpu_seconds", "counter"
            elif family.name == _START_FAMILY:
                started = [s.value for s in family.samples if s.value > 0]
                family.samples = [Sample(_START_FAMILY, {}, min(started))] if started else []
            yield family


def _sample_process() -> None:
    """Copy this worker's process figures into its gauges (read at the next scrape)."""
    for family in ProcessCollector(registry=None).collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        gauge = _PROCESS.get(name)
        if gauge is not None and family.samples:
            gauge.set(family.samples[0].value)


def _forget_dead_workers(directory: str) -> None:
    """Remove the live gauges of workers that are gone (killed, or restarted by the supervisor)."""
    pids = {Path(f).stem.rpartition("_")[2] for f in glob.glob(os.path.join(directory, "gauge_live*_*.db"))}
    for pid in pids:
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, under another user
    return True


@contextlib.asynccontextmanager
async def sampling_process_metrics() -> AsyncIterator[None]:
    """For the runtime's lifespan: announce the build; with several workers, keep this worker's
    process figures current every few seconds and drop its live gauges at the end."""
    metrics.announce_build()
    if not is_multiprocess():
        yield
        return
    task = asyncio.get_running_loop().create_task(_sample_every(PROCESS_SAMPLE_SECONDS), name="odock-metrics")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        multiprocess.mark_process_dead(os.getpid(), os.environ[MULTIPROC_DIR_VARIABLE])  # type: ignore[no-untyped-call]


async def _sample_every(seconds: float) -> None:
    while True:
        try:
            _sample_process()
        except OSError as exc:  # /proc unreadable for a moment: the next sample tries again
            log.warning("could not sample process metrics: %s", exc)
        await asyncio.sleep(seconds)


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """For ``odock serve --workers N``: a fresh directory for the workers' metric files, named in
    the environment they inherit, removed with its files at the end."""
    with tempfile.TemporaryDirectory(prefix="odock-metrics-") as directory:
        os.environ[MULTIPROC_DIR_VARIABLE] = directory
        try:
            yield Path(directory)
        finally:
            os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
