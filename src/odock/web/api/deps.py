"""Request dependencies of the control-plane API: the runtime, the actor, and route permissions.

Every route but the public ones (sign-in, invitation acceptance, the OpenAPI document) declares
``Depends(Permit(resource, action))``; the generated RBAC test finds those declarations on the
routes and checks each against the permission table.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from odock.audit.context import AuditActor, set_actor
from odock.errors import CsrfFailed, NotFound, PasswordChangeRequired, Unauthorized
from odock.identity.actors import Credential, actor_for_user, user_from_admin_token
from odock.identity.secrets import ADMIN_TOKEN_PREFIX
from odock.identity.service import Identity
from odock.ids import accept_request_id
from odock.keys.stage import bearer_token
from odock.rbac.grant import Actor, Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.tenancy.tables import User
from odock.web.client_ip import client_ip


def get_runtime(request: Request) -> Runtime:
    """The runtime of this process (engine, caches, control plane services)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def request_ip(request: Request) -> str | None:
    """The caller's address, honouring forwarded headers from trusted proxies only."""
    peer = request.client.host if request.client else None
    return client_ip(peer, dict(request.headers), request.app.state.trusted_proxies)


SESSION_COOKIE = "odock_session"
CSRF_COOKIE = "odock_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What an account that must change its password may still do (the API enforces it, not a UI).
_BEFORE_PASSWORD_CHANGE = frozenset(
    {("GET", "/api/auth/session"), ("POST", "/api/auth/password"), ("POST", "/api/auth/logout")}
)


def wants_html(request: Request) -> bool:
    """Whether the caller is a browser asking for a page (``Accept`` prefers HTML to JSON)."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def identity_of(request: Request) -> Identity:
    """The identity services of this process (built with the API app, see ``create_api``)."""
    identity: Identity = request.app.state.identity
    return identity


IdentityDep = Annotated[Identity, Depends(identity_of)]


async def current_credential(request: Request) -> Credential:
    """Who sent the request, by admin bearer token or session cookie (any account status), or 401.

    A cookie-authenticated write must carry the session's CSRF token in ``X-CSRF-Token``
    (403 ``csrf_failed``); a bearer token needs none (browsers never attach it on their own).
    """
    raw = bearer_token(request.headers.get("authorization"))
    if raw is not None and raw.startswith(ADMIN_TOKEN_PREFIX):
        credential = await user_from_admin_token(get_runtime(request).sessions, raw)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        resolved = await identity_of(request).store.resolve(cookie)
        if request.method not in _SAFE_METHODS and not resolved.csrf_matches(
            request.headers.get(CSRF_HEADER)
        ):
            raise CsrfFailed()
        credential = Credential(resolved.user, session=resolved.session)
    else:
        raise Unauthorized("sign in, or send a personal admin token as 'Authorization: Bearer odk_admin_…'")
    request.state.credential = credential
    _attribute(request, credential.user, "token" if credential.token_id else "user")
    return credential


CredentialDep = Annotated[Credential, Depends(current_credential)]


async def current_actor(request: Request, credential: CredentialDep) -> Actor:
    """The signed-in, active caller (401 not signed in, 403 not active or password change due)."""
    user = credential.user
    if user.must_change_password and (request.method, request.url.path) not in _BEFORE_PASSWORD_CHANGE:
        raise PasswordChangeRequired()
    async with get_runtime(request).sessions() as session:
        actor = await actor_for_user(session, user, **credential.via)
    request.state.actor = actor
    return actor


def _attribute(request: Request, user: User, kind: str) -> None:
    set_actor(
        AuditActor(
            kind=kind,
            label=user.email,
            user_id=user.id,
            ip=request_ip(request),
            request_id=_request_id(request),
        )
    )


def _request_id(request: Request) -> str:
    """The id the answer carries (:mod:`odock.web.api.request_ids`), so the audit event matches it."""
    answered = getattr(request.state, "request_id", None)
    return answered if isinstance(answered, str) else accept_request_id(request.headers.get("x-request-id"))


ActorDep = Annotated[Actor, Depends(current_actor)]


Locator = Callable[[Runtime, Mapping[str, str]], Awaitable[Target | None]]
"""Finds where the row named by a route's path parameters sits (``None``: no such row)."""

_Row = TypeVar("_Row")
_ROW_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def row_locator(table: type[_Row], param: str, target: Callable[[_Row], Target]) -> Locator:
    """A :data:`Locator` that loads ``table`` by the path parameter ``param``."""

    async def locate(runtime: Runtime, params: Mapping[str, str]) -> Target | None:
        row_id = params[param]
        if not _ROW_ID.fullmatch(row_id):
            return None  # cannot name a row: no query with bytes the database may refuse
        async with runtime.sessions() as session:
            row: Any = await session.get(table, row_id)
        return None if row is None else target(row)

    return locate


class Permit:
    """Route dependency: the actor's :class:`Grant` for ``(resource, action)`` in the path's organisation.

    With ``locate``, the row the path names is found and checked against the grant here, before
    the body is read: every authorisation decision of a route happens in this one dependency
    (an unknown row, or one of another organisation, is 404; one outside the grant is 403).
    ``personal`` routes (``/api/auth/*``) act in the actor's own organisation.
    """

    def __init__(
        self,
        resource: Resource,
        action: Action,
        *,
        locate: Locator | None = None,
        personal: bool = False,
    ) -> None:
        self.resource = resource
        self.action = action
        self.locate = locate
        self.personal = personal

    async def __call__(self, request: Request, actor: ActorDep) -> Grant:
        organisation_id = request.path_params.get("organisation_id")
        grant = Grant.for_actor(actor, self.resource, self.action, organisation_id, personal=self.personal)
        if self.locate is not None:
            target = await self.locate(get_runtime(request), request.path_params)
            if target is None:
                raise NotFound(f"{self.resource.value.replace('_', ' ')} not found")
            grant.check(target)
        return grant

    def __repr__(self) -> str:
        return f"Permit({self.resource.value}, {self.action.value})"
