"""The run's report: the machine, the numbers per backend, the bars of the issue met or missed.

Rendered as Markdown (printed, and written next to a JSON file with every raw number).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import timeit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from bench.cases import CaseOutcome, Side
from bench.drivers import LoadResult, Percentiles, StreamResult
from bench.processes import CoreAvailability
from bench.profile import Profile
from bench.soak import SoakResult

# Added latency at concurrency 1 (p50, p99 ms) by backend; throughput; streams; memory.
LATENCY_BARS = {"embedded": (0.5, 2.0), "production": (1.0, 3.0)}
RPS_BAR = 3000.0
TTFT_P99_BAR = 5.0
# A usage writer that keeps up stores all but its last moments of records by the time a load stops;
# under 90% means the records wait for the load to end (their cost is not in the throughput).
STORED_BAR = 0.9
IDLE_RSS_BAR_MIB = 150.0
SOAK_GROWTH_BAR_PERCENT = 5.0
NOISY_PERCENT = 10.0


@dataclass
class BackendReport:
    """Everything measured on one backend."""

    name: str
    features: list[str]
    idle_rss_mib: float
    post_warmup_rss_mib: float
    cases: list[CaseOutcome] = field(default_factory=list)
    gateway_answered: int = 0
    usage_rows: int = 0
    soak: SoakResult | None = None
    profile: Profile | None = None
    core_probe: CoreAvailability | None = None  # the gateway core, just before the gateway started


@dataclass
class RunReport:
    """One run of bench/run.py."""

    command: str
    plan: str
    started_at: str
    machine: dict[str, str]
    layout: str
    driver: str
    mock: str
    governance_off: str
    backends: list[BackendReport] = field(default_factory=list)
    mock_compare: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gateway_workers: int = 1  # odock serve --workers: the bars are judged only for one process
    core_share: float | None = None  # each worker capped at this share of the gateway core (--core-share)

    @property
    def judges_bars(self) -> bool:
        """The bars are for one gateway process with one core to itself."""
        return self.gateway_workers == 1 and self.core_share is None


@dataclass(frozen=True)
class Bar:
    """One bar of the issue, on one backend."""

    backend: str
    bar: str
    measured: str
    met: bool


def machine() -> dict[str, str]:
    """CPU model, cores, memory, kernel and Python of this machine."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "speed": f"{python_speed_us():.1f}",
    }


def python_speed_us() -> float:
    """Microseconds one core takes for ``sum(range(1000))`` (best of 5): the machine's Python speed.

    Virtual machines of the same model run at different speeds from day to day (a busy host);
    this figure, printed with every report, lets runs on different days be compared.
    """
    loops = 2000
    best = min(timeit.timeit("sum(range(1000))", number=loops) for _ in range(5))
    return best / loops * 1e6


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _trio(a: float | None, b: float | None, c: float | None) -> str:
    return " / ".join(_ms(v) for v in (a, b, c))


def _errors(errors: dict[str, int]) -> str:
    total = sum(errors.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) + ")"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _load_core(side: Side) -> str:
    busy = side.core_busy_percent
    cores = " / ".join(f"{busy[c]:.0f}" for c in sorted(busy))
    return f"{cores} · {_num(side.other_load_percent)} · {_num(side.stolen_percent)}"


