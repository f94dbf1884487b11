"""The STDIO process pool against real server processes: mcp-server-time and a crashing server."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from odock.errors import McpStdioError
from odock.mcp.link import Transport, UpstreamTarget
from odock.mcp.links.stdio import StdioLink
from odock.settings import load_settings
from tests.support.mcp_links import CLIENT_PARAMS, collect, request, text_of, tool_call
from tests.support.mcp_servers import crashing_server_command, time_server_command

MakeLink = Callable[..., StdioLink]


@pytest.fixture
async def make_link(tmp_path: Path) -> AsyncIterator[MakeLink]:
    links: list[StdioLink] = []

    def make(
        *,
        per_process: int = 16,
        per_server: int = 4,
        max_processes: int = 32,
        idle: float = 300.0,
        **options: Any,
    ) -> StdioLink:
        options.setdefault("stop_grace_seconds", 2.0)
        settings = load_settings(
            data_dir=tmp_path,
            demo=False,
            mcp_stdio_requests_per_process=per_process,
            mcp_stdio_processes_per_server=per_server,
            mcp_stdio_max_processes=max_processes,
            mcp_stdio_idle_seconds=idle,
        )
        link = StdioLink(settings, **options)
        links.append(link)
        return link

    yield make
    for link in links:
        await link.aclose()


def crashing(server_id: str = "crashy", version: str = "1", **env: str) -> UpstreamTarget:
    command, args = crashing_server_command()
    return UpstreamTarget(
        server_id=server_id,
        slug=f"stdio-{server_id}",
        transport=Transport.STDIO,
        version=version,
        command=command,
        args=args,
        env=env,
        timeout_seconds=20,
    )


async def pid_of(link: StdioLink, target: UpstreamTarget) -> int:
    binding = await link.open(target, CLIENT_PARAMS)
    [answer] = await collect(link, target, binding, tool_call("pid", "pid"))
    return int(text_of(answer))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_time_server_answers(make_link: MakeLink) -> None:
    link = make_link()
    command, args = time_server_command()
    target = UpstreamTarget(
        "time", "time", Transport.STDIO, "1", command=command, args=args, timeout_seconds=30
    )
    binding = await link.open(target, CLIENT_PARAMS)
    assert binding.initialize_result["serverInfo"]["name"]
    [listed] = await collect(link, target, binding, request(1, "tools/list"))
    assert "get_current_time" in {tool["name"] for tool in listed["result"]["tools"]}
    [now] = await collect(
        link, target, binding, tool_call(2, "get_current_time", timezone_name="Europe/Paris")
    )
    assert now["id"] == 2
    assert "Europe/Paris" in text_of(now)
    assert link.stats()["time"]["processes"] == 1


async def test_concurrent_requests_respect_the_caps(make_link: MakeLink) -> None:
    link = make_link(per_process=4, per_server=3, max_processes=32, capacity_wait_seconds=30)
    target = crashing("busy")
    binding = await link.open(target, CLIENT_PARAMS)
    calls = [collect(link, target, binding, tool_call(n, "pause", seconds=0.05)) for n in range(64)]
    answers = await asyncio.gather(*calls)
    assert [answer[0]["id"] for answer in answers] == list(range(64))
    assert all(text_of(answer[0]) == "paused" for answer in answers)
    stats = link.stats()["busy"]
    assert stats["peak"] == 3  # the load needed every process the cap allows, and no more
    assert stats["in_flight"] == 0


async def test_the_global_cap_holds_across_servers(make_link: MakeLink) -> None:
    link = make_link(per_process=2, per_server=4, max_processes=3, capacity_wait_seconds=30)
    targets = [crashing("a"), crashing("b")]
    bindings = [await link.open(target, CLIENT_PARAMS) for target in targets]
    calls = [
        collect(link, targets[n % 2], bindings[n % 2], tool_call(n, "pause", seconds=0.05)) for n in range(32)
    ]
    answers = await asyncio.gather(*calls)
    assert all(text_of(answer[0]) == "paused" for answer in answers)
    assert link.peak_total == 3


async def test_pool_full(make_link: MakeLink) -> None:
    link = make_link(per_process=1, per_server=1, capacity_wait_seconds=0.2)
    target = crashing("full")
    binding = await link.open(target, CLIENT_PARAMS)
    holding = link.exchange(target, binding, [tool_call(1, "pause", seconds=60)])
    first = asyncio.ensure_future(anext(holding))
    await link.wait_until(lambda pool: pool.stats()["full"]["in_flight"] == 1, 10)
    with pytest.raises(McpStdioError, match="stdio-full: the STDIO pool is full"):
        await collect(link, target, binding, tool_call(2, "echo", text="no room"))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await holding.aclose()
    [echoed] = await collect(link, target, binding, tool_call(3, "echo", text="room again"))
    assert text_of(echoed) == "room again"


async def test_a_crash_fails_in_flight_and_the_next_call_gets_a_new_process(
    make_link: MakeLink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="odock.mcp.stdio")
    link = make_link()
    target = crashing("crash", SECRET_SETTING="hunter2")
    first_pid = await pid_of(link, target)
    binding = await link.open(target, CLIENT_PARAMS)
    waiting = asyncio.ensure_future(collect(link, target, binding, tool_call(1, "pause", seconds=60)))
    await link.wait_until(lambda pool: pool.stats()["crash"]["in_flight"] == 1, 10)
    with pytest.raises(McpStdioError, match="exited with code 3: crashing on request"):
        await collect(link, target, binding, tool_call(2, "crash"))
    with pytest.raises(McpStdioError, match="exited with code 3"):
        await waiting  # the other request in flight on that process fails too
    second_pid = await pid_of(link, target)
    assert second_pid != first_pid
    assert not alive(first_pid)
    stderr_lines = [r.getMessage() for r in caplog.records if r.name == "odock.mcp.stdio"]
    assert any("stdio-crash stderr: crashing on request" in line for line in stderr_lines)
    assert not any("hunter2" in line for line in stderr_lines)


async def test_backoff_after_repeated_crashes_at_start(make_link: MakeLink) -> None:
    link = make_link(backoff_scale=100.0)  # pauses long enough to observe, never waited for
    target = crashing("flappy", ODOCK_TEST_CRASH_AT_START="1")
    for _ in range(2):
        with pytest.raises(McpStdioError, match="exited with code 4: crashed at start"):
            await link.open(target, CLIENT_PARAMS)
    assert link.starts == 2
    with pytest.raises(McpStdioError, match="keeps crashing; next start in"):
        await link.open(target, CLIENT_PARAMS)
    assert link.starts == 2  # failing fast: no new process
    # a fixed server (a new version) is not held back by the old one's history of its own
    healthy = crashing("flappy-fixed")
    assert await pid_of(link, healthy) > 0


async def test_backoff_ends(make_link: MakeLink) -> None:
    link = make_link(backoff_scale=0.01)  # 5 ms after the second quick crash
    target = crashing("flappy2", ODOCK_TEST_CRASH_AT_START="1")
    for _ in range(2):
        with pytest.raises(McpStdioError, match="crashed at start"):
            await link.open(target, CLIENT_PARAMS)
    pool = link._pools["flappy2"]
    restart_at = pool.restart_at
    assert restart_at > 0
    loop = asyncio.get_running_loop()
    resumed = loop.create_future()
    loop.call_at(loop.time() + (restart_at - link.clock()), resumed.set_result, None)
    await resumed
    with pytest.raises(McpStdioError, match="crashed at start"):  # started again, not refused
        await link.open(target, CLIENT_PARAMS)
    assert link.starts == 3


async def test_idle_processes_stop(make_link: MakeLink) -> None:
    link = make_link(idle=0.2)
    target = crashing("idle")
    pid = await pid_of(link, target)
    await link.wait_until(lambda pool: pool.total_processes == 0, 10)
    assert not alive(pid)
    assert await pid_of(link, target) != pid  # the next request starts a new one


async def test_aclose_stops_every_process(make_link: MakeLink) -> None:
    link = make_link(per_process=1, per_server=3)
    target = crashing("many")
    binding = await link.open(target, CLIENT_PARAMS)
    exchanges = [link.exchange(target, binding, [tool_call(n, "pause", seconds=60)]) for n in range(3)]
    pending = [asyncio.ensure_future(anext(exchange)) for exchange in exchanges]
    await link.wait_until(lambda pool: pool.stats()["many"]["in_flight"] == 3, 20)
    pids = [p.process.pid for p in link._pools["many"].processes if p.process is not None]
    assert len(pids) == 3
    await link.aclose()
    assert not any(alive(pid) for pid in pids)
    for waiting in pending:  # each fails (the process was stopped under it)
        with pytest.raises(McpStdioError, match="stdio-many: the STDIO process was stopped"):
            await waiting
    with pytest.raises(McpStdioError, match="shutting down"):
        await link.open(target, CLIENT_PARAMS)


async def test_ids_are_mapped_between_concurrent_sessions(make_link: MakeLink) -> None:
    link = make_link(per_server=1)
    target = crashing("shared")
    sessions = [await link.open(target, CLIENT_PARAMS) for _ in range(5)]
    answers = await asyncio.gather(
        *(
            collect(link, target, session, tool_call(1, "echo", text=f"session {n}"))
            for n, session in enumerate(sessions)
        )
    )
    assert [text_of(answer[0]) for answer in answers] == [f"session {n}" for n in range(5)]
    assert all(answer[0]["id"] == 1 for answer in answers)
    assert link.stats()["shared"]["peak"] == 1


async def test_a_new_version_gets_new_processes_and_old_ones_stop(make_link: MakeLink) -> None:
    link = make_link()
    old_pid = await pid_of(link, crashing("versioned", version="1"))
    new_pid = await pid_of(link, crashing("versioned", version="2"))
    assert new_pid != old_pid
    await link.wait_until(lambda pool: pool.stats()["versioned"]["processes"] == 1, 10)
    assert not alive(old_pid)


async def test_a_missing_command(make_link: MakeLink) -> None:
    link = make_link()
    target = UpstreamTarget("nope", "nope", Transport.STDIO, "1", command="/nonexistent/mcp-server")
    with pytest.raises(McpStdioError, match="nope: could not start '/nonexistent/mcp-server'"):
        await link.open(target, CLIENT_PARAMS)
