"""Routes: invitations of an organisation, and accepting one through its link.

Admins: ``GET/POST /api/organisations/{organisation_id}/invitations``, ``…/{invitation_id}/resend``
and ``…/{invitation_id}/revoke``. The raw token is only in the create and resend answers (as
``token`` and ``invite_url``); no e-mail is sent. Invitees (public): ``GET /invite/{token}`` (also
``GET /api/invitations/{token}``) shows what the link offers; ``POST /api/invitations/{token}/accept``
accepts it with a name and password (a new account, signed in at once) or, without a password, as
the signed-in account whose e-mail is the invited one (e.g. after GitHub / OpenID Connect sign-in).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from odock.errors import UnprocessableEntity
from odock.identity.invitations import INVITABLE_ROLES, IssuedInvitation, effective_status
from odock.identity.passwords import MAX_PASSWORD_LENGTH
from odock.identity.secrets import ADMIN_TOKEN_PREFIX
from odock.identity.tables import Invitation, InvitationStatus, InvitationType
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.tenancy.tables import Organisation, Role
from odock.web.api.deps import (
    SESSION_COOKIE,
    IdentityDep,
    Permit,
    current_credential,
    request_ip,
    row_locator,
)
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.routes.auth import UserView, set_session_cookies, user_view
from odock.web.api.services import InvitationsDep, TenancyQueriesDep

router = APIRouter(tags=["invitations"])

OrgInvitations = "/organisations/{organisation_id}/invitations"
Token = Annotated[str, Path(min_length=1, max_length=200)]

_LOCATE = row_locator(Invitation, "invitation_id", lambda i: Target(i.organisation_id))
ManageInvitation = Annotated[Grant, Depends(Permit(Resource.INVITATION, Action.UPDATE, locate=_LOCATE))]


class InvitationCreate(BaseModel):
    """Who to invite, with which role."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Role = Role.USER


class InvitationView(BaseModel):
    """An invitation (never its token)."""

    id: str
    organisation_id: str | None
    email: str
    role: Role
    type: InvitationType
    status: InvitationStatus
    expires_at: datetime
    invited_by_id: str | None
    accepted_by_id: str | None
    created_at: datetime
    updated_at: datetime


class IssuedInvitationView(InvitationView):
    """A created or resent invitation: the link to pass on, shown this once."""

    token: str
    invite_url: str


class InvitationDetails(BaseModel):
    """What an invitation link offers, for the invitee (no secrets, no ids of other users)."""

    type: InvitationType
    email: str
    role: Role
    organisation_id: str | None
    organisation_name: str | None
    status: InvitationStatus
    expires_at: datetime


class InvitationAccept(BaseModel):
    """Accept as a new password account (``password``), or as the signed-in account (no password)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    password: str | None = Field(None, min_length=1, max_length=MAX_PASSWORD_LENGTH)


class Accepted(BaseModel):
    """The account that joined; ``csrf_token`` when a new session was opened."""

    user: UserView
    csrf_token: str | None = None
    expires_at: datetime | None = None


def _render(row: Invitation) -> InvitationView:
    return InvitationView(
        id=row.id,
        organisation_id=row.organisation_id,
        email=row.email,
        role=row.role,
        type=row.type,
        status=effective_status(row),
        expires_at=row.expires_at,
        invited_by_id=row.invited_by_id,
        accepted_by_id=row.accepted_by_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _issued(request: Request, identity: IdentityDep, issued: IssuedInvitation) -> IssuedInvitationView:
    base = (identity.settings.public_url or str(request.base_url)).rstrip("/")
    return IssuedInvitationView(
        **_render(issued.invitation).model_dump(),
        token=issued.token,
        invite_url=f"{base}/invite/{issued.token}",
    )


@router.get(OrgInvitations, response_model=Page[InvitationView])
async def list_invitations(
    invitations: InvitationsDep,
    grant: Annotated[Grant, Depends(Permit(Resource.INVITATION, Action.READ))],
    params: Annotated[PageParams, Depends(page_params)],
    status: Annotated[InvitationStatus | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200, description="search in e-mail")] = None,
) -> Page[InvitationView]:
    """The organisation's invitations, newest first; filter by (effective) status, search e-mail."""
    seek = partial(keyset, params=params)
    rows = await invitations.page(grant.scope().organisation_id, seek, status=status, q=q)
    return make_page(rows, params, _render, lambda r: (r.created_at, r.id))


