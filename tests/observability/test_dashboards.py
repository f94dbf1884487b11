"""The Grafana dashboards: well formed, valid PromQL, and reading only what a gateway exports.

A real gateway (see conftest.py) serves unary, streamed, failed-over, failed and refused calls, so
its labelled series exist; its ``GET /metrics`` answer is the reference every dashboard query,
variable query and alert rule expression is checked against: metric names (histogram series
included) and the label names each selector matches and each grouping clause keeps.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Gateway
from tests.support.dashboards import (
    Query,
    dashboard_files,
    load_dashboard,
    panel_queries,
    panels,
    rule_queries,
    variable_queries,
)
from tests.support.exposition import Exposition, scrape
from tests.support.promql import (
    Reads,
    reads,
    variable_query_selector,
    with_grafana_variables_substituted,
)
from tests.support.tools import require_tool

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
EXPECTED = {
    "odock-gateway-requests",
    "odock-providers",
    "odock-limits-budgets",
    "odock-tokens-cost",
    "odock-usage-pipeline",
}
TARGET_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped series."""
SCRAPE_SERIES = {"up"}
"""Series Prometheus makes for every target."""
FILES = dashboard_files()
MODELS = {path.stem: load_dashboard(path) for path in FILES}


def _all_queries() -> Iterator[Query]:
    for model in MODELS.values():
        yield from panel_queries(model)
        yield from variable_queries(model)
    yield from rule_queries()


def _reads(query: Query) -> tuple[Reads, str | None]:
    """What a query reads, and the label a variable query lists."""
    if " variable " in query.where:
        selector, listed = variable_query_selector(query.expr)
        return (reads(selector) if selector else Reads()), listed
    return reads(query.expr), None


@pytest.fixture(scope="module")
def exposition(busy_gateway: Gateway) -> Exposition:
    """What the module's gateway exports after its traffic."""
    return scrape(busy_gateway.base_url)


# --- shape -----------------------------------------------------------------------------------
def test_the_dashboards_are_shipped() -> None:
    """The five dashboards are there, each file named after its uid."""
    assert set(MODELS) == EXPECTED
    assert {model["uid"] for model in MODELS.values()} == EXPECTED


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dashboard_shape(name: str) -> None:
    """A dashboard has Grafana's schema, the odock tag and the data source, job and instance
    variables, and every panel and target queries the data source variable."""
    model = MODELS[name]
    assert model["schemaVersion"] == 39
    assert model["title"].startswith("Odock / ")
    assert "odock" in model["tags"]
    assert model["id"] is None  # imported or provisioned, Grafana assigns it
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    for name_ in ("job", "instance"):
        assert variables[name_]["type"] == "query"
        assert variables[name_]["datasource"] == DATASOURCE
        assert variables[name_]["includeAll"]
        assert variables[name_]["multi"]
    for panel in panels(model):
        assert panel["title"].strip()
        if panel["type"] == "row":
            continue
        assert panel["description"].strip(), panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_selector_follows_the_job_and_instance_variables(name: str) -> None:
    """Every series selector of a panel filters on ``$job`` and ``$instance``."""
    for query in panel_queries(MODELS[name]):
        for selector in reads(query.expr).selectors:
            assert selector.labels >= TARGET_LABELS, f"{query.where}: {selector.metric} is not filtered"
        for matchers in re.findall(r"\{[^}]*\}", query.expr):
            assert 'job=~"$job"' in matchers, query.where
            assert 'instance=~"$instance"' in matchers, query.where


