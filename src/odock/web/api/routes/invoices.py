"""Routes: invoice previews, CSV exports and PDF invoices, computed from stored usage (nothing is stored)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse

from odock.db.base import utcnow
from odock.errors import UnprocessableEntity
from odock.rbac.grant import Grant
from odock.usage.invoices import InvoicePreview, Invoices
from odock.usage.queries import UsageFilter, UsageReach
from odock.web.api.routes.usage import MAX_VALUES, OrganisationPath, UsageGrant, checked, moment
from odock.web.api.services import InvoicesDep

router = APIRouter(tags=["invoices"])


def _month_start(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month_start(at: datetime) -> datetime:
    return _month_start(_month_start(at) + timedelta(days=32))


def invoice_filter(
    start: Annotated[
        datetime | None,
        Query(alias="from", description="period start, inclusive (default: the first of this month, UTC)"),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="period end, exclusive (default: the first of the following month)"),
    ] = None,
    team_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="team id (repeatable)")
    ] = None,
    api_key_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="API key id (repeatable)")
    ] = None,
) -> UsageFilter:
    """The invoice period and its optional team / API key narrowing (use with ``Depends``)."""
    since = moment(start, "from") or _month_start(utcnow())
    until = moment(end, "to") or _next_month_start(since)
    if since >= until:
        raise UnprocessableEntity("from must be before to", param="from")
    return UsageFilter(
        start=since,
        end=until,
        team_ids=checked(team_id, "team_id"),
        api_key_ids=checked(api_key_id, "api_key_id"),
    )


def admin_invoice_filter(
    wanted: Annotated[UsageFilter, Depends(invoice_filter)],
    organisation_id: Annotated[
        list[str] | None, Query(max_length=MAX_VALUES, description="organisation id (repeatable)")
    ] = None,
) -> UsageFilter:
    """The invoice filter plus the super admin's ``organisation_id`` filter."""
    return replace(wanted, organisation_ids=checked(organisation_id, "organisation_id"))


InvoiceFilterDep = Annotated[UsageFilter, Depends(invoice_filter)]
AdminInvoiceFilterDep = Annotated[UsageFilter, Depends(admin_invoice_filter)]
CSV_DESCRIPTION = "One line per usage record (header first), oldest first, streamed."


def _csv(invoices: Invoices, grant: Grant, wanted: UsageFilter, scope: str) -> StreamingResponse:
    period = "-".join(f"{moment:%Y%m%d}" for moment in (wanted.start, wanted.end) if moment)
    name = f"odock-usage-{scope}-{period}.csv"
    return StreamingResponse(
        invoices.export_csv(UsageReach.of(grant), wanted),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


_CSV_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": CSV_DESCRIPTION}
}


@router.get("/organisations/{organisation_id}/invoices/preview")
async def invoice_preview(
    organisation_id: OrganisationPath, grant: UsageGrant, invoices: InvoicesDep, wanted: InvoiceFilterDep
) -> InvoicePreview:
    """The invoice of a period over the organisation's usage in reach."""
    return await invoices.preview(UsageReach.of(grant), wanted)


@router.get(
    "/organisations/{organisation_id}/invoices/export.csv",
    response_class=StreamingResponse,
    responses=_CSV_RESPONSES,
)
async def invoice_export(
    organisation_id: OrganisationPath, grant: UsageGrant, invoices: InvoicesDep, wanted: InvoiceFilterDep
) -> StreamingResponse:
    """Every usage record of the invoice, as CSV."""
    return _csv(invoices, grant, wanted, organisation_id)


_PDF_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The invoice as a PDF document (9-decimal USD amounts).",
    }
}


@router.get(
    "/organisations/{organisation_id}/invoices/invoice.pdf",
    response_class=Response,
    responses=_PDF_RESPONSES,
)
async def invoice_document(
    organisation_id: OrganisationPath, grant: UsageGrant, invoices: InvoicesDep, wanted: InvoiceFilterDep
) -> Response:
    """The invoice of a period as a PDF: period, scope, filters, totals and the cost tables."""
    # fpdf2 (with Pillow and fontTools) costs ~20 MiB once imported: loaded by the first PDF asked
    # for, not by every process that serves the control plane.
    from odock.web.api.invoice_pdf import invoice_pdf

    preview = await invoices.preview(UsageReach.of(grant), wanted)
    period = "-".join(f"{moment:%Y%m%d}" for moment in (wanted.start, wanted.end) if moment)
    return Response(
        invoice_pdf(preview),
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="odock-invoice-{organisation_id}-{period}.pdf"'
        },
    )


@router.get("/admin/invoices/preview")
async def all_invoice_preview(
    grant: UsageGrant, invoices: InvoicesDep, wanted: AdminInvoiceFilterDep
) -> InvoicePreview:
    """The invoice of a period across organisations (super admin)."""
    return await invoices.preview(UsageReach.of(grant), wanted)


@router.get("/admin/invoices/export.csv", response_class=StreamingResponse, responses=_CSV_RESPONSES)
async def all_invoice_export(
    grant: UsageGrant, invoices: InvoicesDep, wanted: AdminInvoiceFilterDep
) -> StreamingResponse:
    """Every usage record of the period across organisations, as CSV (super admin)."""
    return _csv(invoices, grant, wanted, "all")
