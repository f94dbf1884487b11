"""Who gets the CPU during a benchmark run: niceness (with scheduler autogroups) and CPU quotas.

``--nice`` raises the benchmark's processes, and the machine's own Redis and PostgreSQL with
them, above other processes; ``--pin-services`` keeps Redis and PostgreSQL on the load core, off
the gateway's; ``--core-share`` caps each gateway worker at a share of its core.
Every change here is undone when the run ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.processes import read_or_empty

LOCAL_SERVICES = ("redis-server", "postgres")
_AUTOGROUPS_ON = Path("/proc/sys/kernel/sched_autogroup_enabled")


def renice(pid: int, nice: int, *, required: bool = False) -> Callable[[], None]:
    """Give process ``pid`` niceness ``nice``, and its scheduler autogroup too; return the undo.

    With autogroups (the kernel default on desktops and many VMs) CPU is shared between sessions
    before it is shared between processes, so a process's own niceness barely matters against
    other sessions: the autogroup's niceness is what counts. A process that has exited, or is not
    ours to change, is left alone, unless ``required`` (then the refusal is raised).
    """
    try:
        previous = os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        if required:
            raise
        return lambda: None
    group = Path(f"/proc/{pid}/autogroup")
    autogroups = read_or_empty(_AUTOGROUPS_ON).strip() == "1"
    group_text = read_or_empty(group) if autogroups else ""
    group_before = group_text.split("nice")[-1].strip() if group_text else None
    with contextlib.nullcontext() if required else contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        if group_before is not None:
            group.write_text(str(nice))

    def restore() -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, previous)
            if group_before is not None:
                group.write_text(group_before)

    return restore


def pin_services(core: int, names: Sequence[str] = LOCAL_SERVICES) -> Callable[[], None]:
    """Put every thread of this machine's Redis and PostgreSQL processes on ``core``; return the undo.

    The bars are for a gateway with one core to itself. The production backend's Redis and
    PostgreSQL run on this machine too: left free to run anywhere, PostgreSQL storing the usage
    records while a load runs took 2-10% of the gateway's core (``--pin-services``; not the
    default, since on the load core they slow the replies the gateway waits for). PostgreSQL's new connections
    fork from its postmaster and inherit its affinity. Processes or threads that have exited,
    or are not ours to change, are left alone.
    """
    undo: list[tuple[int, set[int]]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or read_or_empty(entry / "comm").strip() not in names:
            continue
        with contextlib.suppress(OSError):
            for task in (entry / "task").iterdir():
                tid = int(task.name)
                with contextlib.suppress(OSError):
                    before = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, {core})
                    undo.append((tid, before))

    def restore() -> None:
        for tid, before in undo:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, before)

    return restore


def raise_priority(nice: int) -> Callable[[], None]:
    """Renice this process (its children inherit it) and its autogroup; return the undo.

    A niceness this process may not take (a negative one without root) is an error.
    """
    return renice(os.getpid(), nice, required=True)


def renice_services(nice: int, names: Sequence[str] = LOCAL_SERVICES) -> Callable[[], None]:
    """Give this machine's Redis and PostgreSQL processes (and their autogroups) niceness ``nice``.

    ``--nice`` raises the benchmark's processes above others; the gateway's own Redis and
    PostgreSQL, which share the load core with the driver and the mock, must not be left below
    them (at nice 0 against -10 they get a tenth of a contended core, and every round trip of the
    production backend waits for it). Returns the undo; processes that have exited are skipped.
    """
    undo = [
        renice(int(entry.name), nice)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and read_or_empty(entry / "comm").strip() in names
    ]

    def restore() -> None:
        for step in undo:
            step()

    return restore


CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")
QUOTA_PERIOD_US = 20_000  # short periods: a capped worker is throttled in small slices, not 100 ms ones


@dataclass
class CpuQuota:
    """A CPU cgroup that holds its processes to ``share`` of one core (CFS bandwidth control).

    ``odock serve --workers N`` with each worker in a quota of its own, all on one core, behaves
    like N cores of ``share`` each: how a two-core machine, whose other core runs the load, can
    show whether throughput scales with the CPU the workers get.
    """

    path: Path

    @classmethod
    def create(cls, name: str, share: float) -> CpuQuota:
        """A new cgroup ``name`` capped at ``share`` of a core (cgroup v1 ``cpu``, or v2 ``cpu.max``)."""
        quota = max(1_000, round(share * QUOTA_PERIOD_US))
        if (CGROUP_V1_CPU / "cpu.cfs_quota_us").exists():
            path = CGROUP_V1_CPU / name
            path.mkdir()
            (path / "cpu.cfs_period_us").write_text(str(QUOTA_PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota))
            return cls(path)
        if "cpu" in read_or_empty(CGROUP_V2 / "cgroup.subtree_control").split():
            path = CGROUP_V2 / name
            path.mkdir()
            (path / "cpu.max").write_text(f"{quota} {QUOTA_PERIOD_US}")
            return cls(path)
        raise RuntimeError("no writable CPU cgroup controller (needs root and cgroup v1 cpu or v2 cpu)")

    def add(self, pid: int) -> None:
        """Move process ``pid`` (every thread of it) into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled_seconds(self) -> float:
        """How long the cgroup's processes were held back by the quota so far."""
        for line in read_or_empty(self.path / "cpu.stat").splitlines():
            name, _, value = line.partition(" ")
            if name == "throttled_time":  # v1, nanoseconds
                return int(value) / 1e9
            if name == "throttled_usec":  # v2
                return int(value) / 1e6
        return 0.0

    def remove(self) -> None:
        """Delete the cgroup (its processes have exited, or move back to the root first)."""
        with contextlib.suppress(OSError):
            for pid in read_or_empty(self.path / "cgroup.procs").split():
                (self.path.parent / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.path.rmdir()
