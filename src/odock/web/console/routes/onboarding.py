"""Pages: the first-start sign-in link (``/welcome/{token}``) and the invitation link (``/invite/{token}``).

Both pages only show a form; the account is made by the REST API the form posts to
(``POST /api/auth/welcome``, ``POST /api/invitations/{token}/accept``), which also signs the new
user in with the same session cookies as ``POST /api/auth/login``.
``/invite/{token}`` is the API's public route: it answers JSON to API clients and calls
:func:`invitation_page` for a browser (content negotiation on ``Accept``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from odock.errors import OdockError
from odock.identity.invitations import Invitations
from odock.identity.service import Identity
from odock.identity.tables import InvitationStatus
from odock.identity.welcome import check_welcome_link
from odock.web.api.deps import SESSION_COOKIE, IdentityDep, current_credential, wants_html
from odock.web.api.routes.invitations import InvitationDetails, invitation_details
from odock.web.api.routes.invitations import Token as InvitationToken
from odock.web.api.services import InvitationsDep
from odock.web.console.pages import render

router = APIRouter(include_in_schema=False)

Token = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/welcome/{token}")
async def welcome(request: Request, token: Token, identity: IdentityDep) -> Response:
    """Choose the first super admin's e-mail, name and password (404 page once the link is spent)."""
    await check_welcome_link(identity.sessions, token)  # refused: the page error handler's 404 page
    return render(request, "onboarding/welcome.html", token=token)


async def _signed_in_email(request: Request) -> str | None:
    """The e-mail address of the browser's signed-in account, if any (to accept without a password)."""
    if SESSION_COOKIE not in request.cookies:
        return None
    try:
        return (await current_credential(request)).user.email
    except OdockError:
        return None


async def invitation_page(
    request: Request, token: str, invitations: Invitations, identity: Identity
) -> Response:
    """The invitation as a page: what it offers, and a form to accept it (or why it cannot be)."""
    # The API module imports this one (its /invite route calls this page): import it here.
    from odock.web.api.routes.invitations import invitation_details_of

    try:
        row, org = await invitations.link(token)
        details = invitation_details_of(row, org)
    except OdockError as error:
        return render(request, "onboarding/invitation.html", status_code=error.http_status, error=error)
    providers = [
        {"name": name, "label": provider.display_name} for name, provider in identity.flows.providers.items()
    ]
    return render(
        request,
        "onboarding/invitation.html",
        invitation=details,
        signed_in_as=await _signed_in_email(request),
        token=token,
        open=details.status is InvitationStatus.PENDING,
        providers=providers,
    )


invite_router = APIRouter(tags=["invitations"])
"""The invitation link itself, outside ``/api`` and in the OpenAPI document (it answers API clients too)."""


@invite_router.get("/invite/{token}", response_model=InvitationDetails)
async def invitation_link(
    token: InvitationToken, request: Request, invitations: InvitationsDep, identity: IdentityDep
) -> InvitationDetails | Response:
    """Public: what the invitation link offers (type, e-mail, role, organisation, status, expiry).

    A browser (``Accept: text/html`` without JSON) gets the console's invitation page instead.
    """
    if wants_html(request):
        return await invitation_page(request, token, invitations, identity)
    return await invitation_details(token, invitations)
