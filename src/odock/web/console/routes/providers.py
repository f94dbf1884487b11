"""Pages: the provider catalogue (activate a provider type) and a provider's detail with its keys.

Each view calls the API route it mirrors (same ``Permit``, same service): the catalogue page
calls ``provider_catalogue`` and lists the organisation's providers; the detail page calls
``get_provider``, ``list_provider_keys`` and ``encryption_key``. Every change is made by the
browser through the REST API; a provider key is encrypted in the browser (``static/envelope.js``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.providers.model_service import ModelFilters
from odock.providers.service import ProviderFilters
from odock.providers.tables import ProviderType
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit
from odock.web.api.lists import paged
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes.models import render as render_model
from odock.web.api.routes.providers import (
    _locate_provider,
    encryption_key,
    get_provider,
    list_provider_keys,
    provider_catalogue,
)
from odock.web.api.routes.providers import render as render_provider
from odock.web.api.services import Decrypter, Models, ProviderKeys, Providers
from odock.web.console.pages import can, render
from odock.web.console.routes.lookups import FormText

router = APIRouter(include_in_schema=False)

PROVIDER_MODELS = 20  # shown on a provider's page

Show = Literal["all", "active", "available"]


@router.get("/o/{organisation_id}/providers")
async def providers_page(
    request: Request,
    organisation_id: str,
    providers: Providers,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: FormText = "",
    show: Annotated[Show, Query()] = "all",
    activate: Annotated[ProviderType | None, Query()] = None,
) -> Response:
    """The catalogue of provider types as cards (Activate / Configure), and the organisation's providers."""
    catalogue = await provider_catalogue(organisation_id, providers, grant)
    wanted = q.strip().lower()
    cards = [
        entry
        for entry in catalogue
        if (not wanted or wanted in entry.label.lower() or wanted in entry.type.value.lower())
        and (show != "active" or entry.provider_id is not None)
        and (show != "available" or entry.provider_id is None)
    ]
    activating = next((entry for entry in catalogue if entry.type == activate), None)
    listed = await paged(
        lambda bound: providers.page(grant.scope(), ProviderFilters(), bound),
        page,
        render_provider,
        lambda p: (p.created_at, p.id),
    )
    return render(
        request,
        "providers/index.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        cards=cards,
        activating=activating,
        listed=listed,
        q=q,
        show=show,
    )


@router.get("/o/{organisation_id}/providers/{provider_id}")
async def provider_page(
    request: Request,
    organisation_id: str,
    provider_id: str,
    providers: Providers,
    keys: ProviderKeys,
    models: Models,
    decrypter: Decrypter,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.READ, locate=_locate_provider))],
    page: Annotated[PageParams, Depends(page_params)],
) -> Response:
    """A provider's settings (base URL, timeout, switch, config) and its keys (masked)."""
    provider = await get_provider(provider_id, providers, grant)
    provider_keys, public_key = None, None
    if can(grant.actor, Resource.PROVIDER_KEY, Action.READ):
        # One Permit per route (the RBAC matrix reads it): the keys get their own grant, as in their route.
        key_grant = Grant.for_actor(grant.actor, Resource.PROVIDER_KEY, Action.READ, organisation_id)
        provider_keys = await list_provider_keys(provider_id, keys, key_grant, page, q=None, revoked=None)
        public_key = await encryption_key(organisation_id, decrypter, key_grant)
    # The provider's models (the first page; the Models page lists them all, filtered by provider).
    model_scope = Grant.for_actor(grant.actor, Resource.MODEL, Action.READ, organisation_id).scope()
    provider_models = await paged(
        lambda bound: models.page(model_scope, ModelFilters(provider_id=provider_id), bound),
        PageParams(limit=PROVIDER_MODELS),
        render_model,
        lambda m: (m.created_at, m.id),
    )
    return render(
        request,
        "providers/detail.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        provider=provider,
        keys=provider_keys,
        encryption=public_key,
        models=provider_models,
    )
