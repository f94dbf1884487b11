"""Page: one's own profile — name, role, organisation, teams, live sessions, personal admin tokens.

Every list and change is the REST API's: the page calls the ``/api/auth/*`` route functions to
read, and its forms post to them (``PATCH`` of one's own user, ``DELETE /api/auth/sessions/{id}``,
``POST``/``DELETE /api/auth/tokens``). Sessions and tokens page by their own cursors.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.errors import NotFound
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import CredentialDep, IdentityDep, Permit
from odock.web.api.paging import PageParams
from odock.web.api.routes.admin_tokens import list_tokens
from odock.web.api.routes.auth import current_session, list_sessions
from odock.web.api.services import AdminTokensDep, TenancyDep, TenancyQueriesDep
from odock.web.console.pages import render

router = APIRouter(include_in_schema=False)

Cursor = Annotated[str | None, Query(max_length=500)]
PER_PAGE = 20


@router.get("/profile")
async def profile(
    request: Request,
    credential: CredentialDep,
    identity: IdentityDep,
    queries: TenancyQueriesDep,
    tenancy: TenancyDep,
    tokens: AdminTokensDep,
    grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.READ, personal=True))],
    token_grant: Annotated[Grant, Depends(Permit(Resource.ADMIN_TOKEN, Action.READ, personal=True))],
    sessions_cursor: Cursor = None,
    tokens_cursor: Cursor = None,
) -> Response:
    """The signed-in user's own page."""
    me = (await current_session(credential, queries)).user
    sessions = await list_sessions(
        identity, credential, grant, PageParams(limit=PER_PAGE, cursor=sessions_cursor)
    )
    own_tokens = await list_tokens(
        tokens, token_grant, PageParams(limit=PER_PAGE, cursor=tokens_cursor), None
    )
    organisation = None
    if me.organisation_id:
        try:
            organisation = await tenancy.organisation(me.organisation_id)
        except NotFound:
            organisation = None
    update_url = (
        f"/api/organisations/{me.organisation_id}/users/{me.id}"
        if me.organisation_id
        else f"/api/admin/users/{me.id}"
    )
    return render(
        request,
        "profile/index.html",
        actor=grant.actor,
        me=me,
        organisation=organisation,
        update_url=update_url,
        sessions=sessions,
        tokens=own_tokens,
        sessions_cursor=sessions_cursor,
        tokens_cursor=tokens_cursor,
    )
