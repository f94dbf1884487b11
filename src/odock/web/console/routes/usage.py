"""Pages: usage records (filters, search by request id, cursor paging), one record, and analytics."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from odock.db.base import utcnow
from odock.errors import UnprocessableEntity
from odock.usage.analytics import Dimension, Metric
from odock.usage.queries import MCP_PROVIDER, REQUEST_ID_PATTERN, UsageFilter, UsageKind, UsageSort
from odock.web.api.routes.analytics import Gateway, analytics_request, gateway_filter, usage_analytics
from odock.web.api.routes.usage import (
    STATUS_PATTERN,
    OrganisationPath,
    PageDep,
    RecordGrant,
    RecordPath,
    SortQuery,
    UsageFilterDep,
    UsageGrant,
    get_usage_record,
    list_usage_records,
    usage_filter,
)
from odock.web.api.services import Analytics, Records
from odock.web.console.pages import render
from odock.web.console.routes.reuse import TraceLinksDep
from odock.web.console.spend import (
    ANALYTICS_RANGES,
    breakdown_chart,
    query_without,
    series_chart,
    status_chart,
)

router = APIRouter(include_in_schema=False)

# What the analytics page offers (the API accepts more; these are the ones worth a chart).
DIMENSIONS = [
    (Dimension.MODEL, "Model"), (Dimension.API_KEY, "API key"), (Dimension.TEAM, "Team"),
    (Dimension.USER, "User"), (Dimension.PROVIDER, "Provider"),
    (Dimension.MCP_SERVER, "MCP server"), (Dimension.MCP_TOOL, "MCP tool"),
]  # fmt: skip
METRICS = [
    (Metric.REQUESTS, "Requests"), (Metric.COST, "Cost"), (Metric.TOTAL_TOKENS, "Total tokens"),
    (Metric.INPUT_TOKENS, "Input tokens"), (Metric.OUTPUT_TOKENS, "Output tokens"),
    (Metric.TOOL_CALLS, "MCP tool calls"),
]  # fmt: skip
GATEWAYS = [(Gateway.ALL, "All calls"), (Gateway.LLM, "AI"), (Gateway.MCP, "MCP")]
DETAIL_CARDS = ("token_details", "billing", "provider_usage", "routing", "metadata")


FILTERS = (
    "status",
    "provider",
    "model",
    "team_id",
    "user_id",
    "api_key_id",
    "q",
    "kind",
    "mcp_server_id",
    "mcp_tool",
)
KINDS = {"": None, "llm": UsageKind.LLM, "mcp": UsageKind.MCP}
STATUS = re.compile(STATUS_PATTERN)  # the API's own query pattern
Text = Annotated[str | None, Query(max_length=200)]


def page_filter(values: dict[str, str]) -> UsageFilter:
    """The API's usage filter from the form's fields (an empty field is no filter); 422 per field."""
    if values["status"] and not STATUS.match(values["status"]):
        raise UnprocessableEntity("choose a status", param="status")
    if values["q"] and not REQUEST_ID_PATTERN.match(values["q"]):
        raise UnprocessableEntity("a request id has letters, digits and . _ : - only", param="q")
    if values["kind"] not in KINDS:
        raise UnprocessableEntity("choose AI or MCP calls", param="kind")

    def many(name: str) -> list[str] | None:
        return [values[name]] if values[name] else None

    return usage_filter(
        status=values["status"] or None,
        provider=many("provider"),
        model=many("model"),
        team_id=many("team_id"),
        user_id=many("user_id"),
        api_key_id=many("api_key_id"),
        q=values["q"] or None,
        kind=KINDS[values["kind"]],
        mcp_server_id=many("mcp_server_id"),
        mcp_tool=many("mcp_tool"),
    )


@router.get("/o/{organisation_id}/usage")
async def usage_records(
    request: Request,
    organisation_id: OrganisationPath,
    grant: UsageGrant,
    records: Records,
    params: PageDep,
    traces: TraceLinksDep,
    status: Text = None,
    provider: Text = None,
    model: Text = None,
    team_id: Text = None,
    user_id: Text = None,
    api_key_id: Text = None,
    q: Text = None,
    kind: Text = None,
    mcp_server_id: Text = None,
    mcp_tool: Text = None,
    sort: SortQuery = UsageSort.TIMESTAMP,
) -> Response:
    """The usage records in reach, newest first, filtered as the form says."""
    given = (status, provider, model, team_id, user_id, api_key_id, q, kind, mcp_server_id, mcp_tool)
    values = {name: (value or "").strip() for name, value in zip(FILTERS, given, strict=True)}
    context: dict[str, Any] = {
        "filters": values,
        "filtered": any(values.values()),
        "query": query_without(request.query_params),
        "request_id_pattern": REQUEST_ID_PATTERN.pattern.strip("^$"),
        "page": None,
        "error": None,
        "traces": traces,
    }
    try:
        wanted = page_filter(values)
    except UnprocessableEntity as error:
        context["error"] = error
        return render(request, "usage/records.html", actor=grant.actor, organisation_id=organisation_id,
                      status_code=422, **context)  # fmt: skip
    context["page"] = await list_usage_records(organisation_id, grant, records, wanted, params, sort)
    return render(
        request, "usage/records.html", actor=grant.actor, organisation_id=organisation_id, **context
    )


@router.get("/o/{organisation_id}/usage/{record_id}")
async def usage_record(
    request: Request,
    organisation_id: OrganisationPath,
    record_id: RecordPath,
    grant: RecordGrant,
    records: Records,
    traces: TraceLinksDep,
) -> Response:
    """One usage record with every stored field; the JSON cards only when they hold something.

    Routing metadata with attempts has its own card (badge, target, a table of attempts); other
    routing metadata, if any, is shown as JSON like the rest.
    """
    record = await get_usage_record(organisation_id, record_id, grant, records)
    routing = record.routing if isinstance(record.routing.get("attempts"), list) else None
    shown = [name for name in DETAIL_CARDS if getattr(record, name) and not (name == "routing" and routing)]
    cards = [(name, getattr(record, name)) for name in shown]
    mcp_billing = record.billing.get("mcp") if record.provider == MCP_PROVIDER else None
    return render(
        request,
        "usage/record.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        record=record,
        cards=cards,
        routing=routing,
        mcp=record.provider == MCP_PROVIDER,
        mcp_billing=mcp_billing if isinstance(mcp_billing, dict) else {},
        trace_url=traces.url(record.trace_id),
    )


@router.get("/o/{organisation_id}/analytics")
async def analytics(
    request: Request,
    organisation_id: OrganisationPath,
    grant: UsageGrant,
    service: Analytics,
    wanted: UsageFilterDep,
    range_: Annotated[str, Query(alias="range", pattern="^(7d|30d|90d)$")] = "7d",
    group_by: Dimension = Dimension.MODEL,
    metric: Metric = Metric.REQUESTS,
    gateway: Gateway = Gateway.ALL,
) -> Response:
    """KPIs (AI and MCP apart), a daily series, a breakdown and the MCP top tools over 7, 30 or 90 days."""
    span = ANALYTICS_RANGES[range_]
    start, end = span.bounds(utcnow())
    shape = analytics_request(span.granularity, group_by, metric, 10, "UTC")
    wanted = gateway_filter(replace(wanted, start=start, end=end), gateway)
    report = await usage_analytics(organisation_id, grant, service, shape, wanted)
    dimension = dict(DIMENSIONS).get(group_by, group_by.value)
    metric_label = dict(METRICS).get(metric, metric.value)
    return render(
        request,
        "usage/analytics.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        report=report,
        totals=report.totals,
        ranges=ANALYTICS_RANGES.values(),
        current=span,
        dimensions=[(d.value, label) for d, label in DIMENSIONS],
        metrics=[(m.value, label) for m, label in METRICS],
        group_by=group_by.value,
        metric=metric.value,
        range_query=query_without(request.query_params, "range"),
        gateways=[(g.value, label) for g, label in GATEWAYS],
        gateway=gateway.value,
        gateway_query=query_without(request.query_params, "gateway"),
        kept_filters=[(k, v) for k, v in request.query_params.multi_items() if v and k in FILTERS],
        series_chart=series_chart(report.series, metric, span.granularity, f"{metric_label} per day"),
        breakdown_chart=breakdown_chart(report.breakdown, metric, f"{metric_label} by {dimension.lower()}"),
        status_chart=status_chart(report.status_classes, "Requests by status class"),
        metric_label=metric_label,
        dimension_label=dimension,
    )
