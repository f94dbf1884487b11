"""What the organisation pages share: the guard of a page that the navigation hides, and the API's routes.

A page hidden from a role's navigation is refused to it as well (typing the address gives the 403
page): :func:`nav_guard` reads the same :data:`~odock.web.console.pages.NAVIGATION` entry, so the
menu and the page cannot disagree. :func:`may` asks the permission table whether to *offer* an
action on one row (the API route the button calls decides). :func:`api_route` finds a route the
API made from one definition (twin lists, policy scopes) so a page calls it like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.routing import APIRoute

from odock.errors import Forbidden, NotFound
from odock.rbac.grant import Actor, Grant, Target
from odock.rbac.permissions import Action, Resource, reach_of
from odock.web.api.deps import ActorDep
from odock.web.console.pages import NAVIGATION

# A plain GET form sends its empty fields ("?q=&role="): a page reads them as "not filtered".
Blank = Literal[""]
TextQuery = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]


def nav_guard(path: str) -> Callable[[Actor], Awaitable[Actor]]:
    """A dependency refusing (403) an actor whose navigation does not show the entry at ``path``."""
    item = next(entry for entry in NAVIGATION if entry.path == path)

    async def guard(actor: ActorDep) -> Actor:
        if reach_of(actor.role, item.resource, item.action) < item.reach:
            raise Forbidden("you are not allowed to do this")
        return actor

    return guard


def may(actor: Actor, resource: Resource, action: Action, target: Target) -> bool:
    """Whether the permission table lets ``actor`` do ``action`` on the row at ``target`` (to offer it)."""
    try:
        Grant.for_actor(actor, resource, action, target.organisation_id).check(target)
    except (Forbidden, NotFound):
        return False
    return True


def api_route(router: APIRouter, name: str) -> Callable[..., Awaitable[Any]]:
    """The endpoint of the API route called ``name`` (its parameters are keywords)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.name == name:
            endpoint: Callable[..., Awaitable[Any]] = route.endpoint
            return endpoint
    raise LookupError(f"no API route named {name!r}")
