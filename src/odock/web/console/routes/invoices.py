"""Page: invoices — a period (preset or custom), team and key filters, summary tables, PDF and CSV.

The figures are the API's invoice preview; the downloads are links to the API's CSV export and
PDF invoice with the same period and filters, fetched by the browser with its session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from odock.db.base import utcnow
from odock.errors import UnprocessableEntity
from odock.usage.invoices import InvoicePreview
from odock.web.api.routes.invoices import invoice_filter, invoice_preview
from odock.web.api.routes.usage import MAX_VALUES, OrganisationPath, UsageGrant
from odock.web.api.services import InvoicesDep
from odock.web.console.pages import render

router = APIRouter(include_in_schema=False)

Preset = Literal["this_month", "last_month", "last_30_days", "custom"]
PRESETS: list[tuple[str, str]] = [
    ("this_month", "This month"),
    ("last_month", "Last month"),
    ("last_30_days", "Last 30 days"),
    ("custom", "Custom"),
]
Ids = Annotated[list[str] | None, Query(max_length=MAX_VALUES)]


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month(day: date, back: int = 0) -> tuple[datetime, datetime]:
    first = day.replace(day=1)
    for _ in range(back):
        first = (first - timedelta(days=1)).replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first), _midnight(following)


@dataclass(frozen=True)
class Period:
    """The chosen period, as the form shows it (dates, end inclusive) and as the API takes it."""

    start: datetime
    end: datetime  # exclusive

    @property
    def first_day(self) -> str:
        """The first day, for the form."""
        return self.start.date().isoformat()

    @property
    def last_day(self) -> str:
        """The last day (inclusive), for the form."""
        return (self.end - timedelta(microseconds=1)).date().isoformat()


def period_of(preset: Preset, first: str | None, last: str | None, today: date) -> Period:
    """The period a preset (or a custom first and last day, both inclusive) names; 422 per field."""
    if preset == "this_month":
        return Period(*_month(today))
    if preset == "last_month":
        return Period(*_month(today, back=1))
    if preset == "last_30_days":
        return Period(_midnight(today - timedelta(days=29)), _midnight(today + timedelta(days=1)))
    days = []
    for name, value in (("from", first), ("to", last)):
        try:
            days.append(date.fromisoformat(value or ""))
        except ValueError:
            raise UnprocessableEntity("enter a date (YYYY-MM-DD)", param=name) from None
    if days[0] > days[1]:
        raise UnprocessableEntity("the first day must not be after the last", param="from")
    return Period(_midnight(days[0]), _midnight(days[1] + timedelta(days=1)))


@router.get("/o/{organisation_id}/invoices")
async def invoices_page(
    request: Request,
    organisation_id: OrganisationPath,
    grant: UsageGrant,
    invoices: InvoicesDep,
    preset: Preset = "this_month",
    first: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    team_id: Ids = None,
    api_key_id: Ids = None,
) -> Response:
    """The invoice of a period over the organisation's usage in reach."""
    today = utcnow().date()
    context: dict[str, Any] = {
        "presets": PRESETS,
        "preset": preset,
        "team_ids": team_id or [],
        "key_ids": api_key_id or [],
    }
    try:
        period = period_of(preset, first, last, today)
        wanted = invoice_filter(period.start, period.end, team_id, api_key_id)
    except UnprocessableEntity as error:
        return render(
            request, "invoices/index.html", actor=grant.actor, organisation_id=organisation_id,
            status_code=422, error=error, first=first or "", last=last or "", preview=None, **context,
        )  # fmt: skip
    preview = await invoice_preview(organisation_id, grant, invoices, wanted)
    everything: InvoicePreview = preview
    if team_id or api_key_id:  # the filter choices are every team and key with usage in the period
        everything = await invoice_preview(
            organisation_id, grant, invoices, invoice_filter(period.start, period.end)
        )
    query = urlencode(
        [("from", period.start.isoformat()), ("to", period.end.isoformat())]
        + [("team_id", t) for t in wanted.team_ids]
        + [("api_key_id", k) for k in wanted.api_key_ids]
    )
    api = f"/api/organisations/{organisation_id}/invoices"
    return render(
        request,
        "invoices/index.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        preview=preview,
        period=period,
        first=period.first_day,
        last=period.last_day,
        team_options=[(line.key, line.label or line.key) for line in everything.by_team if line.key],
        key_options=[(line.key, line.label or line.key) for line in everything.by_api_key if line.key],
        csv_url=f"{api}/export.csv?{query}",
        pdf_url=f"{api}/invoice.pdf?{query}",
        error=None,
        **context,
    )
