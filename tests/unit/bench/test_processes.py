"""The gateway-core probe (a stdlib-only subprocess that busy-spins and reports the pauses it suffered);
the gateway's CPU and memory counted over its processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench.options import parse_args
from bench.processes import (
    SPIN_GAP_MS,
    CoreAvailability,
    CoreLayout,
    cpu_seconds,
    probe_core,
    process_tree,
    rss_bytes,
    worker_processes,
)
from bench.report import BackendReport, RunReport, render, run_bars
from bench.scheduling import CpuQuota, pin_services, renice_services

SPIN_SECONDS = 0.3


def test_pauses_are_summarised_by_threshold() -> None:
    """Lost time is the sum of the pauses; each count takes only pauses strictly longer than its bound."""
    probe = CoreAvailability.of(0, 2.0, [0.25, 1.0, 1.5, 2.0, 2.5], affinity=[0], nice=-5)
    assert probe.lost_ms == pytest.approx(7.25)
    assert probe.lost_percent == pytest.approx(7.25 / 2000 * 100)
    assert (probe.gaps, probe.gaps_over_1ms, probe.gaps_over_2ms) == (5, 3, 1)
    assert probe.longest_gap_ms == 2.5
    assert (probe.core, probe.affinity, probe.nice, probe.threshold_ms) == (0, [0], -5, SPIN_GAP_MS)


def test_no_pause_means_nothing_lost() -> None:
    """Without a pause over the threshold nothing is lost and there is no longest pause."""
    probe = CoreAvailability.of(None, 1.0, [])
    assert (probe.lost_ms, probe.lost_percent, probe.gaps, probe.longest_gap_ms) == (0.0, 0.0, 0, None)


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
async def test_probe_spins_as_long_as_asked_where_asked(pinned: bool) -> None:
    """The probe spins for the time asked, on the core asked, at this process's niceness; sane numbers."""
    layout = CoreLayout.detect()
    core = layout.gateway if pinned else None
    probe = await probe_core(layout, core, SPIN_SECONDS)
    # It stops at the first clock read past the end: at most one pause late (1e-9: float rounding).
    late = (probe.longest_gap_ms or SPIN_GAP_MS) / 1000
    assert SPIN_SECONDS - 1e-9 <= probe.seconds <= SPIN_SECONDS + late
    assert probe.core == core
    assert probe.affinity == ([core] if core is not None else sorted(os.sched_getaffinity(0)))
    assert probe.nice == os.getpriority(os.PRIO_PROCESS, 0)
    assert 0 <= probe.lost_ms <= probe.seconds * 1000
    assert probe.lost_percent == pytest.approx(100 * probe.lost_ms / (probe.seconds * 1000))
    assert probe.gaps_over_2ms <= probe.gaps_over_1ms <= probe.gaps
    if probe.gaps:
        assert probe.longest_gap_ms is not None
        assert probe.longest_gap_ms > SPIN_GAP_MS
        assert probe.gaps * SPIN_GAP_MS < probe.lost_ms
        assert probe.longest_gap_ms <= probe.lost_ms
    else:
        assert (probe.lost_ms, probe.longest_gap_ms) == (0.0, None)


def test_a_process_tree_counts_the_workers_of_a_gateway() -> None:
    """CPU and RSS of a process include its live descendants (``odock serve --workers N``'s workers)."""
    burn = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ninput()\n"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        tree: list[int] = []
        while len(tree) < 2:  # until the child exists
            assert time.monotonic() < deadline, "the child process never started"
            tree = process_tree(parent.pid)
        child = tree[1]
        while cpu_seconds(child) < 0.25:  # until the child has burnt most of its CPU (tick accounting)
            assert time.monotonic() < deadline, "the child never used its CPU"
        assert cpu_seconds(parent.pid) >= cpu_seconds(child) >= 0.25
        assert rss_bytes(parent.pid) > rss_bytes(child) > 0
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(timeout=10)


def test_several_gateway_workers_need_the_production_backend() -> None:
    """--gateway-workers N > 1 is refused with the embedded backend (its state is per process)."""
    assert parse_args(["--backends", "production", "--gateway-workers", "2"]).gateway_workers == 2
    with pytest.raises(SystemExit):
        parse_args(["--gateway-workers", "2"])
    with pytest.raises(SystemExit):
        parse_args(["--backends", "production", "--gateway-workers", "0"])


_SUPERVISOR = """
import multiprocessing, sys, time

def work():
    time.sleep(60)

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    lock = context.Lock()  # a semaphore: the resource tracker starts as a child too
    workers = [context.Process(target=work, daemon=True) for _ in range(2)]
    for worker in workers:
        worker.start()
    sys.stdin.read()
"""


