"""Routes: usage records — filtered, sorted, cursor-paginated lists and one record's detail.

The filter query parameters parsed here (:func:`usage_filter`) are shared by the analytics and
invoice routes, so every usage read accepts the same names and values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from odock.errors import NotFound, UnprocessableEntity
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.usage.queries import (
    REQUEST_ID_PATTERN,
    PageRequest,
    UsageFilter,
    UsageKind,
    UsageReach,
    UsageRecordDetail,
    UsageRecords,
    UsageRecordSummary,
    UsageSort,
)
from odock.web.api.deps import Permit
from odock.web.api.paging import Page, PageParams, decode_cursor, make_page, page_params
from odock.web.api.services import Records

router = APIRouter(tags=["usage"])

ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"  # printable: no control characters (PostgreSQL refuses NUL)
STATUS_PATTERN = r"^(success|error|[1-5][0-9][0-9])$"
_ID = re.compile(ID_PATTERN)
MAX_VALUES = 100
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

OrganisationPath = Annotated[str, Path(pattern=ID_PATTERN, description="organisation id")]
Ids = Annotated[list[str] | None, Query(max_length=MAX_VALUES)]


def moment(value: datetime | None, name: str) -> datetime | None:
    """An ISO 8601 query value as UTC (a value without offset is UTC); 422 outside 2000 to 2200."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not EARLIEST <= value <= LATEST:
        raise UnprocessableEntity(f"{name} must fall between 2000 and 2200", param=name)
    return value.astimezone(UTC)


def checked(values: list[str] | None, name: str, pattern: str = ID_PATTERN) -> tuple[str, ...]:
    """Multi-valued filter values, each matching ``pattern`` (422 otherwise)."""
    for value in values or ():
        if not re.match(pattern, value):
            raise UnprocessableEntity(f"{name}: {value[:40]!r} is not valid", param=name)
    return tuple(dict.fromkeys(values or ()))


def usage_filter(
    start: Annotated[
        datetime | None,
        Query(alias="from", description="start of the range, inclusive (ISO 8601; UTC if no offset)"),
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="end of the range, exclusive (ISO 8601)")
    ] = None,
    status: Annotated[
        str | None,
        Query(
            pattern=STATUS_PATTERN,
            description="`success` (2xx/3xx), `error` (anything else), or one exact HTTP status",
        ),
    ] = None,
    provider: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="provider (repeatable)")
    ] = None,
    model: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="model name (repeatable)")
    ] = None,
    model_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="model id (repeatable)")
    ] = None,
    team_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="team id (repeatable)")
    ] = None,
    user_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="user id (repeatable)")
    ] = None,
    api_key_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="API key id (repeatable)")
    ] = None,
    q: Annotated[
        str | None, Query(pattern=REQUEST_ID_PATTERN.pattern, description="request id prefix")
    ] = None,
    stream: Annotated[
        bool | None, Query(description="streamed requests only (true) or unary only (false)")
    ] = None,
    kind: Annotated[
        UsageKind | None,
        Query(description='`llm`: model calls only; `mcp`: MCP calls only (provider "mcp")'),
    ] = None,
    mcp_server_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="MCP server id (repeatable)")
    ] = None,
    mcp_tool: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="MCP tool name (repeatable)")
    ] = None,
) -> UsageFilter:
    """The usage filter query parameters (use with ``Depends``)."""
    since, until = moment(start, "from"), moment(end, "to")
    if since is not None and until is not None and since >= until:
        raise UnprocessableEntity("from must be before to", param="from")
    return UsageFilter(
        start=since,
        end=until,
        status=int(status) if status and status.isdigit() else status,
        providers=checked(provider, "provider", NAME_PATTERN),
        models=checked(model, "model", NAME_PATTERN),
        model_ids=checked(model_id, "model_id"),
        team_ids=checked(team_id, "team_id"),
        user_ids=checked(user_id, "user_id"),
        api_key_ids=checked(api_key_id, "api_key_id"),
        request_id_prefix=q,
        stream=stream,
        kind=kind,
        mcp_server_ids=checked(mcp_server_id, "mcp_server_id"),
        mcp_tools=checked(mcp_tool, "mcp_tool", NAME_PATTERN),
    )


