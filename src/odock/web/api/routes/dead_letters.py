"""Routes: usage dead letters — the usage records the database refused, for operators to inspect.

Organisation admins list their organisation's; the super admin lists every organisation's
(``/api/admin/usage/dead-letters``, optionally of one). Nothing is changed through the API: once
the cause is fixed, ``odock usage replay-dead-letters`` stores them again (docs/usage-and-billing.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from odock.errors import UnprocessableEntity
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.usage.tables import UsageDeadLetter
from odock.web.api.deps import Permit
from odock.web.api.paging import Page, PageParams, decode_cursor, make_page, page_params
from odock.web.api.services import DeadLettersDep

router = APIRouter(tags=["usage"])

DeadLetterGrant = Annotated[Grant, Depends(Permit(Resource.USAGE_DEAD_LETTER, Action.READ))]
Paging = Annotated[PageParams, Depends(page_params)]


class DeadLetterOut(BaseModel):
    """A refused usage record: its ids, the database's reason and the record in its queue form."""

    id: str
    organisation_id: str | None
    request_id: str | None
    error: str
    event: str
    created_at: datetime


def render(letter: UsageDeadLetter) -> DeadLetterOut:
    """The API shape of a dead letter."""
    return DeadLetterOut(
        id=letter.id,
        organisation_id=letter.organisation_id,
        request_id=letter.request_id,
        error=letter.error,
        event=letter.event,
        created_at=letter.created_at,
    )


async def _page(
    letters: DeadLettersDep, organisation_id: str | None, paging: PageParams
) -> Page[DeadLetterOut]:
    after = None
    if paging.cursor:
        value, row_id = decode_cursor(paging.cursor)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise UnprocessableEntity("cursor does not belong to this list", param="cursor")
        after = (value, row_id)
    rows = await letters.page(
        organisation_id, limit=paging.limit, descending=paging.order == "desc", after=after
    )
    return make_page(rows, paging, render, lambda letter: (letter.created_at, letter.id))


@router.get(
    "/organisations/{organisation_id}/usage/dead-letters",
    summary="List the organisation's usage dead letters",
)
async def list_organisation_dead_letters(
    organisation_id: str, letters: DeadLettersDep, grant: DeadLetterGrant, paging: Paging
) -> Page[DeadLetterOut]:
    """Usage records of the organisation the database refused, newest first."""
    return await _page(letters, grant.scope().organisation_id, paging)


@router.get("/admin/usage/dead-letters", summary="List usage dead letters of every organisation")
async def list_dead_letters(
    letters: DeadLettersDep,
    grant: DeadLetterGrant,
    paging: Paging,
    organisation_id: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> Page[DeadLetterOut]:
    """Every refused usage record (optionally of one organisation), newest first (super admin)."""
    return await _page(letters, organisation_id, paging)
