"""The shipped Grafana dashboards and Prometheus alert rules, read for the observability tests.

Dashboards live in ``observability/grafana/dashboards/*.json``, the alert rules in
``observability/prometheus/rules/alerts.yml`` and their promtool unit tests in
``observability/prometheus/tests/*.yml``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "observability" / "grafana" / "dashboards"
RULES = REPO / "observability" / "prometheus" / "rules" / "alerts.yml"
RULE_TESTS = REPO / "observability" / "prometheus" / "tests"


@dataclass(frozen=True)
class Query:
    """One PromQL expression a dashboard or the rule file holds, and where it is."""

    where: str
    expr: str


def dashboard_files() -> list[Path]:
    """Every shipped dashboard file."""
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    """One dashboard's JSON model."""
    model: dict[str, Any] = json.loads(path.read_text())
    return model


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, rows and the panels inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    """Every panel target's PromQL expression."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            where = f"{dashboard['uid']} panel {panel['id']} ({panel['title']}) {target['refId']}"
            yield Query(where, target["expr"])


def variable_queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    """Every templated variable's Prometheus query (``label_values(...)``)."""
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        yield Query(f"{dashboard['uid']} variable {variable['name']}", text)


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of the alert rule file, in file order."""
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule_queries() -> Iterator[Query]:
    """Every rule's expression."""
    for rule in alert_rules():
        yield Query(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
