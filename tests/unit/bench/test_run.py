"""The benchmark runs end to end: `bench/run.py --smoke` completes and prints its tables.

The smoke plan includes the Anthropic pass-through and translated cases, so their streams are
verified through the gateway and their usage records found on their own routes.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[3]
SMOKE_PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class SmokeRun:
    """What one smoke run printed and wrote."""

    stdout: str
    raw: dict[str, Any]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """One smoke run (embedded, a few hundred requests, no wrk), shared by this module's tests."""
    out = tmp_path_factory.mktemp("smoke") / "smoke.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return SmokeRun(done.stdout, orjson.loads(out.with_suffix(".json").read_bytes()))


def _embedded(smoke: SmokeRun) -> dict[str, Any]:
    (embedded,) = smoke.raw["backends"]
    assert embedded["name"] == "embedded"
    return embedded  # type: ignore[no-any-return]


def test_smoke_run_completes_and_prints_a_table(smoke: SmokeRun) -> None:
    """A smoke run exits 0 and reports both paths error-free."""
    assert "| chat c=1 | aiohttp |" in smoke.stdout
    assert "| stream c=1 |" in smoke.stdout
    for label in ("anthropic c=16", "translated c=16", "anthropic stream c=16", "translated stream c=16"):
        assert f"| {label} |" in smoke.stdout
    assert "## Bars of the issue" in smoke.stdout
    for case in _embedded(smoke)["cases"]:
        for path in ("direct", "gateway"):
            assert case[path]["result"]["errors"] == {}, (case["label"], path)


def test_smoke_run_reports_latency_inside_the_gateway(smoke: SmokeRun) -> None:
    """Each case has the gateway's own percentiles, from one usage record per gateway request."""
    chat = [case for case in _embedded(smoke)["cases"] if case["kind"] == "chat"]
    assert chat
    for case in chat:
        inside = case["inside"]
        assert set(inside) == {"latency", "overhead", "upstream", "ttft"}
        assert inside["ttft"]["samples"] == 0  # no first token without a stream
        records = inside["latency"]["samples"]
        assert records == case["gateway"]["result"]["requests"] > 0, case["label"]
        for name in ("latency", "overhead", "upstream"):
            percentiles = inside[name]
            assert percentiles["samples"] == records, (case["label"], name)
            assert 0 <= percentiles["p50"] <= percentiles["p90"] <= percentiles["p99"] <= percentiles["p999"]
        assert inside["overhead"]["p50"] <= inside["latency"]["p50"]
        assert inside["upstream"]["p50"] <= inside["latency"]["p50"]
        # The gateway's own latency is part of what the client measured.
        assert inside["latency"]["p50"] <= case["gateway"]["result"]["latency"]["p50"]
        assert f"| {case['label']} | {records:,} · {records:,} |" in smoke.stdout
    streams = [case for case in _embedded(smoke)["cases"] if case["kind"] == "stream"]
    assert streams
    for case in streams:
        inside, client = case["inside"], case["gateway"]["result"]
        assert inside["ttft"]["samples"] == inside["latency"]["samples"] == client["complete"] > 0
        # The gateway relays the first token before the client reads it.
        assert inside["ttft"]["p50"] <= client["ttft"]["p50"]
        assert inside["ttft"]["p50"] <= inside["latency"]["p50"]
    assert "Inside the gateway (from its usage records" in smoke.stdout
    assert "Inside the gateway, streams" in smoke.stdout


def test_smoke_run_probes_the_gateway_core(smoke: SmokeRun) -> None:
    """Before the cases, the gateway core is probed for the smoke's second; the report says what was lost."""
    probe = _embedded(smoke)["core_probe"]
    assert SMOKE_PROBE_SECONDS - 1e-9 <= probe["seconds"] < SMOKE_PROBE_SECONDS + 0.5
    assert 0 <= probe["lost_ms"] <= probe["seconds"] * 1000
    assert probe["gaps_over_2ms"] <= probe["gaps_over_1ms"] <= probe["gaps"]
    assert f"Gateway core availability ({probe['seconds']:.1f} s busy-spin" in smoke.stdout
    assert f"{probe['lost_percent']:.2f}% lost in {probe['gaps']:,} gaps > 0.2 ms" in smoke.stdout
