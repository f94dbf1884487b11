"""The breakdown-only analytics route: the same entries as the full report, filters and reach."""

from __future__ import annotations

from typing import Any

from odock.tenancy.tables import Role
from tests.integration.api.test_analytics import RANGE, analyse
from tests.integration.api.test_analytics import traffic as traffic  # 61 records in the range
from tests.support.api import ControlPlaneUnderTest


def breakdown_path(organisation_id: str) -> str:
    """The breakdown route of an organisation."""
    return f"/api/organisations/{organisation_id}/usage/analytics/breakdown"


def test_the_breakdown_equals_the_full_reports(
    control_plane: ControlPlaneUnderTest, traffic: tuple[str, list[dict[str, Any]]]
) -> None:
    """For each dimension and metric the entries are exactly the full report's breakdown."""
    org, rows = traffic
    for params in (
        {"group_by": "model", "metric": "cost", "top": 2},
        {"group_by": "provider", "metric": "requests"},
        {"group_by": "status", "metric": "errors", "top": 3},
    ):
        answer = control_plane.admin.get(breakdown_path(org), params={**RANGE, **params})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["entries"] == analyse(control_plane, org, **params)["breakdown"]
        assert (body["group_by"], body["metric"]) == (params["group_by"], params["metric"])
        assert sum(entry["requests"] for entry in body["entries"]) == len(rows)


def test_filters_and_reach_apply(
    control_plane: ControlPlaneUnderTest, traffic: tuple[str, list[dict[str, Any]]]
) -> None:
    """A provider filter narrows the entries; another organisation's admin is refused; bad shapes are 422."""
    org, rows = traffic
    answer = control_plane.admin.get(breakdown_path(org), params={**RANGE, "provider": "openai"})
    entries = answer.json()["entries"]
    assert sum(entry["requests"] for entry in entries) == sum(1 for r in rows if r["provider"] == "openai")
    stranger = control_plane.caller(Role.ORG_ADMIN, control_plane.organisation())
    assert stranger.get(breakdown_path(org), params=RANGE).status_code == 403
    refused = control_plane.admin.get(breakdown_path(org), params={**RANGE, "group_by": "colour"})
    assert refused.status_code == 422
