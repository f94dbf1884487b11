"""The STDIO process pool: MCP servers run as supervised child processes, shared by client sessions.

Each process is a :class:`~odock.mcp.links.channel.Channel` (newline-delimited JSON on
stdin/stdout; the older ``Content-Length`` framing is accepted on read), initialized by the
gateway. Per (server id, version) a pool of at most ``mcp_stdio_processes_per_server``
processes, and ``mcp_stdio_max_processes`` across servers: a request goes to the least loaded
process with fewer than ``mcp_stdio_requests_per_process`` requests in flight; a new process
starts only when all are that busy; at the caps requests wait up to ``capacity_wait_seconds``
for a slot, then fail with ``McpStdioError`` ("pool full"). A process idle for
``mcp_stdio_idle_seconds`` is stopped.

A process that exits fails its in-flight exchanges with ``McpStdioError`` naming the exit code
and its last stderr line; the next request starts a new one. A server that keeps dying right
after start (within ``crash_window_seconds``) is restarted after a growing pause (0.5 s, 1 s,
2 s … at most 30 s, from the second such crash in a row); requests fail fast meanwhile.
stderr lines are logged on ``odock.mcp.stdio`` with the server's slug (environment values never).
A target whose version changed gets new processes; the old ones finish their requests and stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from odock.errors import McpStdioError, McpUpstreamError
from odock.mcp.link import JsonRpc, UpstreamTarget
from odock.mcp.links.channel import BridgedLink, Channel
from odock.settings import Settings

logger = logging.getLogger("odock.mcp.stdio")

READ_LIMIT = 64 * 1024 * 1024  # the longest line (message) a server may write
STOP_GRACE_SECONDS = 3.0  # after stdin closes, and again after SIGTERM
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


class StdioProcess(Channel):
    """One server process."""

    def __init__(self, target: UpstreamTarget, pool: _ServerPool) -> None:
        super().__init__(target, McpStdioError)
        self.pool = pool
        self.on_sent = pool.link.changed
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.last_stderr = ""
        self.stopping = False  # stopped by the pool (idle, retired, shutdown): not a crash
        self.idle_timer: asyncio.TimerHandle | None = None
        self.ready = asyncio.Event()  # set once started and initialized, or failed to
        self._stdout_task: asyncio.Task[None] | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    async def start(self, clock: Callable[[], float]) -> None:
        """Start the process and initialize it."""
        target = self.target
        if not target.command:
            raise McpStdioError(f"MCP server {target.slug} has no command")
        self.started_at = clock()
        try:
            self.process = await asyncio.create_subprocess_exec(
                target.command,
                *target.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **target.env},
                limit=READ_LIMIT,
                start_new_session=True,
            )
        except OSError as exc:
            raise McpStdioError(
                f"MCP server {target.slug}: could not start {target.command!r}: {exc.strerror or exc}"
            ) from exc
        if self.stopping:  # the pool shut down while the process was being spawned
            self.process.kill()
            await self.process.wait()
            raise McpStdioError(f"MCP server {target.slug}: the STDIO process was stopped")
        logger.info("MCP server %s: started STDIO process %d", target.slug, self.process.pid)
        loop = asyncio.get_running_loop()
        self._stderr_task = loop.create_task(self._read_stderr())
        self._stdout_task = loop.create_task(self._read_stdout())
        await self.handshake()

    async def _read_stdout(self) -> None:
        process = self.process
        assert process is not None
        assert process.stdout is not None
        stdout = process.stdout
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                if line.lower().startswith(b"content-length:"):
                    line = await self._read_framed(stdout, line)
                if not line.strip():
                    continue
                try:
                    message = orjson.loads(line)
                except orjson.JSONDecodeError:
                    logger.warning("MCP server %s wrote a line that is not JSON on stdout", self.target.slug)
                    continue
                for item in message if isinstance(message, list) else [message]:
                    if isinstance(item, dict):
                        self.deliver(item)
        except (ValueError, OSError, EOFError) as exc:  # a line over the limit, a broken pipe, a cut frame
            logger.warning("MCP server %s: stdout unreadable: %s", self.target.slug, exc)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        code = await process.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stderr_task), 1.0)
        detail = f": {self.last_stderr}" if self.last_stderr else ""
        reason = "was stopped" if self.stopping else f"exited with code {code}{detail}"
        self.fail(McpStdioError(f"MCP server {self.target.slug}: the STDIO process {reason}"))
        self.pool.exited(self, code)

    @staticmethod
    async def _read_framed(stdout: asyncio.StreamReader, first: bytes) -> bytes:
        """The body of an old-style ``Content-Length`` framed message."""
        length = int(first.split(b":", 1)[1].strip())
        while (await stdout.readline()).strip():
            pass  # other headers, up to the blank line
        return await stdout.readexactly(length)

    async def _read_stderr(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        stderr = self.process.stderr
        while True:
            try:
                line = await stderr.readline()
            except ValueError:
                continue  # over-long line: skipped
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.last_stderr = text[:500]
                logger.info("MCP server %s stderr: %s", self.target.slug, text)

    async def _write(self, message: JsonRpc) -> None:
        process = self.process
        if self.failure is not None:
            raise self.failure
        if self.stopping:
            raise McpStdioError(f"MCP server {self.target.slug}: the STDIO process was stopped")
        if process is None or process.stdin is None or process.stdin.is_closing():
            raise McpStdioError(f"MCP server {self.target.slug}: the STDIO process is not running")
        async with self._write_lock:
            try:
                process.stdin.write(orjson.dumps(message) + b"\n")
                await process.stdin.drain()
            except (ConnectionError, OSError) as exc:
                raise McpStdioError(
                    f"MCP server {self.target.slug}: could not write to the STDIO process ({exc})"
                ) from exc

    async def wait_ready(self) -> None:
        """Wait until the process is initialized; raise its failure if it did not start."""
        await self.ready.wait()
        if self.failure is not None:
            raise self.failure

    async def stop(self) -> None:
        """Close stdin, then SIGTERM, then SIGKILL, each after a grace period."""
        self.stopping = True
        await self.drain_tasks()
        process = self.process
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            process.stdin.close()
        grace = self.pool.link.stop_grace_seconds
        for signal_it in (process.terminate, process.kill):
            try:
                await asyncio.wait_for(process.wait(), grace)
                break
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    signal_it()
        else:
            await process.wait()
        for task in (self._stdout_task, self._stderr_task):
            if task is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), grace)


@dataclass(eq=False)
class _ServerPool:
    """The processes of one server (all versions) and its crash history."""

    link: StdioLink
    server_id: str
    version: str = ""  # the newest version asked for: older processes drain and stop
    processes: list[StdioProcess] = field(default_factory=list)  # starting, live or stopping
    quick_crashes: int = 0  # consecutive exits soon after start
    restart_at: float = 0.0  # no new process before this (link clock)
    peak: int = 0

    def exited(self, process: StdioProcess, code: int) -> None:
        """A process ended (crash, idle stop, retirement or shutdown)."""
        if process in self.processes:
            self.processes.remove(process)
        link = self.link
        if not process.stopping:
            lived = link.clock() - process.started_at
            if lived < link.crash_window_seconds:
                self.quick_crashes += 1
                if self.quick_crashes >= 2:
                    delay = min(BACKOFF_FIRST_SECONDS * 2 ** (self.quick_crashes - 2), BACKOFF_MAX_SECONDS)
                    self.restart_at = link.clock() + delay * link.backoff_scale
            else:
                self.quick_crashes = 0
            logger.warning(
                "MCP server %s: STDIO process exited with code %d (%s)",
                process.target.slug,
                code,
                process.last_stderr or "no stderr",
            )
        link.changed()


class StdioLink(BridgedLink):
    """The :class:`~odock.mcp.link.Link` of STDIO servers: the supervised process pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        capacity_wait_seconds: float = 5.0,
        crash_window_seconds: float = 5.0,
        backoff_scale: float = 1.0,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_processes = settings.mcp_stdio_max_processes
        self.per_server = settings.mcp_stdio_processes_per_server
        self.per_process = settings.mcp_stdio_requests_per_process
        self.idle_seconds = settings.mcp_stdio_idle_seconds
        self.capacity_wait_seconds = capacity_wait_seconds
        self.crash_window_seconds = crash_window_seconds
        self.backoff_scale = backoff_scale  # tests shrink the restart pauses
        self.stop_grace_seconds = stop_grace_seconds
        self.clock = clock
        self.starts = 0  # processes started since the link was made
        self.peak_total = 0  # most processes alive at once, every server
        self._pools: dict[str, _ServerPool] = {}
        self._change: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # --- measurements ------------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, int]]:
        """Per server id: ``processes`` (starting or live), ``in_flight`` requests, ``peak`` processes."""
        return {
            server_id: {
                "processes": len(pool.processes),
                "in_flight": sum(process.in_flight for process in pool.processes if process.ready.is_set()),
                "peak": pool.peak,
            }
            for server_id, pool in self._pools.items()
        }

    @property
    def total_processes(self) -> int:
        """Processes of every server (starting, live or stopping)."""
        return sum(len(pool.processes) for pool in self._pools.values())

    async def wait_until(self, condition: Callable[[StdioLink], bool], within: float) -> None:
        """Wait until ``condition(self)`` holds, checked at every pool change (TimeoutError after
        ``within`` seconds)."""
        async with asyncio.timeout(within):
            while not condition(self):
                await self._change_event().wait()

    def changed(self) -> None:
        """Something in the pools changed: wake whoever waits on capacity or on a condition."""
        if self._change is not None:
            self._change.set()
            self._change = None

    def _change_event(self) -> asyncio.Event:
        if self._change is None:
            self._change = asyncio.Event()
        return self._change

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the pool ------------------------------------------------------------------------------------
    async def _acquire(self, target: UpstreamTarget, load: int) -> Channel:
        if self._closed:
            raise McpStdioError(f"MCP server {target.slug}: the gateway is shutting down")
        pool = self._pools.get(target.server_id)
        if pool is None:
            pool = self._pools[target.server_id] = _ServerPool(self, target.server_id)
        if pool.version != target.version:
            self._retire_old(pool, target.version)
        deadline = self.clock() + self.capacity_wait_seconds
        while True:
            candidates = [
                p for p in pool.processes if p.version == target.version and p.alive and not p.stopping
            ]
            spare = [p for p in candidates if p.load == 0 or p.load + load <= self.per_process]
            if spare:
                chosen = min(spare, key=lambda p: p.load)
                self._reserve(chosen, load)
                try:
                    await chosen.wait_ready()
                except BaseException:
                    self._release(chosen, load)
                    raise
                return chosen
            if not candidates and self.clock() < pool.restart_at:
                raise McpStdioError(
                    f"MCP server {target.slug}: the STDIO process keeps crashing; "
                    f"next start in {pool.restart_at - self.clock():.1f} s"
                )
            if len(pool.processes) < self.per_server and self.total_processes < self.max_processes:
                self._launch(pool, target)
                continue
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise McpStdioError(
                    f"MCP server {target.slug}: the STDIO pool is full ({len(pool.processes)} "
                    f"process(es) of this server, {self.total_processes} in all, all busy)"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._change_event().wait()

    def _reserve(self, process: StdioProcess, load: int) -> None:
        process.load += load
        if process.idle_timer is not None and process.load > 0:
            process.idle_timer.cancel()
            process.idle_timer = None

    def _launch(self, pool: _ServerPool, target: UpstreamTarget) -> None:
        """Add a process to the pool now; it starts in the background (callers wait on it)."""
        process = StdioProcess(target, pool)
        pool.processes.append(process)
        pool.peak = max(pool.peak, len(pool.processes))
        self.peak_total = max(self.peak_total, self.total_processes)
        self.starts += 1
        self._spawn(self._start(pool, process))

    async def _start(self, pool: _ServerPool, process: StdioProcess) -> None:
        try:
            await process.start(self.clock)
        except McpUpstreamError as exc:
            process.fail(exc)
            if process.process is None:
                pool.exited(process, -1)  # never ran: no reader will report it
            elif process.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.process.kill()  # did not initialize: its reader reports the exit
        finally:
            process.ready.set()
            self.changed()
        if process.alive and process.load <= 0:
            self._arm_idle(process)

    def _release(self, channel: Channel, load: int) -> None:
        assert isinstance(channel, StdioProcess)
        channel.load -= load
        if channel.load <= 0 and channel.alive and not channel.stopping and not self._closed:
            if channel.version != channel.pool.version:
                self._stop(channel)
            elif channel.ready.is_set():
                self._arm_idle(channel)
        self.changed()

    def _arm_idle(self, process: StdioProcess) -> None:
        if process.idle_timer is not None:
            process.idle_timer.cancel()
        process.idle_timer = asyncio.get_running_loop().call_later(self.idle_seconds, self._idle, process)

    def _idle(self, process: StdioProcess) -> None:
        process.idle_timer = None
        if process.load <= 0 and process.alive and not process.stopping:
            logger.info("MCP server %s: stopping an idle STDIO process", process.target.slug)
            self._stop(process)

    def _stop(self, process: StdioProcess) -> None:
        process.stopping = True
        if process.idle_timer is not None:
            process.idle_timer.cancel()
            process.idle_timer = None
        self._spawn(process.stop())

    def _retire_old(self, pool: _ServerPool, version: str) -> None:
        """A newer version: idle processes of older ones stop now, busy ones when they are done."""
        pool.version = version
        for process in list(pool.processes):
            if process.version != version and process.load <= 0 and process.ready.is_set():
                self._stop(process)

    async def aclose(self) -> None:
        """Stop every process (stdin closed, then SIGTERM, then SIGKILL)."""
        self._closed = True
        processes = [p for pool in self._pools.values() for p in pool.processes]
        for process in processes:
            process.stopping = True
            if process.idle_timer is not None:
                process.idle_timer.cancel()
                process.idle_timer = None
        await asyncio.gather(*(process.stop() for process in processes), return_exceptions=True)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.stop_grace_seconds * 3)
        for task in list(self._tasks):
            task.cancel()
