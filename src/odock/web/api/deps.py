"""Request dependencies of the control-plane API: the runtime, the actor, and route permissions.

Every route but the public ones (sign-in, invitation acceptance, the OpenAPI document) declares
``Depends(Permit(resource, action))``; the generated RBAC test finds those declarations on the
routes and checks each against the permission table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from odock.audit.context import AuditActor, set_actor
from odock.errors import NotFound, Unauthorized
from odock.identity.actors import actor_from_admin_token
from odock.identity.secrets import ADMIN_TOKEN_PREFIX
from odock.ids import accept_request_id
from odock.rbac.grant import Actor, Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
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


async def current_actor(request: Request) -> Actor:
    """The signed-in caller (admin bearer token or session cookie), or 401."""
    runtime = get_runtime(request)
    header = request.headers.get("authorization", "")
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() == "bearer" and raw.startswith(ADMIN_TOKEN_PREFIX):
        actor = await actor_from_admin_token(runtime.sessions, raw)
        kind = "token"
    else:
        raise Unauthorized("sign in, or send a personal admin token as 'Authorization: Bearer odk_admin_…'")
    request.state.actor = actor
    set_actor(
        AuditActor(
            kind=kind,
            label=actor.email,
            user_id=actor.user_id,
            ip=request_ip(request),
            request_id=accept_request_id(request.headers.get("x-request-id")),
        )
    )
    return actor


ActorDep = Annotated[Actor, Depends(current_actor)]


Locator = Callable[[Runtime, Mapping[str, str]], Awaitable[Target | None]]
"""Finds where the row named by a route's path parameters sits (``None``: no such row)."""

_Row = TypeVar("_Row")


def row_locator(table: type[_Row], param: str, target: Callable[[_Row], Target]) -> Locator:
    """A :data:`Locator` that loads ``table`` by the path parameter ``param``."""

    async def locate(runtime: Runtime, params: Mapping[str, str]) -> Target | None:
        async with runtime.sessions() as session:
            row: Any = await session.get(table, params[param])
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
