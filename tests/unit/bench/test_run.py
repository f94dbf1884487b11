"""The benchmark runs end to end: `bench/run.py --smoke` completes and prints its tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[3]


def test_smoke_run_completes_and_prints_a_table(tmp_path: Path) -> None:
    """A smoke run (embedded, a few hundred requests, no wrk) exits 0 and reports both paths error-free."""
    out = tmp_path / "smoke.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| chat c=1 | aiohttp |" in done.stdout
    assert "| stream c=1 |" in done.stdout
    assert "## Bars of the issue" in done.stdout
    raw = orjson.loads(out.with_suffix(".json").read_bytes())
    (embedded,) = raw["backends"]
    assert embedded["name"] == "embedded"
    for case in embedded["cases"]:
        for path in ("direct", "gateway"):
            assert case[path]["result"]["errors"] == {}, (case["label"], path)