@pytest.mark.parametrize("name", sorted(MODELS))
def test_panel_ids_are_unique(name: str) -> None:
    """No two panels of a dashboard share an id."""
    ids = [panel["id"] for panel in panels(MODELS[name])]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_panels_do_not_overlap(name: str) -> None:
    """Panels sit inside the 24-column grid and no two cover the same cell."""
    taken: dict[tuple[int, int], str] = {}
    for panel in MODELS[name]["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] > 0, panel["title"]
        assert 0 <= grid["x"] <= grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


# --- the PromQL reader these checks rely on ----------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "metrics", "grouping"),
    [
        (
            'sum by (route) (rate(gateway_requests_total{job=~"$job", route!~"/x|y"}[$__rate_interval]))',
            {"gateway_requests_total"},
            {"route"},
        ),
        (
            'histogram_quantile(0.95, sum(rate(a_bucket{k="by (x)"}[5m])) by (le)) > bool 0.5',
            {"a_bucket"},
            {"le"},
        ),
        (
            "rate(a[5m] offset 1h30m) / on (x) group_left (y) b and c unless d or vector(1)",
            {"a", "b", "c", "d"},
            {"x", "y"},
        ),
        ("max_over_time(deriv(a:b[1h:5m])[10m:1m]) * 3e2 + time() - Inf", {"a:b"}, set()),
        ('absent_over_time(up{job="odock"}[10m])', {"up"}, set()),
        ("sum without (instance) (c)", {"c"}, {"instance"}),
    ],
)
def test_the_promql_reader(expr: str, metrics: set[str], grouping: set[str]) -> None:
    """The reader finds metric names and grouping labels past functions, strings, ranges and keywords."""
    found = reads(expr)
    assert (found.metrics, found.grouping) == (metrics, grouping)


def test_the_promql_reader_ties_matchers_to_their_metric() -> None:
    """Each selector's matcher labels belong to that selector's metric."""
    found = reads('a{x="1", y=~"2"} / ignoring (z) b{w!="}"}')
    assert {(s.metric, s.labels) for s in found.selectors} == {
        ("a", frozenset({"x", "y"})),
        ("b", frozenset({"w"})),
    }


# --- against a real gateway's /metrics ---------------------------------------------------------
def test_every_query_reads_an_exported_series(exposition: Exposition) -> None:
    """Every metric a dashboard panel, variable or alert rule reads is one the gateway exports."""
    problems = []
    for query in _all_queries():
        for metric in sorted(_reads(query)[0].metrics - SCRAPE_SERIES):
            if metric not in exposition.declared:
                problems.append(f"{query.where}: {metric} is not exported")
    assert not problems, "\n".join(problems)


def test_every_label_a_query_uses_is_on_its_series(exposition: Exposition) -> None:
    """Matchers, grouping clauses and variable queries only name labels the series carry."""
    problems = []
    for query in _all_queries():
        found, listed = _reads(query)
        metrics = found.metrics - SCRAPE_SERIES
        for metric in sorted(metrics - set(exposition.labels)):
            problems.append(f"{query.where}: {metric} has no sample after the test traffic")
        for selector in found.selectors:
            have = TARGET_LABELS | exposition.labels.get(selector.metric, set())
            for label in sorted(selector.labels - have):
                problems.append(f"{query.where}: {selector.metric} has no label {label}")
        kept = found.grouping | ({listed} if listed else set())
        for label in sorted(kept - TARGET_LABELS):
            for metric in sorted(metrics & set(exposition.labels)):
                if label not in exposition.labels[metric]:
                    problems.append(f"{query.where}: {metric} has no label {label} to group by")
    assert not problems, "\n".join(problems)


def test_the_dashboards_show_every_gateway_metric(exposition: Exposition) -> None:
    """Every gateway_* and gen_ai_* metric the gateway exports is on some dashboard."""
    shown = {
        metric for model in MODELS.values() for q in panel_queries(model) for metric in reads(q.expr).metrics
    }
    missing = []
    for family in sorted(exposition.families):
        if not family.startswith(("gateway_", "gen_ai_")):
            continue
        base = family.removesuffix("_total")
        if not any(metric == family or metric.startswith(base + "_") for metric in shown):
            missing.append(family)
    assert not missing, f"on no dashboard: {missing}"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool accepts every panel and variable query, as recording rules of a generated file."""
    promtool = require_tool("promtool", "apt-get install prometheus")
    where: dict[str, str] = {}
    rules: list[dict[str, Any]] = []
    for model in MODELS.values():
        for query in [*panel_queries(model), *variable_queries(model)]:
            expr = query.expr
            if " variable " in query.where:
                selector, _ = variable_query_selector(expr)
                if selector is None:
                    continue
                expr = f"count({selector})"
            name = f"dashboard_check:query_{len(rules)}"
            where[name] = query.where
            rules.append({"record": name, "expr": with_grafana_variables_substituted(expr)})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    named = "\n".join(f"{name}: {place}" for name, place in where.items() if name in done.stderr)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{named}"
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
