"""Pages: the models list (search, filters, add from the catalogue, add by hand) and a model's detail.

The list calls the models service exactly as ``GET /api/organisations/{id}/models`` does (same
``Permit``, scope and rendering); the catalogue panel calls ``model_catalogue_list``; the detail
page calls ``get_model`` and ``model_access``. Pricing is shown and edited in USD per 1M tokens
(the API converts to and from its stored per-1K rates). Changes go through the REST API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from odock.keys.queries import KeyFilters
from odock.providers.model_service import Capability, ModelFilters, ModelType
from odock.providers.service import ProviderFilters
from odock.rbac.grant import Actor, Grant
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit
from odock.web.api.lists import paged
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes.api_keys import ApiKeyView
from odock.web.api.routes.models import (
    _locate,
    get_model,
    model_access,
    model_catalogue_list,
)
from odock.web.api.routes.models import render as render_model
from odock.web.api.routes.providers import ProviderKeyOut, ProviderOut, list_provider_keys
from odock.web.api.routes.providers import render as render_provider
from odock.web.api.services import Keys, Models, ProviderKeys, Providers
from odock.web.console.pages import can, render
from odock.web.console.routes.deployments import deployments_card
from odock.web.console.routes.lookups import FormText, choice, identifier, search

router = APIRouter(include_in_schema=False)

# The provider choices of a form: the organisation's first providers by name (a select, not a list page).
PROVIDER_CHOICES = 200
KEY_CHOICES = 50


async def provider_choices(providers: Providers, actor: Actor, organisation_id: str) -> list[ProviderOut]:
    """The providers ``actor`` may see in the organisation, by name (none without provider access)."""
    if not can(actor, Resource.PROVIDER, Action.READ):
        return []
    scope = Grant.for_actor(actor, Resource.PROVIDER, Action.READ, organisation_id).scope()
    listed = await paged(
        lambda bound: providers.page(scope, ProviderFilters(sort="name"), bound),
        PageParams(limit=PROVIDER_CHOICES, order="asc"),
        render_provider,
        lambda p: (p.name, p.id),
    )
    return listed.items


async def keys_of_provider(
    keys: ProviderKeys, actor: Actor, organisation_id: str, provider_id: str | None
) -> list[ProviderKeyOut] | None:
    """The provider's active keys first (``None`` when there is no provider or no access to its keys)."""
    if provider_id is None or not can(actor, Resource.PROVIDER_KEY, Action.READ):
        return None
    grant = Grant.for_actor(actor, Resource.PROVIDER_KEY, Action.READ, organisation_id)
    page = PageParams(limit=KEY_CHOICES)
    listed = await list_provider_keys(provider_id, keys, grant, page, q=None, revoked=None)
    return sorted(listed.items, key=lambda k: k.revoked)


@router.get("/o/{organisation_id}/models")
async def models_page(
    request: Request,
    organisation_id: str,
    models: Models,
    providers: Providers,
    provider_keys: ProviderKeys,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: FormText = "",
    provider_id: FormText = "",
    type: FormText = "",
    capability: FormText = "",
    catalogue_provider: FormText = "",
    catalogue_q: FormText = "",
    catalogue_type: FormText = "",
    catalogue_mode: FormText = "new_only",
) -> Response:
    """The organisation's models, and (for those who may create models) the catalogue and the add form."""
    filters = ModelFilters(
        q=search(q),
        provider_id=identifier(provider_id, "provider_id"),
        type=choice(ModelType, type, "type"),
        capability=choice(Capability, capability, "capability"),
    )
    listed = await paged(
        lambda bound: models.page(grant.scope(), filters, bound),
        page,
        render_model,
        lambda m: (m.created_at, m.id),
    )
    choices = await provider_choices(providers, grant.actor, organisation_id)
    importing = next((p for p in choices if p.id == catalogue_provider), None)
    catalogue, importing_keys = None, None
    if importing is not None and can(grant.actor, Resource.MODEL, Action.CREATE):
        catalogue = await model_catalogue_list(
            organisation_id,
            grant,
            provider_type=importing.type,
            q=search(catalogue_q),
            type=choice(ModelType, catalogue_type, "catalogue_type"),
        )
        importing_keys = await keys_of_provider(provider_keys, grant.actor, organisation_id, importing.id)
    query = "&".join(
        f"{name}={value}"
        for name, value in (
            ("q", q),
            ("provider_id", provider_id),
            ("type", type),
            ("capability", capability),
        )
        if value
    )
    return render(
        request,
        "models/index.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        listed=listed,
        providers={p.id: p for p in choices},
        importing=importing,
        importing_keys=[k for k in importing_keys or [] if not k.revoked],
        catalogue=catalogue,
        catalogue_q=catalogue_q or "",
        catalogue_type=catalogue_type,
        catalogue_mode=catalogue_mode,
        filters=filters,
        query=query,
        types=list(ModelType),
        capabilities=list(Capability),
    )


@router.get("/o/{organisation_id}/models/{model_id}")
async def model_page(
    request: Request,
    organisation_id: str,
    model_id: str,
    models: Models,
    providers: Providers,
    keys: Keys,
    provider_keys: ProviderKeys,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ, locate=_locate))],
    page: Annotated[PageParams, Depends(page_params)],
    key_q: FormText = "",
) -> Response:
    """A model: fields, pricing per 1M, switch, deployments, the API keys that may call it, deletion."""
    model = await get_model(model_id, models, grant)
    access = await model_access(organisation_id, model_id, models, grant, page, q=None, type=None)
    granted = {a.api_key_id for a in access.items}
    key_choices: list[ApiKeyView] = []
    if can(grant.actor, Resource.API_KEY, Action.UPDATE):
        # The keys the actor may change (the grant route's own Permit), to offer in the grant form.
        scope = Grant.for_actor(grant.actor, Resource.API_KEY, Action.UPDATE, organisation_id).scope()
        candidates = await paged(
            lambda bound: keys.page(scope, KeyFilters(q=search(key_q), revoked=False), bound),
            PageParams(limit=KEY_CHOICES),
            ApiKeyView.of,
            lambda k: (k.created_at, k.id),
        )
        key_choices = [k for k in candidates.items if k.id not in granted]
    choices = await provider_choices(providers, grant.actor, organisation_id)
    deployments = await deployments_card(
        model,
        choices,
        lambda provider_id: keys_of_provider(provider_keys, grant.actor, organisation_id, provider_id),
    )
    return render(
        request,
        "models/detail.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        model=model,
        deployments=deployments,
        access=access,
        key_choices=key_choices,
        key_q=key_q,
        providers=choices,
        provider_keys=await keys_of_provider(provider_keys, grant.actor, organisation_id, model.provider_id),
        types=list(ModelType),
        capabilities=list(Capability),
    )
