"""The Redis cost measurement: INFO and perf output parsing, and a short run on a private Redis."""

from __future__ import annotations

import shutil

import pytest
from bench.redis_ops import cost, measure, perf_instructions, private_redis, snapshot

CPU = "# CPU\r\nused_cpu_sys:{sys}\r\nused_cpu_user:{user}\r\nused_cpu_sys_children:0.000000\r\n"


def commandstats(**calls: tuple[int, int]) -> str:
    """An ``INFO commandstats`` reply with ``calls`` and ``usec`` per command."""
    lines = ["# Commandstats"]
    for name, (count, usec) in calls.items():
        lines.append(
            f"cmdstat_{name}:calls={count},usec={usec},usec_per_call={usec / count:.2f},failed_calls=0"
        )
    return "\r\n".join(lines) + "\r\n"


def test_cost_is_the_per_request_delta_without_the_measurements_own_commands() -> None:
    """Calls, CPU and EVALSHA time are differences divided by the requests; INFO and CONFIG are left out."""
    before = snapshot(
        commandstats(evalsha=(10, 500), hincrby=(40, 80), info=(2, 100)), CPU.format(sys=1.0, user=2.0)
    )
    after = snapshot(
        commandstats(evalsha=(20, 1500), hincrby=(80, 160), time=(10, 5), info=(4, 200), config=(1, 9)),
        CPU.format(sys=1.001, user=2.002),
    )

    measured = cost(before, after, requests=10)

    assert measured.commands == {"hincrby": 4.0, "evalsha": 1.0, "time": 1.0}
    assert measured.total == 6.0
    assert measured.cpu_us == pytest.approx(300.0)
    assert measured.evalsha_us == pytest.approx(100.0)
    assert "commands per request: 6.00 (evalsha 1.00, called from scripts 5.00)" in measured.report()


def test_perf_counts_are_read_from_its_csv_output() -> None:
    """A counted event gives its number; an event perf could not count gives None."""
    assert perf_instructions("1336667,,instructions,2003120,100.00,,\n") == 1336667
    assert perf_instructions("<not supported>,,instructions,0,100.00,,\n") is None
    assert perf_instructions("") is None


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_a_short_run_counts_five_script_calls_per_request() -> None:
    """Each governed request runs two admissions, a reserve, a finish and a settle: five EVALSHA."""
    with private_redis(shutil.which("redis-server") or "") as redis:
        measured = await measure(redis, requests=20)
    assert measured.commands["evalsha"] == 5.0
    assert measured.total > 5.0
    assert measured.cpu_us > 0
