"""Page: the organisation dashboard — traffic, cost, errors, latency, top models and keys, budgets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.budgets.queries import MeterFilters
from odock.db.base import utcnow
from odock.db.keyset import KeysetPage
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.usage.analytics import Dimension, Metric
from odock.usage.queries import UsageFilter, UsageSort
from odock.web.api.deps import Permit
from odock.web.api.paging import PageParams
from odock.web.api.routes.analytics import analytics_request, usage_analytics, usage_breakdown
from odock.web.api.routes.usage import OrganisationPath, UsageGrant, list_usage_records
from odock.web.api.services import Analytics, Budgets, Records
from odock.web.console.pages import render
from odock.web.console.routes.reuse import TraceLinksDep
from odock.web.console.spend import (
    DASHBOARD_RANGES,
    breakdown_chart,
    near_threshold,
    series_chart,
    status_chart,
)

router = APIRouter(include_in_schema=False)

TOP = 5
RECENT = PageParams(limit=5)  # the newest requests listed, each linked to its record (and trace)
BUDGETS_SCANNED = 200  # the newest active budgets in reach whose windows are read


@router.get("/o/{organisation_id}")
async def dashboard(
    request: Request,
    organisation_id: OrganisationPath,
    grant: UsageGrant,
    budget_grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.READ))],
    analytics: Analytics,
    budgets: Budgets,
    records: Records,
    traces: TraceLinksDep,
    range_: Annotated[str, Query(alias="range", pattern="^(24h|7d|30d)$")] = "24h",
) -> Response:
    """Requests, cost, errors and latency of the organisation (or the part of it the actor sees)."""
    span = DASHBOARD_RANGES[range_]
    start, end = span.bounds(utcnow())
    wanted = UsageFilter(start=start, end=end)
    by_model = await usage_analytics(
        organisation_id, grant, analytics,
        analytics_request(span.granularity, Dimension.MODEL, Metric.COST, TOP, "UTC"), wanted,
    )  # fmt: skip
    by_key = await usage_breakdown(  # only the breakdown: the totals are by_model's
        organisation_id, grant, analytics,
        analytics_request(span.granularity, Dimension.API_KEY, Metric.REQUESTS, TOP, "UTC"), wanted,
    )  # fmt: skip
    rows = await budgets.budget_page(
        budget_grant.scope(), MeterFilters(active=True), KeysetPage(limit=BUDGETS_SCANNED)
    )
    windows = await budgets.current_windows(rows, live=True)
    near = near_threshold([(b.id, b.name, b.thresholds) for b in rows], windows)
    totals = by_model.totals
    recent = await list_usage_records(organisation_id, grant, records, wanted, RECENT, UsageSort.TIMESTAMP)
    return render(
        request,
        "dashboard/index.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        ranges=DASHBOARD_RANGES.values(),
        current=span,
        totals=totals,
        by_model=by_model.breakdown,
        by_key=by_key.entries,
        near=near,
        recent=recent.items,
        traces=traces,
        requests_chart=series_chart(by_model.series, Metric.REQUESTS, span.granularity, "Requests over time"),
        cost_chart=series_chart(by_model.series, Metric.COST, span.granularity, "Cost over time"),
        models_chart=breakdown_chart(by_model.breakdown, Metric.COST, "Cost by model"),
        status_chart=status_chart(by_model.status_classes, "Requests by status class"),
    )
