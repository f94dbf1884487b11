"""A real Prometheus scrapes a real gateway: the values arrive, the alert rules load and evaluate
healthy, and every dashboard query runs.

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
from tests.support.prometheus import JOB, RunningPrometheus
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
    """Every shipped alert is loaded, evaluates without error, and none fires on a healthy gateway."""
    expected = {rule["alert"] for rule in alert_rules()}

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        done = all(rule["health"] != "unknown" for rule in rules) and len(rules) == len(expected)
        return rules if done else None

    rules = prometheus.wait_for(evaluated, "every rule to be evaluated")
    assert {rule["name"] for rule in rules} == expected
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert unhealthy == {}
    # The traffic's one 502 among a few requests is under the 5xx rule's volume floor.
    assert {rule["name"]: rule["state"] for rule in rules if rule["state"] != "inactive"} == {}


def test_every_dashboard_query_runs(busy_gateway: Gateway, prometheus: RunningPrometheus) -> None:
    """Every panel query runs in Prometheus, and the job variable offers the gateway's job."""
    prometheus.wait_for(lambda: prometheus.query(f'gateway_build_info{{job="{JOB}"}}'), "gateway_build_info")
    assert JOB in prometheus.api("label/job/values", **{"match[]": "gateway_build_info"})
    for path in dashboard_files():
        model = load_dashboard(path)
        for query in panel_queries(model):
            prometheus.api("query", query=with_grafana_variables_substituted(query.expr))
        for query in variable_queries(model):
            selector, label = variable_query_selector(query.expr)
            assert selector is not None, query.where
            assert label is not None, query.where
            found = prometheus.api(
                f"label/{label}/values", **{"match[]": with_grafana_variables_substituted(selector)}
            )
            assert found, f"{query.where} offers no value"
