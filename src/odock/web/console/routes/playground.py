"""Page: the playground — pick one of your keys and a model it may call, send a prompt, watch it stream.

The keys offered are those the actor may *use*, which is the API's ``api_key:update`` grant (the
one the playground route checks): the page lists them with that grant's scope, so a USER sees
their own keys and a team manager their teams' keys too. The chat itself is posted by
``static/playground.js`` to ``POST /api/organisations/{org}/apikeys/{id}/playground`` and read as
a stream; the usage record of the call is then read from the usage API by its request id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.keys.model_access import ENDPOINT_MODEL_TYPES
from odock.keys.queries import KeyFilters
from odock.llm.upstream import Endpoint
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit
from odock.web.api.fields import Id
from odock.web.api.lists import paged
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes.api_keys import ApiKeyView, key_target
from odock.web.api.search import SearchQuery
from odock.web.api.services import Keys
from odock.web.console.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/o/{organisation_id}/playground")
async def playground(
    request: Request,
    organisation_id: str,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE))],
    page: Annotated[PageParams, Depends(page_params)],
    key: Annotated[Id | None, Query(description="the key to use")] = None,
    q: SearchQuery = None,
) -> Response:
    """The keys the actor may use (live ones, newest first), and the chosen key's models."""
    usable = KeyFilters(revoked=False, expired=False, q=q)
    listed = await paged(
        lambda keyset: keys.page(grant.scope(), usable, keyset),
        page,
        ApiKeyView.of,
        lambda k: (k.created_at, k.id),
    )
    chosen = next((k for k in listed.items if k.id == key), None)
    if key is not None and chosen is None:
        row = await keys.get(key)  # a key off this page: the same grant decides (404 / 403)
        grant.check(key_target(row))
        chosen = ApiKeyView.of(row)
    elif chosen is None and listed.items:
        chosen = listed.items[0]
    models = await keys.granted_models(chosen.id) if chosen is not None else []
    return render(
        request,
        "playground/index.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        page=listed,
        chosen=chosen,
        # The models the gateway would serve on chat completions (it still decides on each call).
        models=[m for m in models if m.enabled and m.type in ENDPOINT_MODEL_TYPES[Endpoint.CHAT]],
        q=q or "",
    )
