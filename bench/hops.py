"""What one hop between two processes costs on this machine, on one core and across cores.

A request through the gateway crosses cores several times that the direct path does not
(client → gateway → upstream → gateway → client, and every Redis round trip in production,
with the gateway pinned to one core and everything else on the other). This measures the price
of such a crossing: an echo server and a client exchange one byte over loopback TCP (uvloop on
both sides), first both pinned to the same core, then to different cores; it reports the
round-trip time and the client's CPU time per round trip (user + system).

    .venv/bin/python bench/hops.py [--round-trips N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import uvloop

WARM_UP = 500


@dataclass(frozen=True)
class Hop:
    """Round trips between a client on ``client_core`` and an echo server on ``server_core``."""

    client_core: int
    server_core: int
    round_trips: int
    round_trip_us: float  # wall time per round trip
    client_user_us: float  # the client's CPU per round trip
    client_system_us: float

    def line(self) -> str:
        """One line of the report."""
        where = "same core" if self.client_core == self.server_core else "across cores"
        cpu = self.client_user_us + self.client_system_us
        return (
            f"{where:12} (client CPU {self.client_core}, server CPU {self.server_core}): "
            f"round trip {self.round_trip_us:.1f} µs, client CPU {cpu:.1f} µs "
            f"(user {self.client_user_us:.1f}, system {self.client_system_us:.1f}) per round trip"
        )


async def _serve(port: int) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(64):
            writer.write(data)

    server = await asyncio.start_server(echo, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def _ping(port: int, round_trips: int) -> tuple[float, float, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(WARM_UP):
        writer.write(b"x")
        await reader.read(64)
    usage, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(round_trips):
        writer.write(b"x")
        await reader.read(64)
    elapsed, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    writer.close()
    return elapsed, after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime


def measure(client_core: int, server_core: int, round_trips: int) -> Hop:
    """Start the echo server pinned to ``server_core``, ping it from a child pinned to ``client_core``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["taskset", "-c", str(server_core), sys.executable, __file__, "--serve", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        ping = [sys.executable, __file__, "--ping", str(port), str(round_trips)]
        done = subprocess.run(
            ["taskset", "-c", str(client_core), *ping],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.terminate()
        server.wait()
    elapsed, user, system = (float(x) for x in done.stdout.split())
    per = 1e6 / round_trips
    return Hop(client_core, server_core, round_trips, elapsed * per, user * per, system * per)


def _wait_for(port: int, deadline_seconds: float = 10.0) -> None:
    give_up = time.monotonic() + deadline_seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.01)  # polling a port another process is opening


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--serve"]:
        uvloop.run(_serve(int(args[1])))
        return
    if args[:1] == ["--ping"]:
        print(*uvloop.run(_ping(int(args[1]), int(args[2]))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--round-trips", type=int, default=20_000)
    options = parser.parse_args(args)
    cores = sorted(os.sched_getaffinity(0))
    pairs = [(cores[0], cores[0])] + ([(cores[0], cores[1])] if len(cores) > 1 else [])
    for client, server in pairs:
        print(measure(client, server, options.round_trips).line())


if __name__ == "__main__":
    main()
