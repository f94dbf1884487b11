"""The benchmark's command line: what ``bench/run.py`` accepts, checked once."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.backends import BACKENDS, DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL
from bench.mock_upstream import IMPLS
from bench.soak import CHAT_CONCURRENCY as SOAK_CHAT_CONCURRENCY
from bench.soak import WARMUP_SECONDS as SOAK_WARMUP_SECONDS


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="Benchmark the Odock gateway against a direct baseline.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short durations (a few minutes in all)")
    size.add_argument("--smoke", action="store_true", help="a few hundred requests, embedded only, no wrk")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: embedded,production")
    parser.add_argument("--soak", action="store_true", help="also run the soak (mixed load, RSS each second)")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="soak duration (default 600)")
    parser.add_argument(
        "--soak-chat-concurrency",
        type=int,
        default=SOAK_CHAT_CONCURRENCY,
        help=f"chat connections of the soak's mix (default {SOAK_CHAT_CONCURRENCY}; 64 for the peak rate)",
    )
    parser.add_argument(
        "--soak-warmup-seconds",
        type=float,
        default=SOAK_WARMUP_SECONDS,
        help=f"the soak's warm-up of the same mixed load, before the post-warm-up level (default "
        f"{SOAK_WARMUP_SECONDS:.0f})",
    )
    parser.add_argument(
        "--skip-cases", action="store_true", help="run only the soak / profile / mock comparison"
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="py-spy the gateway under non-streaming load for SECONDS",
    )
    parser.add_argument(
        "--profile-concurrency",
        type=int,
        default=64,
        metavar="N",
        help="concurrency of the load during --profile (default 64)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each phase, wait up to SECONDS for other processes to leave the cores idle",
    )
    parser.add_argument(
        "--noisy-retries",
        type=int,
        default=0,
        metavar="N",
        help="repeat a case up to N times while other processes load the gateway core; keep the quietest",
    )
    parser.add_argument(
        "--pin-services",
        action="store_true",
        help="keep this machine's Redis and PostgreSQL on the load core during a production run "
        "(off the gateway's core, but sharing the driver's and the mock's)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling niceness of every benchmark process (negative needs root): "
        "on a shared machine, keeps other processes from distorting the numbers",
    )
    parser.add_argument("--compare-mock", action="store_true", help="measure both mock implementations first")
    parser.add_argument("--mock-impl", choices=IMPLS, default="protocol")
    parser.add_argument("--upstream-latency-ms", type=float, default=0.0, help="mock's fixed latency")
    parser.add_argument(
        "--no-wrk", action="store_true", help="use the aiohttp driver even if wrk is installed"
    )
    parser.add_argument(
        "--install-tools", action="store_true", help="apt-get install wrk / pip install py-spy"
    )
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin DSN for the fresh database"
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--out", type=Path, help="Markdown report path (JSON beside it)")
    parser.add_argument(
        "--governance",
        choices=("on", "off"),
        default="on",
        help="on: rate limits on every scope + a budget + a quota (never denying); off: none attached",
    )
    parser.add_argument(
        "--routing",
        choices=("on", "off"),
        default="off",
        help="on: a failover routing policy on the key's chat calls (the happy path of a routed call)",
    )
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="LABEL",
        help='measure only this case (e.g. "chat c=1", "stream c=512"); repeatable',
    )
    parser.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        metavar="N",
        help="odock serve --workers N (production only); with N > 1 the gateway is not pinned: its "
        "workers share every core with the mock and the driver, and its CPU and RSS are summed",
    )
    parser.add_argument(
        "--core-share",
        type=float,
        default=None,
        metavar="F",
        help="pin the gateway to its core and cap each worker at F of it (a cgroup CPU quota; root): "
        "with --gateway-workers N, N workers of F each stand for N cores, so that two cores can show "
        "whether throughput scales with the CPU the workers get",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gateway setting for this run (e.g. usage_flush_interval_seconds=1); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        args.settings = dict(item.split("=", 1) for item in args.setting)
    except ValueError:
        parser.error("--setting takes NAME=VALUE")
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if args.smoke:
        names = ["embedded"]
    unknown = set(names) - set(BACKENDS)
    if unknown or not names:
        parser.error(f"--backends takes {', '.join(BACKENDS)}")
    args.backend_names = names
    if args.gateway_workers < 1:
        parser.error("--gateway-workers takes N >= 1")
    if args.gateway_workers > 1 and "embedded" in names:
        parser.error("--gateway-workers > 1 needs --backends production (in-process state is per process)")
    if args.core_share is not None and not 0 < args.core_share * args.gateway_workers <= 1:
        parser.error("--core-share F needs 0 < F x workers <= 1 (the workers share one core)")
    return args