@router.post(OrgInvitations, response_model=IssuedInvitationView, status_code=201)
async def invite(
    organisation_id: str,
    body: InvitationCreate,
    request: Request,
    identity: IdentityDep,
    invitations: InvitationsDep,
    grant: Annotated[Grant, Depends(Permit(Resource.INVITATION, Action.CREATE))],
) -> IssuedInvitationView:
    """Invite an e-mail address as ORG_ADMIN, MANAGER or USER; the answer holds the link (once)."""
    if body.role not in INVITABLE_ROLES:
        raise UnprocessableEntity("role must be ORG_ADMIN, MANAGER or USER", param="role")
    grant.check(Target(organisation_id))
    issued = await invitations.invite(organisation_id, body.email, body.role, grant.actor.user_id)
    return _issued(request, identity, issued)


@router.get(OrgInvitations + "/{invitation_id}", response_model=InvitationView)
async def get_invitation(
    invitation_id: str,
    invitations: InvitationsDep,
    _grant: Annotated[Grant, Depends(Permit(Resource.INVITATION, Action.READ, locate=_LOCATE))],
) -> InvitationView:
    """One invitation."""
    return _render(await invitations.get(invitation_id))


@router.post(OrgInvitations + "/{invitation_id}/resend", response_model=IssuedInvitationView)
async def resend(
    invitation_id: str,
    request: Request,
    identity: IdentityDep,
    invitations: InvitationsDep,
    _grant: ManageInvitation,
) -> IssuedInvitationView:
    """A new link and expiry; the old link stops working."""
    return _issued(request, identity, await invitations.resend(invitation_id))


@router.post(OrgInvitations + "/{invitation_id}/revoke", response_model=InvitationView)
async def revoke(invitation_id: str, invitations: InvitationsDep, _grant: ManageInvitation) -> InvitationView:
    """Close the invitation; its link stops working."""
    return _render(await invitations.revoke(invitation_id))


async def _details(invitations: InvitationsDep, token: str) -> InvitationDetails:
    return invitation_details_of(*await invitations.link(token))


def invitation_details_of(row: Invitation, org: Organisation | None) -> InvitationDetails:
    """What an invitation offers, as the invitee sees it."""
    return InvitationDetails(
        type=row.type,
        email=row.email,
        role=row.role,
        organisation_id=row.organisation_id,
        organisation_name=org.name if org else None,
        status=effective_status(row),
        expires_at=row.expires_at,
    )


@router.get("/invitations/{token}", response_model=InvitationDetails)
async def invitation_details(token: Token, invitations: InvitationsDep) -> InvitationDetails:
    """Public: what the invitation link offers (type, e-mail, role, organisation, status, expiry).

    ``GET /invite/{token}`` (the link itself, :mod:`odock.web.console.routes.onboarding`) answers
    the same to API clients and shows a browser the console's invitation page.
    """
    return await _details(invitations, token)


def _signed_in(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    return SESSION_COOKIE in request.cookies or header.lower().startswith(f"bearer {ADMIN_TOKEN_PREFIX}")


@router.post("/invitations/{token}/accept", response_model=Accepted)
async def accept(
    token: Token,
    body: InvitationAccept,
    request: Request,
    response: Response,
    identity: IdentityDep,
    invitations: InvitationsDep,
    queries: TenancyQueriesDep,
) -> Accepted:
    """Public: accept with a name and password (new account, signed in), or as the signed-in invitee."""
    if body.password is None:
        if not _signed_in(request):
            raise UnprocessableEntity(
                "give a password, or sign in with the invited account first", param="password"
            )
        credential = await current_credential(request)
        user = await invitations.accept_as(token, credential.user.id, name=body.name)
        return Accepted(user=await user_view(queries, user))
    ip = request_ip(request)
    user = await invitations.accept_new(token, name=body.name, password=body.password, ip=ip)
    issued = await identity.store.start(user.id, ip=ip, user_agent=request.headers.get("user-agent"))
    set_session_cookies(request, response, issued, identity.settings.session_ttl_seconds)
    return Accepted(
        user=await user_view(queries, user), csrf_token=issued.csrf_token, expires_at=issued.expires_at
    )
