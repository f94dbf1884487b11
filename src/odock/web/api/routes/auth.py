"""Routes: sign-in, the current session, logout, password change, one's own sessions.

Browser flow: ``POST /api/auth/login`` sets the HttpOnly ``odock_session`` cookie and the
readable ``odock_csrf`` cookie and returns the CSRF token; every cookie-authenticated write then
sends it back as ``X-CSRF-Token``. ``/api/auth/session`` and ``/api/auth/logout`` serve any
signed-in account (pending and must-change-password ones included: the console needs them to
route the user); everything else goes through ``Permit``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from odock.audit.context import AuditActor, set_actor
from odock.errors import OdockError, SignInFailed
from odock.identity.directory import Membership
from odock.identity.oauth import STATE_TTL_SECONDS
from odock.identity.passwords import MAX_PASSWORD_LENGTH, check_password_rules
from odock.identity.sessions import IssuedSession
from odock.identity.welcome import accept_welcome_link
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.tenancy.queries import TenancyQueries
from odock.tenancy.tables import Role, TeamMemberRole, User, UserStatus
from odock.web.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CredentialDep,
    IdentityDep,
    Permit,
    identity_of,
    request_ip,
    wants_html,
)
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.services import TenancyQueriesDep

router = APIRouter(tags=["auth"])
log = logging.getLogger(__name__)


class TeamMembershipView(BaseModel):
    """A team the user belongs to, and their role in it."""

    team_id: str
    team_name: str
    role: TeamMemberRole


class UserView(BaseModel):
    """A user as the control plane shows it (no secrets)."""

    id: str
    email: str
    name: str | None
    role: Role
    status: UserStatus
    organisation_id: str | None
    must_change_password: bool
    has_password: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime
    teams: list[TeamMembershipView] = Field(default_factory=list)


def render_user(user: User, teams: list[Membership] | None = None) -> UserView:
    """The :class:`UserView` of ``user`` with its memberships."""
    return UserView(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        status=user.status,
        organisation_id=user.organisation_id,
        must_change_password=user.must_change_password,
        has_password=user.password_hash is not None,
        last_login_at=user.last_login_at,
        created_at=user.created_at,
        updated_at=user.updated_at,
        teams=[
            TeamMembershipView(team_id=m.team_id, team_name=m.team_name, role=m.role) for m in teams or []
        ],
    )


class LoginRequest(BaseModel):
    """E-mail and password."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class SignedIn(BaseModel):
    """A new session: the user, and the CSRF token to send as ``X-CSRF-Token`` on writes."""

    user: UserView
    csrf_token: str
    expires_at: datetime


class SessionView(BaseModel):
    """The signed-in account and how it authenticated."""

    user: UserView
    via: Literal["session", "token"]
    session_id: str | None
    expires_at: datetime | None


class PasswordChange(BaseModel):
    """The current password and the new one (at least 12 characters)."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class PasswordChanged(BaseModel):
    """Every session was ended; a browser caller gets a fresh one (``csrf_token`` set)."""

    sessions_revoked: bool = True
    csrf_token: str | None = None
    expires_at: datetime | None = None


class SessionRow(BaseModel):
    """One of the caller's live sessions."""

    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


def set_session_cookies(request: Request, response: Response, issued: IssuedSession, max_age: float) -> None:
    """Set the HttpOnly session cookie and the readable CSRF cookie (Secure on https or by setting)."""
    secure = _secure(request)
    for name, value, httponly in (
        (SESSION_COOKIE, issued.token, True),
        (CSRF_COOKIE, issued.csrf_token, False),
    ):
        response.set_cookie(
            name, value, max_age=int(max_age), path="/", secure=secure, httponly=httponly, samesite="lax"
        )


def _secure(request: Request) -> bool:
    configured = identity_of(request).settings.session_cookie_secure
    return bool(configured) if configured is not None else request.url.scheme == "https"


