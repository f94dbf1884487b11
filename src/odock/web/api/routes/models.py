"""Routes: models, their pricing, and which API keys may call them.

Pricing is accepted in the stored per-1K shape of spec §3.7 or, with ``"unit": "per_1m_tokens"``,
in USD per 1M tokens (:mod:`odock.web.api.pricing`); responses carry both ``pricing`` (stored,
per 1K) and ``pricing_per_1m``. Every change reaches the gateway's caches at once. Grants are
read here (``…/access``) and managed on the API keys.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from odock.errors import Conflict, NotFound, OdockError, UnprocessableEntity
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyType
from odock.providers.model_catalogue_service import CatalogueModel, model_catalogue
from odock.providers.model_service import AccessFilters, Capability, ModelFilters, ModelService, ModelType
from odock.providers.tables import Model, ProviderType
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit, row_locator
from odock.web.api.fields import PRINTABLE, IdQuery, JsonObject, Name, RowId
from odock.web.api.lists import ListRoute, TwinLists, add_list_routes, paged
from odock.web.api.paging import Page, PageParams, page_params
from odock.web.api.pricing import (
    PricingBody,
    PricingPer1KView,
    PricingPer1M,
    PricingPer1MView,
    is_empty,
    per_1k_view,
    per_1m_view,
    stored_pricing,
)
from odock.web.api.search import SearchQuery
from odock.web.api.services import Models, Providers, models_of

router = APIRouter(tags=["models"])

_locate = row_locator(Model, "model_id", lambda m: Target(m.organisation_id))
Capabilities = Annotated[list[Capability], Field(max_length=len(Capability))]
Sort = Annotated[Literal["created_at", "name"], Query()]


class ModelOut(BaseModel):
    """A model clients call by ``name``; sent upstream as ``slug``."""

    id: str
    organisation_id: str
    name: str
    slug: str
    type: str
    capabilities: list[str]
    provider_id: str | None
    provider_key_id: str | None
    config: dict[str, Any]
    policies: dict[str, Any]
    pricing: PricingPer1KView | None
    pricing_per_1m: PricingPer1MView | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class ModelCreate(BaseModel):
    """A new model; ``slug`` defaults to ``name``; pricing in either shape."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    slug: Name | None = None
    type: ModelType = ModelType.CHAT
    capabilities: Capabilities = Field(default_factory=list)
    provider_id: RowId | None = None
    provider_key_id: RowId | None = None
    config: JsonObject = Field(default_factory=dict)
    pricing: PricingBody | None = None
    enabled: bool = True


