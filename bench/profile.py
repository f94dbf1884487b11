"""Sampling profile of the gateway under load (py-spy), summarised as its hot spots.

py-spy records the gateway process from outside (no code change, no restart) in its "raw"
format: one line per distinct stack, ``frame;frame;…;leaf count``. From that we compute each
function's *self* share (samples where it is the leaf) and *inclusive* share (samples where it
is anywhere on the stack), and the self share per source package — where the time goes.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT_SHARE = 0.9  # frames on nearly every stack (event loop, uvicorn run) tell nothing: hidden
_LINE = re.compile(r":\d+\)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy_binary() -> str | None:
    """py-spy from the venv or PATH (install with ``.venv/bin/pip install py-spy``)."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


@dataclass
class Profile:
    """Hot spots of one recording."""

    samples: int
    raw_path: str
    idle_worker_samples: int = 0
    threads: list[tuple[str, float]] = field(default_factory=list)
    self_top: list[tuple[str, float]] = field(default_factory=list)
    inclusive_top: list[tuple[str, float]] = field(default_factory=list)
    by_package: list[tuple[str, float]] = field(default_factory=list)


async def record(binary: str, pid: int, seconds: float, out: Path, pin: list[str]) -> None:
    """Record ``pid`` for ``seconds`` into ``out`` (raw collapsed stacks)."""
    argv = [
        *pin,
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    text, _ = await process.communicate()
    if process.returncode != 0 or not _exists(out):
        raise RuntimeError(f"py-spy failed ({process.returncode}): {text.decode()[-2000:]}")


def _exists(path: Path) -> bool:
    return path.exists()


def summarise(raw: Path, top: int = 15) -> Profile:
    """Self, inclusive and per-package shares from a raw py-spy recording."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]  # one entry per function, not per line
        thread = _thread(frames)
        if thread != MAIN_THREAD and thread.endswith(frames[-1]):
            # A worker whose deepest Python frame is its own loop sits in a C call (a queue wait):
            # py-spy cannot tell that this is idle, so these samples are set aside.
            idle += count
            continue
        total += count
        leaf = frames[-1]
        self_counts[leaf] += count
        packages[_package(leaf)] += count
        threads[thread] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return Profile(0, str(raw), idle_worker_samples=idle)
    main = threads[MAIN_THREAD]

    def shares(counter: Counter[str], limit: int, roots_of: int = 0) -> list[tuple[str, float]]:
        out = []
        for name, count in counter.most_common():
            if roots_of and count >= ROOT_SHARE * roots_of:
                continue
            out.append((name, round(100 * count / total, 1)))
            if len(out) == limit:
                break
        return out

    return Profile(
        samples=total,
        raw_path=str(raw),
        idle_worker_samples=idle,
        threads=shares(threads, top),
        self_top=shares(self_counts, top),
        inclusive_top=shares(inclusive, top, roots_of=main),
        by_package=shares(packages, top),
    )


MAIN_THREAD = "event-loop thread"


def _thread(frames: list[str]) -> str:
    """The event-loop thread, or a worker thread named by the function it runs."""
    if "_bootstrap (threading" not in frames[0]:
        return MAIN_THREAD
    # threading's own frames first, then the thread's target.
    target = next((f for f in frames if "threading" not in f), frames[-1])
    return f"worker thread: {target}"


def _package(frame: str) -> str:
    """The package a frame's file belongs to (``odock/web``, ``uvicorn``, ``asyncio``…)."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"].replace("\\", "/")
    marker = "site-packages/"
    if marker in path:
        path = path.split(marker, 1)[1]
    elif "/src/odock/" in path:
        path = "odock/" + path.split("/src/odock/", 1)[1]
    elif "/lib/python3" in path:
        path = "stdlib/" + path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "odock" and len(parts) > 2:
        return "/".join(parts[:2])
    if parts and parts[0] == "stdlib" and len(parts) > 2:
        return "stdlib/" + parts[1]
    return parts[0].removesuffix(".py") if parts else frame