async def test_the_workers_of_a_supervisor_are_its_spawned_children(tmp_path: Path) -> None:
    """worker_processes finds the two spawned workers of a supervisor, not its resource tracker."""
    script = tmp_path / "supervisor.py"
    script.write_text(_SUPERVISOR)
    supervisor = await asyncio.create_subprocess_exec(sys.executable, str(script), stdin=subprocess.PIPE)
    try:
        workers = await worker_processes(supervisor.pid, 2)
        assert len(set(workers)) == 2
        children = set(process_tree(supervisor.pid)) - {supervisor.pid}
        assert set(workers) < children  # the resource tracker is a child, not a worker
    finally:
        assert supervisor.stdin is not None
        supervisor.stdin.close()
        await supervisor.wait()
    assert await worker_processes(supervisor.pid, 1) == [supervisor.pid]


def test_a_core_share_must_fit_the_workers_on_one_core() -> None:
    """--core-share F caps each worker at F of the gateway core, so F x workers must fit in it."""
    args = parse_args(["--backends", "production", "--gateway-workers", "2", "--core-share", "0.45"])
    assert (args.gateway_workers, args.core_share) == (2, 0.45)
    assert parse_args(["--core-share", "1"]).core_share == 1.0
    for bad in (["--gateway-workers", "2", "--core-share", "0.6"], ["--core-share", "0"]):
        with pytest.raises(SystemExit):
            parse_args(["--backends", "production", *bad])


def test_a_cpu_quota_holds_a_process_back() -> None:
    """A process in a CpuQuota of a fifth of a core is throttled while it burns CPU."""
    try:
        quota = CpuQuota.create(f"odock-test-{os.getpid()}", 0.2)
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"no writable CPU cgroup here: {exc}")
    # The child burns only once it is in the cgroup (it waits for a line first), then exits: no
    # polling of its CPU time, whose tick accounting can lag what it has burnt.
    burn = "import time\ninput()\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE)
    try:
        quota.add(child.pid)
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0
        assert quota.throttled_seconds() > 0
    finally:
        child.kill()
        child.wait(timeout=10)
        quota.remove()
    assert not quota.path.exists()


def test_local_services_are_reniced_and_restored(tmp_path: Path) -> None:
    """renice_services gives the named processes (and their own autogroups) a niceness, and undoes it."""
    name = f"odt{os.getpid()}"[:15]
    (tmp_path / name).symlink_to(shutil.which("sleep") or "/bin/sleep")
    # A session of its own: its autogroup is not this test run's.
    service = subprocess.Popen([str(tmp_path / name), "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{service.pid}/comm").read_text().strip() != name:  # until it has exec'd
            assert time.monotonic() < deadline, "the process never started"
        restore = renice_services(5, names=(name,))
        assert os.getpriority(os.PRIO_PROCESS, service.pid) == 5
        restore()
        if os.geteuid() == 0:  # only a privileged process may lower a niceness again
            assert os.getpriority(os.PRIO_PROCESS, service.pid) == 0
    finally:
        service.kill()
        service.wait(timeout=10)


def test_a_run_with_several_workers_judges_no_bar() -> None:
    """The bars are for one gateway process on one core: a --gateway-workers run reports why it has none."""
    backend = BackendReport("production", [], idle_rss_mib=379.0, post_warmup_rss_mib=390.0)
    fields: dict[str, Any] = dict.fromkeys(("command", "plan", "started_at", "layout", "driver", "mock"), "")
    machine = dict.fromkeys(("cpu", "cores", "memory", "kernel", "python", "speed"), "?")
    one = RunReport(**fields, machine=machine, governance_off="", backends=[backend])
    several = RunReport(**fields, machine=machine, governance_off="", backends=[backend], gateway_workers=2)
    assert [bar.met for bar in run_bars(one)] == [False]  # idle RSS over one process's bar
    assert run_bars(several) == []
    assert "not judged" in render(several)
    capped = RunReport(**fields, machine=machine, governance_off="", backends=[backend], core_share=0.5)
    assert run_bars(capped) == []
    assert "capped at 0.5 of the gateway core" in render(capped)
    assert "## Bars of the issue" not in render(several)


def test_pin_services_keeps_every_thread_of_the_named_processes_on_one_core_until_undone(
    tmp_path: Path,
) -> None:
    """Redis and PostgreSQL are kept off the gateway's core for a run, and set free after it."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    program = tmp_path / "odock-pin-test"  # a process name nothing else on the machine has
    shutil.copy("/bin/sleep", program)
    process = subprocess.Popen([str(program), "30"])
    try:
        # The kernel names the process after its program during exec; wait (bounded) until it shows.
        comm = Path(f"/proc/{process.pid}/comm")
        deadline = time.monotonic() + 10
        while comm.read_text().strip() != "odock-pin-test":
            assert time.monotonic() < deadline, "the test process never took its name"
            time.sleep(0.01)  # poll interval; the deadline bounds the wait
        before = os.sched_getaffinity(process.pid)
        undo = pin_services(cores[-1], names=("odock-pin-test",))
        assert os.sched_getaffinity(process.pid) == {cores[-1]}
        undo()
        assert os.sched_getaffinity(process.pid) == before
    finally:
        process.kill()
        process.wait()
