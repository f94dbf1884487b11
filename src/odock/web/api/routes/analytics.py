"""Routes: usage analytics — totals, latency percentiles, a time series, a breakdown, statuses."""

from __future__ import annotations

import enum
import functools
import zoneinfo
from dataclasses import replace
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from odock.db.base import utcnow
from odock.errors import UnprocessableEntity
from odock.rbac.grant import Grant
from odock.usage.analytics import (
    AnalyticsRequest,
    Dimension,
    Granularity,
    Metric,
    UsageAnalytics,
    UsageAnalyticsReport,
    UsageBreakdown,
)
from odock.usage.queries import UsageFilter, UsageKind, UsageReach
from odock.web.api.routes.usage import AdminUsageFilterDep, OrganisationPath, UsageFilterDep, UsageGrant
from odock.web.api.services import Analytics

router = APIRouter(tags=["usage"])

DEFAULT_RANGE = timedelta(days=30)


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def analytics_request(
    granularity: Granularity, group_by: Dimension, metric: Metric, top: int, timezone: str
) -> AnalyticsRequest:
    """The analytics shape, with the time zone checked against the IANA database."""
    if timezone not in _zones():
        raise UnprocessableEntity(f"unknown time zone {timezone[:64]!r}", param="timezone")
    return AnalyticsRequest(granularity, group_by, metric, top, timezone)


class Gateway(enum.StrEnum):
    """Which calls the analytics cover: every call, model calls only, or MCP calls only."""

    ALL = "all"
    LLM = "llm"
    MCP = "mcp"


def gateway_filter(
    wanted: UsageFilter,
    gateway: Annotated[
        Gateway, Query(description="`all` calls, `llm` (model calls) or `mcp` (MCP calls) only")
    ] = Gateway.ALL,
) -> UsageFilter:
    """``wanted`` narrowed to one gateway (422 if it contradicts the ``kind`` filter)."""
    if gateway is Gateway.ALL:
        return wanted
    kind = UsageKind(gateway.value)
    if wanted.kind is not None and wanted.kind is not kind:
        raise UnprocessableEntity("gateway contradicts kind", param="gateway")
    return replace(wanted, kind=kind)


def org_gateway_filter(
    wanted: UsageFilterDep,
    gateway: Annotated[
        Gateway, Query(description="`all` calls, `llm` (model calls) or `mcp` (MCP calls) only")
    ] = Gateway.ALL,
) -> UsageFilter:
    """The usage filter and the ``gateway`` parameter (use with ``Depends``)."""
    return gateway_filter(wanted, gateway)


def admin_gateway_filter(
    wanted: AdminUsageFilterDep,
    gateway: Annotated[
        Gateway, Query(description="`all` calls, `llm` (model calls) or `mcp` (MCP calls) only")
    ] = Gateway.ALL,
) -> UsageFilter:
    """The super admin's usage filter and the ``gateway`` parameter (use with ``Depends``)."""
    return gateway_filter(wanted, gateway)


AnalyticsFilter = Annotated[UsageFilter, Depends(org_gateway_filter)]
AdminAnalyticsFilter = Annotated[UsageFilter, Depends(admin_gateway_filter)]


def _ranged(wanted: UsageFilter) -> UsageFilter:
    """``wanted`` with its range completed (default: the last 30 days)."""
    end = wanted.end or utcnow()
    start = wanted.start or end - DEFAULT_RANGE
    if start >= end:
        raise UnprocessableEntity("from must be before to", param="from")
    return wanted.within(start, end)


async def _analyse(
    analytics: UsageAnalytics, grant: Grant, wanted: UsageFilter, request: AnalyticsRequest
) -> UsageAnalyticsReport:
    return await analytics.analyse(UsageReach.of(grant), _ranged(wanted), request)


GranularityQuery = Annotated[Granularity, Query(description="time-series bucket width")]
GroupQuery = Annotated[Dimension, Query(description="breakdown dimension")]
MetricQuery = Annotated[Metric, Query(description="what ranks the breakdown's top entries")]
TopQuery = Annotated[int, Query(ge=1, le=100, description="breakdown entries before 'other'")]
ZoneQuery = Annotated[str, Query(max_length=64, description="IANA time zone of the buckets")]


def analytics_shape(
    granularity: GranularityQuery = Granularity.DAY,
    group_by: GroupQuery = Dimension.MODEL,
    metric: MetricQuery = Metric.REQUESTS,
    top: TopQuery = 10,
    timezone: ZoneQuery = "UTC",
) -> AnalyticsRequest:
    """The analytics shape query parameters (use with ``Depends``)."""
    return analytics_request(granularity, group_by, metric, top, timezone)


Shape = Annotated[AnalyticsRequest, Depends(analytics_shape)]


@router.get("/organisations/{organisation_id}/usage/analytics")
async def usage_analytics(
    organisation_id: OrganisationPath,
    grant: UsageGrant,
    analytics: Analytics,
    shape: Shape,
    wanted: AnalyticsFilter,
) -> UsageAnalyticsReport:
    """Analytics of the organisation's usage in reach (default range: the last 30 days)."""
    return await _analyse(analytics, grant, wanted, shape)


@router.get("/organisations/{organisation_id}/usage/analytics/breakdown")
async def usage_breakdown(
    organisation_id: OrganisationPath,
    grant: UsageGrant,
    analytics: Analytics,
    shape: Shape,
    wanted: AnalyticsFilter,
) -> UsageBreakdown:
    """Only the breakdown of the organisation's usage in reach (one scan; ``granularity`` is unused)."""
    return await analytics.breakdown(UsageReach.of(grant), _ranged(wanted), shape)


@router.get("/admin/usage/analytics")
async def all_usage_analytics(
    grant: UsageGrant, analytics: Analytics, shape: Shape, wanted: AdminAnalyticsFilter
) -> UsageAnalyticsReport:
    """Analytics across organisations (super admin)."""
    return await _analyse(analytics, grant, wanted, shape)