def clear_session_cookies(response: Response) -> None:
    """Remove both session cookies from the browser."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


async def user_view(queries: TenancyQueries, user: User) -> UserView:
    """``user`` rendered with its team memberships."""
    found = await queries.teams_of(user)
    return render_user(found.user, found.teams)


@router.post("/auth/login", response_model=SignedIn)
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    identity: IdentityDep,
    queries: TenancyQueriesDep,
) -> SignedIn:
    """Sign in with e-mail and password: sets the session cookies, returns the CSRF token."""
    user, issued = await identity.sign_in(
        body.email, body.password, ip=request_ip(request), user_agent=request.headers.get("user-agent")
    )
    set_session_cookies(request, response, issued, identity.settings.session_ttl_seconds)
    return SignedIn(
        user=await user_view(queries, user), csrf_token=issued.csrf_token, expires_at=issued.expires_at
    )


class WelcomeRequest(BaseModel):
    """The first-start link's token, and the first super admin's e-mail, name and password."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = Field(None, min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


# The throttle's "e-mail" for guesses at the first-start link (it counts per client IP too).
WELCOME_THROTTLE_KEY = "first-start-link"


@router.post("/auth/welcome", response_model=SignedIn, status_code=201)
async def welcome(
    body: WelcomeRequest,
    request: Request,
    response: Response,
    identity: IdentityDep,
    queries: TenancyQueriesDep,
) -> SignedIn:
    """Public (the first-start link is the credential): create the first super admin and sign in.

    Works once, and only while no user exists (404 otherwise); throttled like sign-in.
    """
    check_password_rules(body.password)  # a too-short password is no guess at the link
    ip = request_ip(request)
    await identity.throttle.reserve(WELCOME_THROTTLE_KEY, ip)
    user = await accept_welcome_link(
        identity.sessions,
        identity.passwords,
        body.token,
        email=body.email,
        name=body.name,
        password=body.password,
        ip=ip,
    )
    await identity.throttle.succeeded(WELCOME_THROTTLE_KEY, ip)
    issued = await identity.store.start(user.id, ip=ip, user_agent=request.headers.get("user-agent"))
    set_session_cookies(request, response, issued, identity.settings.session_ttl_seconds)
    return SignedIn(
        user=await user_view(queries, user), csrf_token=issued.csrf_token, expires_at=issued.expires_at
    )


@router.post("/auth/logout", status_code=204)
async def logout(credential: CredentialDep, response: Response, identity: IdentityDep) -> Response:
    """End the current session (a token caller has none: nothing happens) and clear the cookies."""
    if credential.session is not None:
        await identity.store.revoke(credential.session.id)
    response.status_code = 204
    clear_session_cookies(response)
    return response


@router.get("/auth/session", response_model=SessionView)
async def current_session(credential: CredentialDep, queries: TenancyQueriesDep) -> SessionView:
    """The signed-in account (any status: the console routes pending and revoked users with it)."""
    session = credential.session
    return SessionView(
        user=await user_view(queries, credential.user),
        via="session" if session is not None else "token",
        session_id=session.id if session is not None else None,
        expires_at=session.expires_at if session is not None else None,
    )


@router.post("/auth/password", response_model=PasswordChanged)
async def change_password(
    body: PasswordChange,
    request: Request,
    response: Response,
    identity: IdentityDep,
    credential: CredentialDep,
    grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.UPDATE, personal=True))],
) -> PasswordChanged:
    """Change one's password: every session ends; a browser caller gets a new session at once."""
    ip = request_ip(request)
    await identity.change_password(grant.actor.user_id, body.current_password, body.new_password, ip=ip)
    if credential.session is None:
        return PasswordChanged()
    issued = await identity.store.start(
        grant.actor.user_id, ip=ip, user_agent=request.headers.get("user-agent")
    )
    set_session_cookies(request, response, issued, identity.settings.session_ttl_seconds)
    return PasswordChanged(csrf_token=issued.csrf_token, expires_at=issued.expires_at)


@router.get("/auth/sessions", response_model=Page[SessionRow])
async def list_sessions(
    identity: IdentityDep,
    credential: CredentialDep,
    grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.READ, personal=True))],
    params: Annotated[PageParams, Depends(page_params)],
) -> Page[SessionRow]:
    """The caller's live sessions (newest first by default)."""
    rows = await identity.store.live_page(grant.actor.user_id, partial(keyset, params=params))
    current = credential.session.id if credential.session else None
    return make_page(
        rows,
        params,
        lambda r: SessionRow(
            id=r.id,
            created_at=r.created_at,
            last_seen_at=r.last_seen_at,
            expires_at=r.expires_at,
            ip=r.ip,
            user_agent=r.user_agent,
            current=r.id == current,
        ),
        lambda r: (r.created_at, r.id),
    )


