"""The generic paged list of the control-plane API, and the twin list routes made from one definition.

Every list is the same four steps: the page wanted (``limit``/``cursor``/``order``, the cursor
decoded into a keyset bound), the service's page of rows in the caller's reach, one row over the
limit telling whether a next cursor is due, and each row rendered. :func:`paged` is those steps.

Several resources are listed twice: across organisations for the super admin
(``/admin/<things>?organisation_id=…``) and within one organisation (``/organisations/{id}/<things>``,
narrowed to the caller's reach). :func:`add_list_routes` registers both from one
:class:`TwinLists`, so the two routes cannot drift apart. The parameters of ``TwinLists.wanted``
become the routes' own query parameters (its ``organisation_id`` is the admin route's filter and
the other route's path), so each route's OpenAPI operation stays as it was written by hand.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends

from odock.db.keyset import KeysetPage
from odock.rbac.grant import Grant, ListScope
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit
from odock.web.api.made import add_made_route, param
from odock.web.api.paging import Page, PageParams, keyset_page, make_page, page_params

Row = TypeVar("Row")
Item = TypeVar("Item")
Service = TypeVar("Service")
Wanted = TypeVar("Wanted")


async def paged(
    fetch: Callable[[KeysetPage], Awaitable[Sequence[Row]]],
    params: PageParams,
    render: Callable[[Row], Item],
    key: Callable[[Row], tuple[object, str]],
) -> Page[Item]:
    """One page of a list: ``fetch`` the rows of the page asked for, render them, add the next cursor."""
    return make_page(await fetch(keyset_page(params)), params, render, key)


@dataclass(frozen=True)
class ListRoute:
    """One of the twin routes: its path, operation name and description."""

    path: str
    name: str
    doc: str


@dataclass(frozen=True)
class TwinLists(Generic[Service, Wanted, Row, Item]):
    """A resource listed across organisations and within one, from the same service and filters."""

    resource: Resource
    service: Callable[..., Service]
    wanted: Callable[..., Wanted]
    fetch: Callable[[Service, ListScope, Wanted, KeysetPage], Awaitable[Sequence[Row]]]
    render: Callable[[Row], Item]
    key: Callable[[Row, Wanted], tuple[object, str]]
    item: type[Item]
    everywhere: ListRoute
    organisation: ListRoute


def add_list_routes(router: APIRouter, lists: TwinLists[Any, Any, Any, Any]) -> None:
    """Register the admin (every organisation) and the organisation list routes of ``lists``."""
    for route, in_path in ((lists.everywhere, False), (lists.organisation, True)):
        add_made_route(
            router,
            "GET",
            route.path,
            name=route.name,
            doc=route.doc,
            call=_lister(lists, in_path=in_path),
            parameters=_parameters(lists, in_path=in_path),
            response_model=Page[lists.item],  # type: ignore[name-defined]
        )


def _lister(lists: TwinLists[Any, Any, Any, Any], *, in_path: bool) -> Callable[..., Awaitable[Page[Any]]]:
    async def list_rows(
        service: Any, grant: Grant, params: PageParams, organisation_id: str | None, **wanted: Any
    ) -> Page[Any]:
        # In the organisation's route the grant narrows to the caller's reach there; the admin
        # route is the super admin's, narrowed only by the organisation asked for.
        scope = grant.scope() if in_path else ListScope(organisation_id)
        filters = lists.wanted(**wanted)
        return await paged(
            lambda page: lists.fetch(service, scope, filters, page),
            params,
            lists.render,
            lambda row: lists.key(row, filters),
        )

    return list_rows


def _parameters(lists: TwinLists[Any, Any, Any, Any], *, in_path: bool) -> list[inspect.Parameter]:
    """The service, the grant, the page, then ``wanted``'s own (``organisation_id``: path or filter)."""
    parameters = [
        param("service", Annotated[Any, Depends(lists.service)]),
        param("grant", Annotated[Grant, Depends(Permit(lists.resource, Action.READ))]),
        param("params", Annotated[PageParams, Depends(page_params)]),
    ]
    for wanted in inspect.signature(lists.wanted, eval_str=True).parameters.values():
        if wanted.name == "organisation_id" and in_path:
            wanted = wanted.replace(annotation=str, default=inspect.Parameter.empty)
        parameters.append(param(wanted.name, wanted.annotation, wanted.default))
    return parameters