class ModelUpdate(BaseModel):
    """Changes to a model; ``provider_id``/``provider_key_id: null`` detach them. Pricing: PUT …/pricing."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    slug: Name | None = None
    type: ModelType | None = None
    capabilities: Capabilities | None = None
    provider_id: RowId | None = None
    provider_key_id: RowId | None = None
    config: JsonObject | None = None
    enabled: bool | None = None


class ModelAccessOut(BaseModel):
    """An API key granted this model."""

    api_key_id: str
    name: str
    type: ApiKeyType
    team_id: str | None
    user_id: str | None
    key_preview: str
    revoked: bool
    expires_at: datetime | None
    granted_at: datetime


def render(model: Model) -> ModelOut:
    """The API view of a model, pricing in both units."""
    pricing = dict(model.pricing or {})
    return ModelOut(
        id=model.id,
        organisation_id=model.organisation_id,
        name=model.name,
        slug=model.slug,
        type=model.type,
        capabilities=list(model.capabilities or []),
        provider_id=model.provider_id,
        provider_key_id=model.provider_api_key_id,
        config=dict(model.config or {}),
        policies=dict(model.policies or {}),
        pricing=per_1k_view(pricing),
        pricing_per_1m=per_1m_view(pricing),
        enabled=model.enabled,
        created_at=model.created_at,
        updated_at=model.updated_at,
    )


def model_filters(
    q: SearchQuery = None,
    provider_id: IdQuery = None,
    type: Annotated[ModelType | None, Query()] = None,
    capability: Annotated[Capability | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
) -> ModelFilters:
    """The model-list filters from the query string (use with ``Depends``)."""
    return ModelFilters(q=q, provider_id=provider_id, type=type, capability=capability, enabled=enabled)


def model_list(
    filters: Annotated[ModelFilters, Depends(model_filters)],
    organisation_id: IdQuery = None,
    sort: Sort = "created_at",
) -> ModelFilters:
    """The model-list filters and sort (``organisation_id``: the admin list's filter)."""
    return replace(filters, sort=sort)


add_list_routes(
    router,
    TwinLists(
        resource=Resource.MODEL,
        service=models_of,
        wanted=model_list,
        fetch=ModelService.page,
        render=render,
        key=lambda m, wanted: (getattr(m, wanted.sort), m.id),
        item=ModelOut,
        everywhere=ListRoute(
            "/admin/models", "list_all_models", "Models of every organisation (super admin)."
        ),
        organisation=ListRoute(
            "/organisations/{organisation_id}/models", "list_models", "The organisation's models."
        ),
    ),
)


class CatalogueModelOut(BaseModel):
    """A model of the shipped catalogue, priced in USD per 1M tokens."""

    name: str
    providers: list[ProviderType]
    type: str
    capabilities: list[str]
    context_length: int
    input_per_1m: Decimal
    output_per_1m: Decimal | None
    cached_input_per_1m: Decimal | None
    cached_input_discount_percent: Decimal
    pricing: dict[str, Any] = Field(description="the pricing body an import stores (unit per_1m_tokens)")


class ModelCatalogueOut(BaseModel):
    """The shipped model catalogue, narrowed to a provider type when one is asked for."""

    prices_as_of: str
    provider_types: list[ProviderType]
    items: list[CatalogueModelOut]


class ModelImport(BaseModel):
    """Catalogue models to create for one of the organisation's providers, at the catalogue's prices."""

    model_config = ConfigDict(extra="forbid")

    provider_id: RowId
    provider_key_id: RowId | None = None
    models: list[Name] = Field(min_length=1, max_length=200, description="catalogue model names")
    mode: Literal["new_only", "all", "existing_only"] = Field(
        "new_only",
        description="new_only: create missing models, skip existing ones; all: also set the catalogue's "
        "pricing on existing ones; existing_only: only set the pricing of existing ones",
    )
    name_suffix: str | None = Field(
        default=None,
        max_length=50,
        pattern=PRINTABLE,
        description="appended to each name to add variants of existing models (slug: the catalogue name)",
    )


class ImportResult(BaseModel):
    """What the import did with one name: created, skipped (exists / absent), updated (pricing) or failed."""

    name: str
    status: Literal["created", "skipped", "updated", "failed"]
    model_id: str | None = None
    message: str | None = None


class ImportResults(BaseModel):
    """The per-name results of an import, in the order asked."""

    items: list[ImportResult]


def _catalogue_item(entry: CatalogueModel) -> CatalogueModelOut:
    prices = entry.price_per_1m
    return CatalogueModelOut(
        name=entry.name,
        providers=list(entry.providers),
        type=entry.type.value,
        capabilities=[c.value for c in entry.capabilities],
        context_length=entry.context_length,
        input_per_1m=prices.input,
        output_per_1m=prices.output,
        cached_input_per_1m=prices.cached_input,
        cached_input_discount_percent=entry.cached_input_discount_percent,
        pricing=entry.pricing_per_1m(),
    )


@router.get("/organisations/{organisation_id}/models/catalogue", response_model=ModelCatalogueOut)
async def model_catalogue_list(
    organisation_id: str,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ))],
    provider_type: Annotated[ProviderType | None, Query()] = None,
    q: SearchQuery = None,
    type: Annotated[ModelType | None, Query()] = None,
) -> ModelCatalogueOut:
    """The models the shipped catalogue knows (``q``: part of the name), with list prices per 1M tokens."""
    catalogue = model_catalogue()
    entries = [
        e
        for e in catalogue.for_provider(provider_type)
        if (not q or q.lower() in e.name.lower()) and (type is None or e.type is type)
    ]
    return ModelCatalogueOut(
        prices_as_of=catalogue.prices_as_of,
        provider_types=catalogue.provider_types,
        items=[_catalogue_item(e) for e in entries],
    )


@router.post("/organisations/{organisation_id}/models/import", response_model=ImportResults)
async def import_models(
    organisation_id: str,
    body: ModelImport,
    models: Models,
    providers: Providers,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.CREATE))],
) -> ImportResults:
    """Create catalogue models for a provider, priced from the catalogue; one result per name."""
    grant.check(Target(organisation_id))
    try:
        provider = await providers.get(body.provider_id)
    except NotFound:
        provider = None
    # An unknown id and another organisation's id get the same answer: nothing leaks.
    if provider is None or provider.organisation_id != organisation_id:
        raise UnprocessableEntity("no such provider in this organisation", param="provider_id")
    catalogue = model_catalogue()
    results = []
    for name in dict.fromkeys(body.models):
        entry = catalogue.find(ProviderType(provider.type), name)
        if entry is None:
            message = f"not in the catalogue for {provider.type}"
            results.append(ImportResult(name=name, status="failed", message=message))
            continue
        results.append(await _import_one(models, organisation_id, entry, body))
    return ImportResults(items=results)


