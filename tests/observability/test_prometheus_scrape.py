"""A real Prometheus scrapes a real gateway: the values arrive, the alert rules load and evaluate
healthy, and every dashboard query runs and finds series.

One Prometheus per module, scraping the module's gateway (see conftest.py) every second as the
job ``odock``, with the shipped alert rules loaded; their group interval is shortened to one
second so that every rule has been evaluated within the test's deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Gateway
from tests.support.dashboards import (
    RULES,
    alert_rules,
    dashboard_files,
    load_dashboard,
    panel_queries,
    variable_queries,
)
from tests.support.exposition import scrape
from tests.support.prometheus import JOB, RunningPrometheus, instant
from tests.support.promql import variable_query_selector, with_grafana_variables_substituted
from tests.support.tools import require_tool

ROUTE = "/v1/chat/completions"


def _rules_evaluated_every_second(directory: Path) -> Path:
    """A copy of the shipped rule file whose groups are evaluated every second."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        group["interval"] = "1s"
    path = directory / "alerts.yml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def prometheus(
    busy_gateway: Gateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPrometheus]:
    """Prometheus scraping the module's gateway, with the alert rules loaded."""
    binary = require_tool("prometheus", "apt-get install prometheus")
    directory = tmp_path_factory.mktemp("prometheus")
    target = busy_gateway.base_url.removeprefix("http://")
    with RunningPrometheus(binary, directory, [target], [_rules_evaluated_every_second(directory)]) as server:
        yield server


def test_prometheus_stores_the_gateway_s_values(busy_gateway: Gateway, prometheus: RunningPrometheus) -> None:
    """The chat requests the gateway counted reach Prometheus with the same value and its labels."""
    expected = scrape(busy_gateway.base_url).value("gateway_requests_total", route=ROUTE, status_class="2xx")
    assert expected >= 3  # the traffic's successful chat calls
    selector = f'gateway_requests_total{{job="{JOB}", route="{ROUTE}", status_class="2xx"}}'

    def stored() -> list[dict[str, Any]] | None:
        result = prometheus.query(selector)
        return result if result and float(result[0]["value"][1]) == expected else None

    series = prometheus.wait_for(stored, f"{selector} == {expected}")
    assert len(series) == 1
    assert series[0]["metric"]["instance"] == busy_gateway.base_url.removeprefix("http://")
    assert prometheus.query(f'up{{job="{JOB}"}}')[0]["value"][1] == "1"


def test_the_alert_rules_load_and_evaluate_healthy(prometheus: RunningPrometheus) -> None:
    """Every shipped alert is loaded and evaluates without error, and once the gateway has been
    scraped none fires (before the first scrape, gateway_metrics_missing rightly does)."""
    expected = {rule["alert"] for rule in alert_rules()}
    prometheus.wait_for(lambda: prometheus.query(f'up{{job="{JOB}"}} == 1'), "the gateway to be scraped")
    scraped = prometheus.now()

    def evaluated_since_scraped() -> list[dict[str, Any]] | None:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        done = all(
            rule["health"] != "unknown" and instant(rule["lastEvaluation"]) > scraped for rule in rules
        )
        return rules if done and len(rules) == len(expected) else None

    rules = prometheus.wait_for(evaluated_since_scraped, "every rule to be evaluated after a scrape")
    assert {rule["name"] for rule in rules} == expected
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert unhealthy == {}
    # The traffic happened before Prometheus started: every rate it sees is zero.
    assert {rule["name"]: rule["state"] for rule in rules if rule["state"] != "inactive"} == {}


def test_every_dashboard_query_runs_and_finds_series(
    busy_gateway: Gateway, prometheus: RunningPrometheus
) -> None:
    """Every panel query runs and returns series (so its label values exist too), and every
    variable offers values (the job variable: the gateway's job)."""
    # rate() over the panels' window needs two samples of every series in it.
    prometheus.wait_for(
        lambda: prometheus.query(f'count_over_time(gateway_build_info{{job="{JOB}"}}[1m]) >= 2'),
        "two scrapes of the gateway",
    )
    assert JOB in prometheus.api("label/job/values", **{"match[]": "gateway_build_info"})
    empty = []
    for path in dashboard_files():
        model = load_dashboard(path)
        for query in panel_queries(model):
            if not prometheus.query(with_grafana_variables_substituted(query.expr)):
                empty.append(query.where)
        for query in variable_queries(model):
            selector, label = variable_query_selector(query.expr)
            assert selector is not None, query.where
            assert label is not None, query.where
            match = with_grafana_variables_substituted(selector)
            if not prometheus.api(f"label/{label}/values", **{"match[]": match}):
                empty.append(query.where)
    assert not empty, "no series for: " + ", ".join(empty)
