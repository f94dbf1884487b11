"""Processes of a benchmark run: start pinned to a core, wait until ready, meter CPU and memory, stop.

Also a probe of how much of a core other processes and the host take away, and the installation
of its external tools (wrk, py-spy). Priorities and CPU quotas are in :mod:`bench.scheduling`.

CPU time comes from ``/proc/<pid>/stat`` (utime + stime, all threads of the process), resident
memory from ``VmRSS`` in ``/proc/<pid>/status``, and per-core busy time from ``/proc/stat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.drivers import wrk_available
from bench.profile import py_spy_binary

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
SPIN_GAP_MS = 0.2  # a longer pause between two clock reads of the spinning probe is time taken away
# The probe's subprocess: stdlib only (run with -I -S, so not even site-packages is on its path).
_SPIN_SCRIPT = """
import json, os, sys, time

def spin(seconds, threshold):
    clock = time.perf_counter
    gaps = []
    keep = gaps.append
    start = last = clock()
    end = start + seconds
    while last < end:
        now = clock()
        if now - last > threshold:
            keep(now - last)
        last = now
    return last - start, gaps

spun, gaps = spin(float(sys.argv[1]), float(sys.argv[2]) / 1000)
print(json.dumps({
    "seconds": spun,
    "gaps_ms": [gap * 1000 for gap in gaps],
    "affinity": sorted(os.sched_getaffinity(0)),
    "nice": os.getpriority(os.PRIO_PROCESS, 0),
}))
"""


@dataclass(frozen=True)
class CoreLayout:
    """Which core the gateway gets, and which the mock upstream and the load driver share."""

    gateway: int | None
    load: int | None

    @classmethod
    def detect(cls) -> CoreLayout:
        """Gateway on CPU 0, mock and driver on CPU 1, when there are two cores and taskset."""
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) >= 2 and shutil.which("taskset"):
            return cls(gateway=cores[0], load=cores[1])
        return cls(gateway=None, load=None)

    def describe(self) -> str:
        """One line for the report."""
        if self.gateway is None:
            return "no pinning (fewer than two cores or no taskset): gateway, mock and driver share the CPUs"
        return f"gateway on CPU {self.gateway}; mock upstream, load driver (and wrk) on CPU {self.load}"

    def pin(self, core: int | None, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed with ``taskset -c core`` when pinning."""
        if core is None:
            return list(argv)
        return ["taskset", "-c", str(core), *argv]

    def pin_self(self) -> None:
        """Move this (driver) process onto the load core."""
        if self.load is not None:
            os.sched_setaffinity(0, {self.load})


