"""Routes: models, their pricing, and which API keys may call them.

Pricing is accepted in the stored per-1K shape of spec §3.7 or, with ``"unit": "per_1m_tokens"``,
in USD per 1M tokens (:mod:`odock.admin.pricing`); responses carry both ``pricing`` (stored,
per 1K) and ``pricing_per_1m``. Every change reaches the gateway's caches at once. Grants are
read here (``…/access``) and managed on the API keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, String, cast, or_, select

from odock.admin.models import Capability, ModelType
from odock.admin.pricing import (
    PricingBody,
    PricingPer1KView,
    PricingPer1MView,
    is_empty,
    per_1k_view,
    per_1m_view,
    stored_pricing,
)
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyType
from odock.providers.tables import Model
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.web.api.deps import Permit, RuntimeDep, row_locator
from odock.web.api.fields import IdQuery, JsonObject, Name, RowId
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.search import SearchQuery, matches

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


async def _model_page(
    runtime: Runtime,
    query: Select[Model],
    page: PageParams,
    sort: str,
    filters: ModelFilters,
) -> Page[ModelOut]:
    query = filters.apply(query)
    column = Model.name if sort == "name" else Model.created_at
    async with runtime.sessions() as session:
        rows = list((await session.execute(keyset(query, column, Model.id, page))).scalars())
    return make_page(rows, page, render, lambda m: (getattr(m, sort), m.id))


class ModelFilters(BaseModel):
    """The filters of model lists."""

    q: str | None = None
    provider_id: str | None = None
    type: ModelType | None = None
    capability: Capability | None = None
    enabled: bool | None = None

    def apply(self, query: Select[Model]) -> Select[Model]:
        """``query`` narrowed by every filter given."""
        if self.q:
            query = query.where(matches(self.q, Model.name, Model.slug))
        if self.provider_id:
            query = query.where(Model.provider_id == self.provider_id)
        if self.type:
            query = query.where(Model.type == self.type.value)
        if self.capability:
            # Capabilities are a JSON array of enum words: its text holds the quoted word.
            query = query.where(cast(Model.capabilities, String).like(f'%"{self.capability.value}"%'))
        if self.enabled is not None:
            query = query.where(Model.enabled == self.enabled)
        return query


def model_filters(
    q: SearchQuery = None,
    provider_id: IdQuery = None,
    type: Annotated[ModelType | None, Query()] = None,
    capability: Annotated[Capability | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
) -> ModelFilters:
    """The model-list filters from the query string (use with ``Depends``)."""
    return ModelFilters(q=q, provider_id=provider_id, type=type, capability=capability, enabled=enabled)


Filters = Annotated[ModelFilters, Depends(model_filters)]


@router.get("/admin/models", response_model=Page[ModelOut])
async def list_all_models(
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    filters: Filters,
    organisation_id: IdQuery = None,
    sort: Sort = "created_at",
) -> Page[ModelOut]:
    """Models of every organisation (super admin)."""
    query = select(Model)
    if organisation_id:
        query = query.where(Model.organisation_id == organisation_id)
    return await _model_page(runtime, query, page, sort, filters)


@router.get("/organisations/{organisation_id}/models", response_model=Page[ModelOut])
async def list_models(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    filters: Filters,
    sort: Sort = "created_at",
) -> Page[ModelOut]:
    """The organisation's models."""
    query = select(Model).where(Model.organisation_id == organisation_id)
    return await _model_page(runtime, query, page, sort, filters)


@router.post("/organisations/{organisation_id}/models", status_code=201, response_model=ModelOut)
async def create_model(
    organisation_id: str,
    body: ModelCreate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.CREATE))],
) -> ModelOut:
    """Create a model (409 when the name is taken in the organisation)."""
    grant.check(Target(organisation_id))
    control = runtime.control
    await control.models.check_references(organisation_id, body.provider_id, body.provider_key_id)
    pricing = None if body.pricing is None or is_empty(body.pricing) else stored_pricing(body.pricing)
    model = await control.create_model(
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


async def _load(runtime: Runtime, model_id: str) -> Model:
    async with runtime.sessions() as session:
        model = await session.get(Model, model_id)
    assert model is not None  # located by Permit
    return model


@router.get("/organisations/{organisation_id}/models/{model_id}", response_model=ModelOut)
async def get_model(
    model_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ, locate=_locate))],
) -> ModelOut:
    """One model."""
    return render(await _load(runtime, model_id))


@router.patch("/organisations/{organisation_id}/models/{model_id}", response_model=ModelOut)
async def update_model(
    organisation_id: str,
    model_id: str,
    body: ModelUpdate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.UPDATE, locate=_locate))],
) -> ModelOut:
    """Change a model (the gateway sees it at once)."""
    model = await _load(runtime, model_id)
    given = body.model_fields_set
    provider_id = body.provider_id if "provider_id" in given else model.provider_id
    key_id = body.provider_key_id if "provider_key_id" in given else model.provider_api_key_id
    await runtime.control.models.check_references(organisation_id, provider_id, key_id)
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
    return render(await runtime.control.update_model(model_id, **changes))


@router.put("/organisations/{organisation_id}/models/{model_id}/pricing", response_model=ModelOut)
async def set_pricing(
    model_id: str,
    body: Annotated[PricingBody, Body()],
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.UPDATE, locate=_locate))],
) -> ModelOut:
    """Replace a model's pricing (either shape; ``{}`` clears it); later requests bill at the new rates."""
    pricing = {} if is_empty(body) else stored_pricing(body)
    return render(await runtime.control.update_model(model_id, pricing=pricing))


@router.delete("/organisations/{organisation_id}/models/{model_id}", status_code=204, response_class=Response)
async def delete_model(
    model_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.DELETE, locate=_locate))],
) -> Response:
    """Delete a model and its API-key grants (calls by its name fail with model_not_found at once)."""
    await runtime.control.models.delete(model_id)
    return Response(status_code=204)


@router.get("/organisations/{organisation_id}/models/{model_id}/access", response_model=Page[ModelAccessOut])
async def model_access(
    organisation_id: str,
    model_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ, locate=_locate))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    type: Annotated[ApiKeyType | None, Query()] = None,
) -> Page[ModelAccessOut]:
    """The API keys granted this model that the caller may see (users: their own and their teams')."""
    keys = Grant.for_actor(grant.actor, Resource.API_KEY, Action.READ, organisation_id).scope()
    query: Select[*tuple[Any, ...]] = (
        select(ApiKey, ApiKeyModelAccess)
        .join(ApiKeyModelAccess, ApiKeyModelAccess.api_key_id == ApiKey.id)
        .where(ApiKeyModelAccess.model_id == model_id, ApiKey.organisation_id == organisation_id)
    )
    if keys.team_ids is not None or keys.user_id is not None:
        mine = [ApiKey.user_id == keys.user_id] if keys.user_id else []
        query = query.where(or_(ApiKey.team_id.in_(keys.team_ids or frozenset()), *mine))
    if q:
        query = query.where(matches(q, ApiKey.name))
    if type:
        query = query.where(ApiKey.type == type)
    async with runtime.sessions() as session:
        statement = keyset(query, ApiKeyModelAccess.created_at, ApiKey.id, page)
        rows: list[tuple[ApiKey, ApiKeyModelAccess]] = [(k, a) for k, a in await session.execute(statement)]
    return make_page(rows, page, _render_access, lambda r: (r[1].created_at, r[0].id))


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
