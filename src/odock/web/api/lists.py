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
from odock.web.api.paging import Page, PageParams, decode_cursor, make_page, page_params

Row = TypeVar("Row")
Item = TypeVar("Item")
Service = TypeVar("Service")
Wanted = TypeVar("Wanted")


def keyset_page(params: PageParams) -> KeysetPage:
    """The keyset bound of the page the query parameters ask for (422 for a foreign cursor)."""
    after = decode_cursor(params.cursor) if params.cursor else None
    return KeysetPage(limit=params.limit, descending=params.order == "desc", after=after)


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
        router.add_api_route(
            route.path,
            _endpoint(lists, route, in_path=in_path),
            methods=["GET"],
            name=route.name,
            response_model=Page[lists.item],  # type: ignore[name-defined]
        )


def _endpoint(lists: TwinLists[Any, Any, Any, Any], route: ListRoute, *, in_path: bool) -> Callable[..., Any]:
    async def endpoint(
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

    endpoint.__doc__ = route.doc
    endpoint.__signature__ = _signature(lists, in_path=in_path)  # type: ignore[attr-defined]
    return endpoint


def _signature(lists: TwinLists[Any, Any, Any, Any], *, in_path: bool) -> inspect.Signature:
    """The endpoint's parameters: the service, the grant, the page, then ``wanted``'s own."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    permit = Permit(lists.resource, Action.READ)
    parameters = [
        inspect.Parameter("service", keyword, annotation=Annotated[Any, Depends(lists.service)]),
        inspect.Parameter("grant", keyword, annotation=Annotated[Grant, Depends(permit)]),
        inspect.Parameter("params", keyword, annotation=Annotated[PageParams, Depends(page_params)]),
    ]
    for parameter in inspect.signature(lists.wanted, eval_str=True).parameters.values():
        if parameter.name == "organisation_id" and in_path:
            parameter = parameter.replace(annotation=str, default=inspect.Parameter.empty)
        parameters.append(parameter.replace(kind=keyword))
    return inspect.Signature(parameters)