def every_core(argv: Sequence[str]) -> list[str]:
    """``argv`` allowed on every core of the machine (not only the cores this process may use)."""
    if not shutil.which("taskset"):
        return list(argv)
    return ["taskset", "-c", f"0-{(os.cpu_count() or 1) - 1}", *argv]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process with its log file; stopped with SIGTERM, killed if it lingers."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> ManagedProcess:
        """Start ``argv`` with output to ``log_path``."""
        log = log_path.open("wb")
        try:
            process = subprocess.Popen(list(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        return cls(name, process, log_path)

    @property
    def pid(self) -> int:
        """The process id (taskset execs the command, so this is the command itself)."""
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the process's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


async def wait_until_ready(url: str, process: ManagedProcess, deadline_seconds: float = 60.0) -> None:
    """Poll ``url`` until it answers (any HTTP status) or the process exits or the deadline passes."""
    deadline = time.monotonic() + deadline_seconds
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            if process.process.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.process.returncode}:\n{process.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    await response.read()
                    return
            await asyncio.sleep(0.05)  # polling interval while the process starts
    raise RuntimeError(
        f"{process.name} not ready at {url} within {deadline_seconds:.0f} s:\n{process.log_tail()}"
    )


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid``, from ``/proc/<pid>/task/*/children`` (none if unknown)."""
    found: list[int] = []
    with contextlib.suppress(OSError):  # the process has just exited
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that has just exited
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def read_or_empty(path: Path) -> str:
    """A small /proc or /sys file's text, or "" when it cannot be read (its process has exited)."""
    try:
        return path.read_text()
    except OSError:
        return ""


WORKERS_START_SECONDS = 30.0


async def worker_processes(pid: int, workers: int) -> list[int]:
    """The ``workers`` worker processes of a gateway started with ``--workers`` (``[pid]`` for one)."""
    if workers == 1:
        return [pid]
    deadline = time.monotonic() + WORKERS_START_SECONDS
    while len(found := [child for child in _children(pid) if _is_worker(child)]) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway started {len(found)} of {workers} workers")
        await asyncio.sleep(0.1)  # polling /proc for processes the supervisor spawns
    return found


def _is_worker(pid: int) -> bool:
    # The supervisor's children are its workers (multiprocessing spawn) and a resource tracker.
    return "spawn_main" in read_or_empty(Path(f"/proc/{pid}/cmdline"))


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (e.g. ``odock serve --workers N``'s worker processes).

    Read from each process's own ``children`` files, not by scanning every process on the
    machine: the resident-memory sampler calls this twice a second from the load core.
    """
    tree, i = [pid], 0
    while i < len(tree):
        tree += _children(tree[i])
        i += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all threads) and its live descendants."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):  # a descendant that has just exited
            fields = _stat_fields(member)
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process and its live descendants."""
    total, found = 0, False
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    found = True
    if not found:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return total


def core_times() -> dict[int, tuple[int, int, int]]:
    """Per core: (busy ticks, total ticks, stolen ticks) from /proc/stat.

    Stolen time (the hypervisor running another guest on this vCPU) counts as busy: the core was
    not available to this machine's processes.
    """
    times: dict[int, tuple[int, int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values[:8]]
            idle = ticks[3] + ticks[4]  # idle + iowait
            times[int(name[3:])] = (sum(ticks) - idle, sum(ticks), ticks[7])
    return times


async def wait_for_quiet(threshold_percent: float, max_wait: float, window: float = 1.0) -> dict[int, float]:
    """Wait until every core is at most ``threshold_percent`` busy over ``window`` (or ``max_wait`` passes).

    On a shared machine other processes may load the cores; this returns the busy share seen last.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = core_times()
        await asyncio.sleep(window)  # the measurement window of /proc/stat, not synchronisation
        busy = _busy_between(before, core_times())
        if max(busy.values(), default=0.0) <= threshold_percent or time.monotonic() >= deadline:
            return busy


CoreTimes = dict[int, tuple[int, int, int]]


def _busy_between(before: CoreTimes, after: CoreTimes) -> dict[int, float]:
    return _share_between(before, after, 0)


def _stolen_between(before: CoreTimes, after: CoreTimes) -> dict[int, float]:
    return _share_between(before, after, 2)


def _share_between(before: CoreTimes, after: CoreTimes, index: int) -> dict[int, float]:
    out = {}
    for core, now in after.items():
        then = before.get(core, (0, 0, 0))
        if now[1] > then[1]:
            out[core] = 100 * (now[index] - then[index]) / (now[1] - then[1])
    return out


@dataclass
class PhaseMeter:
    """CPU and memory of the gateway over one measured phase, and how busy each core was."""

    pid: int | None
    core: int | None = None
    interval: float = 0.5
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    _cpu_start: float = 0.0
    _cores_start: CoreTimes = field(default_factory=dict)
    _started: float = 0.0
    cpu_percent: float | None = None
    core_busy_percent: dict[int, float] = field(default_factory=dict)
    core_stolen_percent: dict[int, float] = field(default_factory=dict)

    async def sample_rss(self, stop: asyncio.Event) -> None:
        """Sample RSS every ``interval`` until ``stop`` is set."""
        while self.pid is not None:
            self.rss_samples.append((time.monotonic(), rss_bytes(self.pid)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            if stop.is_set():
                return

    def begin(self) -> None:
        """Mark the start of the phase."""
        self._started = time.monotonic()
        self._cores_start = core_times()
        if self.pid is not None:
            self._cpu_start = cpu_seconds(self.pid)

    def end(self) -> None:
        """Mark the end of the phase and compute CPU shares."""
        wall = max(time.monotonic() - self._started, 1e-9)
        if self.pid is not None:
            self.cpu_percent = 100 * (cpu_seconds(self.pid) - self._cpu_start) / wall
        now = core_times()
        self.core_busy_percent = _busy_between(self._cores_start, now)
        self.core_stolen_percent = _stolen_between(self._cores_start, now)

    @property
    def stolen_percent(self) -> float | None:
        """Share of the gateway's core the hypervisor gave to other guests (steal time)."""
        if self.core is None or self.core not in self.core_stolen_percent:
            return None
        return self.core_stolen_percent[self.core]

    @property
    def other_load_percent(self) -> float | None:
        """Busy share of the gateway's core spent neither by the gateway nor stolen (other processes)."""
        if self.core is None or self.cpu_percent is None or self.core not in self.core_busy_percent:
            return None
        stolen = self.stolen_percent or 0.0
        return max(0.0, self.core_busy_percent[self.core] - self.cpu_percent - stolen)

    @property
    def peak_rss_mib(self) -> float | None:
        """The largest sampled RSS, in MiB."""
        if not self.rss_samples:
            return None
        return max(rss for _, rss in self.rss_samples) / MIB


@contextlib.asynccontextmanager
async def metered(pid: int | None, core: int | None, interval: float = 0.5) -> AsyncIterator[PhaseMeter]:
    """Meter the gateway (``pid``, pinned to ``core``) while the body runs."""
    meter = PhaseMeter(pid, core, interval)
    stop = asyncio.Event()
    meter.begin()
    async with asyncio.TaskGroup() as group:
        group.create_task(meter.sample_rss(stop))
        try:
            yield meter
        finally:
            meter.end()
            stop.set()


@dataclass(frozen=True)
class CoreAvailability:
    """What a busy-spinning probe saw of one core: the time other processes and the host took from it.

    The probe reads ``time.perf_counter()`` in a tight loop; a pause longer than ``threshold_ms``
    between two reads is time the core ran something else, or the hypervisor did not run it.
    Whatever pauses the probe there pauses a gateway pinned to the same core.
    """

    core: int | None  # the core it was pinned to; None: not pinned
    affinity: list[int]  # the CPUs it was allowed on, as it saw them
    nice: int  # its niceness (inherited from the run)
    seconds: float  # how long it spun
    threshold_ms: float
    lost_ms: float  # the sum of the pauses longer than threshold_ms
    lost_percent: float
    gaps: int  # pauses longer than threshold_ms
    gaps_over_1ms: int
    gaps_over_2ms: int
    longest_gap_ms: float | None  # None: no pause longer than threshold_ms

    @classmethod
    def of(
        cls,
        core: int | None,
        seconds: float,
        gaps_ms: Sequence[float],
        *,
        affinity: Sequence[int] = (),
        nice: int = 0,
        threshold_ms: float = SPIN_GAP_MS,
    ) -> CoreAvailability:
        """Summarise the pauses ``gaps_ms`` (each longer than ``threshold_ms``) of ``seconds`` of spinning."""
        lost = sum(gaps_ms)
        return cls(
            core=core,
            affinity=list(affinity),
            nice=nice,
            seconds=seconds,
            threshold_ms=threshold_ms,
            lost_ms=lost,
            lost_percent=100 * lost / (seconds * 1000) if seconds > 0 else 0.0,
            gaps=len(gaps_ms),
            gaps_over_1ms=sum(1 for gap in gaps_ms if gap > 1.0),
            gaps_over_2ms=sum(1 for gap in gaps_ms if gap > 2.0),
            longest_gap_ms=max(gaps_ms, default=None),
        )


async def probe_core(layout: CoreLayout, core: int | None, seconds: float) -> CoreAvailability:
    """Busy-spin ``seconds`` on ``core`` (unpinned when None) in a subprocess; what the core lost.

    The subprocess inherits this process's niceness and scheduler autogroup (see
    :func:`bench.scheduling.raise_priority`), so it competes for the core as the benchmark's
    processes do.
    """
    argv = [sys.executable, "-I", "-S", "-c", _SPIN_SCRIPT, str(seconds), str(SPIN_GAP_MS)]
    process = await asyncio.create_subprocess_exec(
        *layout.pin(core, argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"core probe failed ({process.returncode}): {err.decode()[-2000:]}")
    data = orjson.loads(out)
    return CoreAvailability.of(
        core, data["seconds"], data["gaps_ms"], affinity=data["affinity"], nice=data["nice"]
    )


def install_tools(profile: bool) -> list[str]:
    """Install wrk (Debian package, needs root) and py-spy (into this venv) when missing."""
    notes = []
    if not wrk_available() and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
        notes.append("installed wrk" if done.returncode == 0 else "could not install wrk")
    if profile and py_spy_binary() is None:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=False)
        notes.append("installed py-spy" if done.returncode == 0 else "could not install py-spy")
    return notes
