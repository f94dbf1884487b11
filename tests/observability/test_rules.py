"""The Prometheus alert rules: promtool accepts them, their unit tests pass, and each alert is
complete (severity, summary, description, a runbook link that resolves) and tested both ways."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboards import REPO, RULE_TESTS, RULES, alert_rules
from tests.support.tools import require_tool

INSTALL = "apt-get install prometheus"
SEVERITIES = {"critical", "warning"}
ALERTS = alert_rules()


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool", INSTALL)
    return subprocess.run(
        [promtool, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rules() -> None:
    """``promtool check rules`` finds every rule of the file valid."""
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_rule_unit_tests_pass() -> None:
    """``promtool test rules`` passes every unit test in observability/prometheus/tests."""
    files = sorted(RULE_TESTS.glob("*.yml"))
    assert files
    done = _promtool("test", "rules", *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files), done.stdout


def _unit_tests() -> list[dict[str, Any]]:
    return [
        case
        for path in sorted(RULE_TESTS.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule["alert"])
def test_every_alert_is_tested_firing_and_quiet(rule: dict[str, Any]) -> None:
    """Each alert has a unit test where it fires and one where it must not."""
    cases = [case for case in _unit_tests() if case["alertname"] == rule["alert"]]
    assert any(case["exp_alerts"] for case in cases), "no test where it fires"
    assert any(not case["exp_alerts"] for case in cases), "no test where it stays quiet"


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule["alert"])
def test_every_alert_is_complete(rule: dict[str, Any]) -> None:
    """Each alert has a severity, a summary, a description and a runbook link into the docs."""
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert re.fullmatch(r"docs/[a-z-]+\.md#[a-z0-9-]+", annotations["runbook_url"])


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule["alert"])
def test_every_alert_reads_the_odock_job(rule: dict[str, Any]) -> None:
    """Every selector of an alert names the ``odock`` job, so other jobs' series never match."""
    selectors = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*\{[^}]*\}", rule["expr"])
    assert selectors
    assert all('job="odock"' in selector for selector in selectors), selectors


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


RUNBOOKS = sorted({rule["annotations"]["runbook_url"] for rule in ALERTS})


@pytest.mark.parametrize("link", RUNBOOKS)
def test_runbook_links_resolve(link: str) -> None:
    """Each runbook link names a heading of a page in docs/.

    docs/deployment.md is written alongside this file; until it exists its links are skipped.
    """
    page, anchor = link.split("#")
    path = REPO / page
    if page == "docs/deployment.md" and not path.exists():
        pytest.skip("docs/deployment.md does not exist yet: its runbook anchors are unchecked")
    assert anchor in _anchors(Path(path).read_text()), f"{page} has no heading for #{anchor}"


def test_every_alert_is_documented() -> None:
    """docs/observability.md lists every alert of the rule file, and no other."""
    text = (REPO / "docs" / "observability.md").read_text()
    section = text.split("### Alerts", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.MULTILINE))
    assert listed == {rule["alert"] for rule in ALERTS}