def admin_usage_filter(
    wanted: Annotated[UsageFilter, Depends(usage_filter)],
    organisation_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="organisation id (repeatable)")
    ] = None,
) -> UsageFilter:
    """The usage filter plus the super admin's ``organisation_id`` filter."""
    return replace(wanted, organisation_ids=checked(organisation_id, "organisation_id"))


UsageFilterDep = Annotated[UsageFilter, Depends(usage_filter)]
AdminUsageFilterDep = Annotated[UsageFilter, Depends(admin_usage_filter)]
SortQuery = Annotated[UsageSort, Query(description="sort column (then id)")]
PageDep = Annotated[PageParams, Depends(page_params)]


async def locate_record(runtime: Runtime, params: Mapping[str, str]) -> Target | None:
    """Where the record in the path sits (``None``: unknown, or not an id at all)."""
    record_id = params["record_id"]
    if not _ID.match(record_id):
        return None
    record = await UsageRecords(runtime.sessions).detail(record_id)
    return None if record is None else Target(record.organisation_id, record.team_id, record.user_id)


UsageGrant = Annotated[Grant, Depends(Permit(Resource.USAGE, Action.READ))]
RecordGrant = Annotated[Grant, Depends(Permit(Resource.USAGE, Action.READ, locate=locate_record))]
RecordPath = Annotated[str, Path(pattern=ID_PATTERN, description="usage record id")]


async def _page(
    records: UsageRecords, grant: Grant, wanted: UsageFilter, sort: UsageSort, params: PageParams
) -> Page[UsageRecordSummary]:
    after = None
    if params.cursor:
        value, row_id = decode_cursor(params.cursor)
        if not sort.accepts(value) or not _ID.match(row_id):
            raise UnprocessableEntity("cursor does not belong to this sort", param="cursor")
        if sort is UsageSort.LATENCY_MS and isinstance(value, int):
            value = float(value)  # the column is a double: bind a float whatever the JSON held
        after = (value, row_id)
    page = PageRequest(sort, descending=params.order == "desc", limit=params.limit, after=after)
    rows = await records.page(UsageReach.of(grant), wanted, page)
    return make_page(rows, params, lambda row: row, lambda row: (sort.value_of(row), row.id))


async def _detail(records: UsageRecords, record_id: str) -> UsageRecordDetail:
    detail = await records.detail(record_id)
    if detail is None:
        raise NotFound("usage record not found")
    return detail


@router.get("/organisations/{organisation_id}/usage/records")
async def list_usage_records(
    organisation_id: OrganisationPath,
    grant: UsageGrant,
    records: Records,
    wanted: UsageFilterDep,
    params: PageDep,
    sort: SortQuery = UsageSort.TIMESTAMP,
) -> Page[UsageRecordSummary]:
    """The organisation's usage records in reach, newest first by default."""
    return await _page(records, grant, wanted, sort, params)


@router.get("/organisations/{organisation_id}/usage/records/{record_id}")
async def get_usage_record(
    organisation_id: OrganisationPath, record_id: RecordPath, grant: RecordGrant, records: Records
) -> UsageRecordDetail:
    """One usage record with every stored field."""
    return await _detail(records, record_id)


@router.get("/admin/usage/records")
async def list_all_usage_records(
    grant: UsageGrant,
    records: Records,
    wanted: AdminUsageFilterDep,
    params: PageDep,
    sort: SortQuery = UsageSort.TIMESTAMP,
) -> Page[UsageRecordSummary]:
    """Usage records across organisations (super admin)."""
    return await _page(records, grant, wanted, sort, params)


@router.get("/admin/usage/records/{record_id}")
async def get_any_usage_record(
    record_id: RecordPath, grant: RecordGrant, records: Records
) -> UsageRecordDetail:
    """One usage record of any organisation (super admin)."""
    return await _detail(records, record_id)