@router.delete("/auth/sessions/{session_id}", status_code=204)
async def revoke_session(
    session_id: Annotated[str, Path(max_length=64)],
    identity: IdentityDep,
    grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.UPDATE, personal=True))],
) -> Response:
    """End one of one's own sessions (404 for anyone else's)."""
    await identity.store.revoke_own(session_id, grant.actor.user_id)
    return Response(status_code=204)


# --- external sign-in (GitHub, OpenID Connect) ---------------------------------------------------

OAUTH_STATE_COOKIE = "odock_oauth_state"
OAUTH_COOKIE_PATH = "/api/auth/oauth"
ProviderName = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")]


class SignInProviderView(BaseModel):
    """A configured external sign-in provider."""

    id: str
    name: str
    login_url: str


@router.get("/auth/oauth/providers", response_model=list[SignInProviderView])
async def sign_in_providers(identity: IdentityDep) -> list[SignInProviderView]:
    """Public: the external sign-in providers this install offers."""
    return [
        SignInProviderView(id=name, name=p.display_name, login_url=f"/api/auth/oauth/{name}/login")
        for name, p in identity.flows.providers.items()
    ]


def _callback_url(request: Request, identity: IdentityDep, provider: str) -> str:
    base = (identity.settings.public_url or str(request.base_url)).rstrip("/")
    return f"{base}/api/auth/oauth/{provider}/callback"


@router.get("/auth/oauth/{provider}/login", status_code=302, response_class=RedirectResponse)
async def oauth_login(
    provider: ProviderName,
    request: Request,
    identity: IdentityDep,
    invite: Annotated[str | None, Query(max_length=200, description="an invitation token to accept")] = None,
) -> RedirectResponse:
    """Public: start signing in with ``provider`` (``oidc`` or ``github``): 302 to the provider."""
    state, url = await identity.flows.start(provider, _callback_url(request, identity, provider), invite)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        OAUTH_STATE_COOKIE,
        state,
        max_age=int(STATE_TTL_SECONDS),
        path=OAUTH_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


@router.get("/auth/oauth/{provider}/callback", response_model=SignedIn)
async def oauth_callback(
    provider: ProviderName,
    request: Request,
    identity: IdentityDep,
    queries: TenancyQueriesDep,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Public: the provider sends the browser back here; signs in and redirects to ``/``.

    Answers JSON (the user and the CSRF token) instead of the redirect when the request
    accepts ``application/json``.
    """
    try:
        if error is not None or code is None or state is None:
            raise SignInFailed(f"the provider did not sign you in ({error or 'no code'})")
        account, invite = await identity.flows.finish(
            provider, code, state, request.cookies.get(OAUTH_STATE_COOKIE)
        )
    except OdockError as failed:
        if not wants_html(request):
            raise
        # A person in a browser: back to the sign-in page, which says what failed (by code only:
        # the page's own words, so a crafted link cannot put text of its choosing there).
        return RedirectResponse(f"/sign-in?failed={failed.code}", status_code=303)
    # Nobody is signed in yet: an account created or joined here is the signer-in's own doing.
    set_actor(AuditActor(kind=f"oauth:{provider}", label=account.email, ip=request_ip(request)))
    user = await identity.sign_in_external(account, invite)
    log.info("user %s signed in through %s", user.id, provider)
    issued = await identity.store.start(
        user.id, ip=request_ip(request), user_agent=request.headers.get("user-agent")
    )
    response: Response
    if "application/json" in request.headers.get("accept", ""):
        body = SignedIn(
            user=await user_view(queries, user), csrf_token=issued.csrf_token, expires_at=issued.expires_at
        )
        response = Response(body.model_dump_json(), media_type="application/json")
    else:
        response = RedirectResponse("/", status_code=302)
    set_session_cookies(request, response, issued, identity.settings.session_ttl_seconds)
    response.delete_cookie(OAUTH_STATE_COOKIE, path=OAUTH_COOKIE_PATH)
    return response