async def _import_one(
    models: ModelService, organisation_id: str, entry: CatalogueModel, body: ModelImport
) -> ImportResult:
    pricing = stored_pricing(PricingPer1M.model_validate(entry.pricing_per_1m()))
    name = entry.name + (body.name_suffix or "")
    try:
        if body.mode == "existing_only":
            return await _reprice(models, organisation_id, name, pricing)
        model = await models.create(
            organisation_id,
            name,
            slug=entry.name,
            type=entry.type.value,
            capabilities=[c.value for c in entry.capabilities],
            provider_id=body.provider_id,
            provider_key_id=body.provider_key_id,
            config={"context_length": entry.context_length},
            pricing=pricing,
        )
    except Conflict:
        if body.mode == "all":
            return await _reprice(models, organisation_id, name, pricing)
        existing = await models.named(organisation_id, name)
        return ImportResult(name=name, status="skipped", model_id=existing.id, message="exists")
    except OdockError as error:
        return ImportResult(name=name, status="failed", message=error.message)
    return ImportResult(name=name, status="created", model_id=model.id)


async def _reprice(
    models: ModelService, organisation_id: str, name: str, pricing: dict[str, Any]
) -> ImportResult:
    try:
        existing = await models.named(organisation_id, name)
    except NotFound:
        return ImportResult(name=name, status="skipped", message="not in the organisation")
    await models.update(existing.id, pricing=pricing)
    return ImportResult(name=name, status="updated", model_id=existing.id)


@router.post("/organisations/{organisation_id}/models", status_code=201, response_model=ModelOut)
async def create_model(
    organisation_id: str,
    body: ModelCreate,
    models: Models,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.CREATE))],
) -> ModelOut:
    """Create a model (409 when the name is taken in the organisation)."""
    grant.check(Target(organisation_id))
    pricing = None if body.pricing is None or is_empty(body.pricing) else stored_pricing(body.pricing)
    model = await models.create(
        organisation_id,
        body.name,
        slug=body.slug,
        type=body.type.value,
        capabilities=list(dict.fromkeys(c.value for c in body.capabilities)),
        provider_id=body.provider_id,
        provider_key_id=body.provider_key_id,
        config=body.config,
        pricing=pricing,
        enabled=body.enabled,
    )
    return render(model)


@router.get("/organisations/{organisation_id}/models/{model_id}", response_model=ModelOut)
async def get_model(
    model_id: str,
    models: Models,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ, locate=_locate))],
) -> ModelOut:
    """One model."""
    return render(await models.get(model_id))


@router.patch("/organisations/{organisation_id}/models/{model_id}", response_model=ModelOut)
async def update_model(
    model_id: str,
    body: ModelUpdate,
    models: Models,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.UPDATE, locate=_locate))],
) -> ModelOut:
    """Change a model (the gateway sees it at once)."""
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    for field in ("name", "slug", "config", "enabled"):
        if getattr(body, field) is not None:
            changes[field] = getattr(body, field)
    if body.type is not None:
        changes["type"] = body.type.value
    if body.capabilities is not None:
        changes["capabilities"] = list(dict.fromkeys(c.value for c in body.capabilities))
    if "provider_id" in given:
        changes["provider_id"] = body.provider_id
    if "provider_key_id" in given:
        changes["provider_api_key_id"] = body.provider_key_id
    return render(await models.update(model_id, **changes))


@router.put("/organisations/{organisation_id}/models/{model_id}/pricing", response_model=ModelOut)
async def set_pricing(
    model_id: str,
    body: Annotated[PricingBody, Body()],
    models: Models,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.UPDATE, locate=_locate))],
) -> ModelOut:
    """Replace a model's pricing (either shape; ``{}`` clears it); later requests bill at the new rates."""
    pricing = {} if is_empty(body) else stored_pricing(body)
    return render(await models.update(model_id, pricing=pricing))


@router.delete("/organisations/{organisation_id}/models/{model_id}", status_code=204, response_class=Response)
async def delete_model(
    model_id: str,
    models: Models,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.DELETE, locate=_locate))],
) -> Response:
    """Delete a model and its API-key grants (calls by its name fail with model_not_found at once)."""
    await models.delete(model_id)
    return Response(status_code=204)


@router.get("/organisations/{organisation_id}/models/{model_id}/access", response_model=Page[ModelAccessOut])
async def model_access(
    organisation_id: str,
    model_id: str,
    models: Models,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ, locate=_locate))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    type: Annotated[ApiKeyType | None, Query()] = None,
) -> Page[ModelAccessOut]:
    """The API keys granted this model that the caller may see (users: their own and their teams')."""
    keys = Grant.for_actor(grant.actor, Resource.API_KEY, Action.READ, organisation_id).scope()
    filters = AccessFilters(q=q, type=type)
    return await paged(
        lambda bound: models.access_page(model_id, keys, filters, bound),
        page,
        _render_access,
        lambda r: (r[1].created_at, r[0].id),
    )


def _render_access(row: tuple[ApiKey, ApiKeyModelAccess]) -> ModelAccessOut:
    key, access = row
    return ModelAccessOut(
        api_key_id=key.id,
        name=key.name,
        type=key.type,
        team_id=key.team_id,
        user_id=key.user_id,
        key_preview=key.key_preview,
        revoked=key.revoked,
        expires_at=key.expires_at,
        granted_at=access.created_at,
    )