def _chat_table(cases: list[CaseOutcome]) -> list[str]:
    rows = [
        "| case | driver | direct p50 / p90 / p99 ms | gateway p50 / p90 / p99 ms "
        "| **added** p50 / p90 / p99 ms "
        "| direct rps | gateway rps | errors direct · gateway | gateway CPU % | gateway CPU µs per request "
        "| gateway peak RSS MiB | cores busy % · gateway core: other load % · stolen % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        d, g = case.direct.result, case.gateway.result
        assert isinstance(d, LoadResult)
        assert isinstance(g, LoadResult)
        rows.append(
            f"| {case.label} | {g.driver} | {_trio(d.latency.p50, d.latency.p90, d.latency.p99)} "
            f"| {_trio(g.latency.p50, g.latency.p90, g.latency.p99)} "
            f"| **{_trio(case.added['p50'], case.added['p90'], case.added['p99'])}** "
            f"| {_num(d.rps)} | {_num(g.rps)} | {_errors(d.errors)} · {_errors(g.errors)} "
            f"| {_num(case.gateway.gateway_cpu_percent)} | {_num(_cpu_per_request(case.gateway))} "
            f"| {_num(case.gateway.gateway_peak_rss_mib, 1)} | {_load_core(case.gateway)} |"
        )
    return rows


def _cpu_per_request(side: Side) -> float | None:
    """Gateway CPU time per answered request, in µs: what throughput on one core is made of."""
    result = side.result
    if side.gateway_cpu_percent is None or not isinstance(result, LoadResult) or not result.ok:
        return None
    return side.gateway_cpu_percent / 100 * result.duration / result.ok * 1e6


def _quad(p: Percentiles) -> str:
    return " / ".join(_ms(v) for v in (p.p50, p.p90, p.p99, p.p999))


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


_INSIDE_INTRO = {
    "chat": "Inside the gateway (from its usage records of the non-streaming requests it received during "
    "each gateway phase): latency = request received → response written; overhead = latency "
    "without the upstream wait; upstream = upstream call → its answer read. Client - inside = the "
    "client's latency percentile minus the gateway's own (a difference of percentiles): time "
    "spent around the gateway's work (client, kernel, server, host), not in it. Stored by the "
    "load's end = the phase's records already in the database when its load stopped: a usage "
    "writer that keeps up stores all but the last batch (records are written every 50 ms); one "
    "that only catches up after the load has a backlog the throughput did not pay for.",
    "stream": "Inside the gateway, streams (from its usage records of the streams it received during each "
    "gateway phase): TTFT = request received → first content chunk relayed; overhead = the "
    "gateway's own time before the upstream call and between the upstream's headers and its "
    "own; upstream = upstream call → the stream's end. Client - inside TTFT = the "
    "client's TTFT percentile minus the gateway's own: time around the gateway (client, kernel, "
    "server, host). Stored by the load's end: as for non-streaming requests.",
}


def _inside_table(cases: list[CaseOutcome], kind: Literal["chat", "stream"]) -> list[str]:
    """The gateway's own view of each case: latency (chat) or TTFT (streams) against the client's."""
    mine, what, unit = ("ttft", "TTFT", "streams") if kind == "stream" else ("latency", "latency", "requests")
    rows = [
        "",
        _INSIDE_INTRO[kind],
        "",
        f"| case | records · client {unit} | {what} p50 / p90 / p99 / p99.9 ms "
        "| overhead p50 / p90 / p99 / p99.9 ms | upstream p50 / p90 / p99 / p99.9 ms "
        f"| client - inside {what} p50 / p99 ms | stored by the load's end |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        inside, g = case.inside, case.gateway.result
        if inside is None:
            continue
        client, count = (g.ttft, g.streams) if isinstance(g, StreamResult) else (g.latency, g.requests)
        own = inside[mine]
        outside = (_minus(client.p50, own.p50), _minus(client.p99, own.p99))
        rows.append(
            f"| {case.label} | {inside['latency'].samples:,} · {count:,} | {_quad(own)} "
            f"| {_quad(inside['overhead'])} | {_quad(inside['upstream'])} "
            f"| {_ms(outside[0])} / {_ms(outside[1])} | {_stored_share(case)} |"
        )
    return rows


def stored_fraction(case: CaseOutcome) -> float | None:
    """The share of a gateway phase's usage records stored by the time its load stopped."""
    stored, inside = case.gateway.stored_at_end, case.inside
    if stored is None or inside is None or not inside["latency"].samples:
        return None
    return stored / inside["latency"].samples


def _stored_share(case: CaseOutcome) -> str:
    fraction = stored_fraction(case)
    return "-" if fraction is None else f"{case.gateway.stored_at_end:,} ({fraction:.1%})"


def _probe_line(probe: CoreAvailability) -> str:
    where = f"on CPU {probe.core}" if probe.core is not None else "unpinned: this machine pins nothing"
    longest = "-" if probe.longest_gap_ms is None else f"{probe.longest_gap_ms:.2f}"
    return (
        f"Gateway core availability ({probe.seconds:.1f} s busy-spin {where}, nice {probe.nice}, "
        f"before the gateway started): {probe.lost_percent:.2f}% lost in {probe.gaps:,} gaps "
        f"> {probe.threshold_ms:g} ms ({probe.gaps_over_1ms:,} > 1 ms, {probe.gaps_over_2ms:,} > 2 ms, "
        f"longest {longest} ms): time other processes and the host take from the gateway's core."
    )


def _stream_table(cases: list[CaseOutcome]) -> list[str]:
    rows = [
        "| case | streams x chunks | direct TTFT p50 / p99 ms | gateway TTFT p50 / p99 ms "
        "| **added TTFT** p50 / p90 / p99 ms | direct full p50 / p99 ms | gateway full p50 / p99 ms "
        "| added full p99 ms | streams/s direct · gateway | failed streams direct · gateway | gateway CPU % "
        "| gateway peak RSS MiB | cores busy % · gateway core: other load % · stolen % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        d, g = case.direct.result, case.gateway.result
        assert isinstance(d, StreamResult)
        assert isinstance(g, StreamResult)
        a = case.added
        rows.append(
            f"| {case.label} | {g.complete}/{g.streams} x {g.chunks_per_stream} "
            f"| {_ms(d.ttft.p50)} / {_ms(d.ttft.p99)} | {_ms(g.ttft.p50)} / {_ms(g.ttft.p99)} "
            f"| **{_trio(a['ttft_p50'], a['ttft_p90'], a['ttft_p99'])}** "
            f"| {_ms(d.full.p50)} / {_ms(d.full.p99)} | {_ms(g.full.p50)} / {_ms(g.full.p99)} "
            f"| {_ms(a['full_p99'])} | {_num(d.streams_per_second)} · {_num(g.streams_per_second)} "
            f"| {_errors(d.errors)} · {_errors(g.errors)} | {_num(case.gateway.gateway_cpu_percent)} "
            f"| {_num(case.gateway.gateway_peak_rss_mib, 1)} | {_load_core(case.gateway)} |"
        )
    return rows


def _case(backend: BackendReport, label: str) -> CaseOutcome | None:
    return next((c for c in backend.cases if c.label == label), None)


def run_bars(report: RunReport) -> list[Bar]:
    """The issue's bars over every backend of the run (none for a run with several workers)."""
    if not report.judges_bars:
        return []
    return [bar for backend in report.backends for bar in bars(backend)]


def bars(backend: BackendReport) -> list[Bar]:
    """The issue's bars that this run measured on ``backend``."""
    out: list[Bar] = []
    p50_bar, p99_bar = LATENCY_BARS[backend.name]
    c1 = _case(backend, "chat c=1")
    if c1 is not None and c1.added["p50"] is not None and c1.added["p99"] is not None:
        p50, p99 = c1.added["p50"], c1.added["p99"]
        out.append(
            Bar(
                backend.name,
                f"added latency at c=1: p50 ≤ {p50_bar} ms, p99 ≤ {p99_bar} ms",
                f"p50 {p50:.3f} ms, p99 {p99:.3f} ms",
                p50 <= p50_bar and p99 <= p99_bar,
            )
        )
    c64 = _case(backend, "chat c=64")
    if c64 is not None:
        g = c64.gateway.result
        assert isinstance(g, LoadResult)
        stored = stored_fraction(c64)
        kept_up = stored is None or stored >= STORED_BAR
        out.append(
            Bar(
                backend.name,
                f"≥ {RPS_BAR:,.0f} rps on one core at c=64, no errors, usage stored as it comes "
                f"(≥ {STORED_BAR:.0%} of the records by the load's end)",
                f"{g.rps:,.0f} rps, {g.error_count} errors"
                + ("" if stored is None else f", {stored:.1%} of the usage records stored by the load's end"),
                g.rps >= RPS_BAR and g.error_count == 0 and kept_up,
            )
        )
    for label, how in (("stream c=512", "opened at once"), ("stream c=512 held", "held in flight")):
        s512 = _case(backend, label)
        if s512 is None:
            continue
        s = s512.gateway.result
        assert isinstance(s, StreamResult)
        ttft = s512.added["ttft_p99"]
        whole = s.error_count == 0 and s.complete == s.streams
        out.append(
            Bar(
                backend.name,
                f"512 concurrent streams ({how}) complete in order, added TTFT p99 ≤ {TTFT_P99_BAR} ms",
                f"{s.complete}/{s.streams} complete, {s.error_count} failed, added TTFT p99 {_ms(ttft)} ms",
                whole and ttft is not None and ttft <= TTFT_P99_BAR,
            )
        )
    out.append(
        Bar(
            backend.name,
            f"idle RSS ≤ {IDLE_RSS_BAR_MIB:.0f} MiB",
            f"{backend.idle_rss_mib:.1f} MiB",
            backend.idle_rss_mib <= IDLE_RSS_BAR_MIB,
        )
    )
    if backend.soak is not None:
        soak = backend.soak
        out.append(
            Bar(
                backend.name,
                f"soak RSS growth ≤ {SOAK_GROWTH_BAR_PERCENT:.0f}% over the post-warm-up level",
                f"{soak.growth_percent:+.1f}% over {soak.seconds:.0f} s after {soak.warmup_seconds:.0f} s of "
                f"warm-up ({soak.growth_from_steady_percent:+.1f}% from 20%, "
                f"{soak.growth_mib_per_minute:+.2f} MiB/min)",
                soak.growth_percent <= SOAK_GROWTH_BAR_PERCENT,
            )
        )
    return out


def _soak_lines(soak: SoakResult) -> list[str]:
    return [
        "",
        f"Soak: {soak.warmup_seconds:.0f} s of warm-up, then {soak.seconds:.0f} s of mixed load "
        f"(chat x{soak.chat_concurrency}, "
        "embeddings x2, streams x8); completed "
        + ", ".join(f"{k} {v:,}" for k, v in soak.completed.items())
        + f"; errors {_errors(soak.errors)}.",
        "",
        "| idle | after the cases' warm-up | post-warm-up | at 20% | end of soak | peak | recovered "
        "| growth from post-warm-up | growth from 20% | growth/min |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {soak.idle_rss_mib:.1f} MiB | {soak.case_warmup_rss_mib:.1f} MiB "
        f"| {soak.post_warmup_rss_mib:.1f} MiB "
        f"| {soak.steady_start_rss_mib:.1f} MiB "
        f"| {soak.end_rss_mib:.1f} MiB | {soak.peak_rss_mib:.1f} MiB | {soak.recovered_rss_mib:.1f} MiB "
        f"| {soak.growth_percent:+.1f}% | {soak.growth_from_steady_percent:+.1f}% "
        f"| {soak.growth_mib_per_minute:+.2f} MiB/min |",
        *_backlog_lines(soak),
    ]


def _backlog_lines(soak: SoakResult) -> list[str]:
    """Served versus stored usage over the soak (and its recovery pause), every ten seconds."""
    if not soak.backlog:
        return []
    lines = [
        "",
        "Usage backlog over the soak: requests answered and usage records stored since it began "
        f"(the load stops at {soak.seconds:.0f} s; a writer that keeps up holds the backlog flat).",
        "",
        "| t s | served | stored | backlog |",
        "|---|---|---|---|",
    ]
    lines += [f"| {b.t:.0f} | {b.served:,} | {b.stored:,} | {b.backlog:,} |" for b in soak.backlog]
    return lines


def _profile_lines(profile: Profile) -> list[str]:
    lines = [
        "",
        f"Profile (py-spy, {profile.samples:,} active samples; {profile.idle_worker_samples:,} samples of "
        f"worker threads waiting in C set aside; raw stacks: `{profile.raw_path}`):",
        "",
        "| thread | share |",
        "|---|---|",
    ]
    lines += [f"| {name} | {share}% |" for name, share in profile.threads]
    lines += ["", "| self time by package | share |", "|---|---|"]
    lines += [f"| {name} | {share}% |" for name, share in profile.by_package]
    lines += ["", "| function (self) | share |", "|---|---|"]
    lines += [f"| `{name}` | {share}% |" for name, share in profile.self_top]
    lines += ["", "| function (inclusive, event-loop roots hidden) | share |", "|---|---|"]
    lines += [f"| `{name}` | {share}% |" for name, share in profile.inclusive_top]
    return lines


def _backend_lines(backend: BackendReport) -> list[str]:
    lines = ["", f"## Backend: {backend.name}", "", "Governance active on the gateway path:", ""]
    lines += [f"- {feature}" for feature in backend.features]
    lines += [
        "",
        f"Gateway RSS: idle {backend.idle_rss_mib:.1f} MiB, "
        f"after warm-up {backend.post_warmup_rss_mib:.1f} MiB. "
        f"Usage records written: {backend.usage_rows:,} "
        f"for {backend.gateway_answered:,} answered gateway requests.",
    ]
    if backend.core_probe is not None:
        lines += ["", _probe_line(backend.core_probe)]
    if backend.usage_rows < backend.gateway_answered:
        lines += [
            "",
            f"**Usage recording incomplete**: {backend.gateway_answered - backend.usage_rows:,} answered "
            "requests have no usage record (see the gateway log).",
        ]
    noisy = [c.label for c in backend.cases if c.noise > NOISY_PERCENT]
    if noisy:
        lines += [
            "",
            f"**Other processes or the hypervisor took the gateway core** (> {NOISY_PERCENT:.0f}% of it "
            f"busy elsewhere or stolen) during: {', '.join(noisy)}; those numbers overstate the gateway's "
            "cost.",
        ]
    chat = [c for c in backend.cases if c.kind == "chat"]
    streams = [c for c in backend.cases if c.kind == "stream"]
    if chat:
        lines += ["", "Non-streaming chat completions:", "", *_chat_table(chat)]
        if any(c.inside is not None for c in chat):
            lines += _inside_table(chat, "chat")
    if streams:
        lines += [
            "",
            "Streaming chat completions (include_usage; every chunk checked in order, [DONE] required; "
            "an Anthropic stream: its named events in order, message_stop required):",
            "",
            *_stream_table(streams),
        ]
        if any(c.inside is not None for c in streams):
            lines += _inside_table(streams, "stream")
    if backend.soak is not None:
        lines += _soak_lines(backend.soak)
    if backend.profile is not None:
        lines += _profile_lines(backend.profile)
    return lines


def render(report: RunReport) -> str:
    """The Markdown report."""
    m = report.machine
    lines = [
        f"# Odock benchmark ({report.plan}, {report.started_at})",
        "",
        f"Command: `{report.command}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, "
        f"Linux {m['kernel']}, Python {m['python']}; Python speed: `sum(range(1000))` takes "
        f"{m.get('speed', '?')} µs (lower is faster).",
        f"Cores: {report.layout}. Driver: {report.driver}. Mock upstream: {report.mock}.",
        f"Governance off: {report.governance_off}",
    ]
    lines += [f"Note: {note}" for note in report.notes]
    if report.mock_compare:
        lines += [
            "",
            "Mock upstream implementations (mock alone on one core, wrk on the other):",
            "",
            "| implementation | rps | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['impl']} | {r['rps']:,.0f} | {r['p50']:.3f} | {r['p99']:.3f} | {r['errors']} |"
            for r in report.mock_compare
        ]
    for backend in report.backends:
        lines += _backend_lines(backend)
    all_bars = run_bars(report)
    if not report.judges_bars:
        where = (
            f"each capped at {report.core_share:g} of the gateway core"
            if report.core_share is not None
            else "on every core"
        )
        lines += [
            "",
            f"Bars of the issue: not judged (they are for one gateway process with one core to itself; "
            f"this run had {report.gateway_workers} worker(s) {where}).",
        ]
    if all_bars:
        lines += ["", "## Bars of the issue", "", "| backend | bar | measured | |", "|---|---|---|---|"]
        lines += [
            f"| {b.backend} | {b.bar} | {b.measured} | {'met' if b.met else '**missed**'} |" for b in all_bars
        ]
    return "\n".join(lines) + "\n"


def write(report: RunReport, markdown_path: Path) -> tuple[str, Path]:
    """Write the Markdown and the JSON (same name, ``.json``); return the Markdown and the JSON path."""
    text = render(report)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(text)
    json_path = markdown_path.with_suffix(".json")
    raw = dataclasses.asdict(report)
    raw["bars"] = [dataclasses.asdict(b) for b in run_bars(report)]
    json_path.write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return text, json_path
