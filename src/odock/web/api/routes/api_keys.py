"""Routes: API keys — list, detail, create (secret once), update, rotate, revoke, grants, routing.

Reach (``docs/rbac.md``): an organisation admin manages every key of the organisation; a team
manager the keys of the teams they manage and their own user keys (and creates only those); a
user their own user keys (and reads the keys of their teams). Rows of another organisation are
404. The secret is in the answer of create and rotate only; lists, details and the rotation
history carry the masked preview.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, false, or_, select

from odock.keys.control import KeyControl, ModelTypeRouting, parse_routing
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyRotation, ApiKeyType
from odock.providers.tables import Model
from odock.rbac.grant import Grant, ListScope, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.web.api.deps import Permit, RuntimeDep, row_locator
from odock.web.api.fields import Expiry, Id, ModelRef, Name, Timezone
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.search import SearchQuery, matches

router = APIRouter(tags=["API keys"])


# --- bodies and views ----------------------------------------------------------------------
class ApiKeyView(BaseModel):
    """An API key as lists and details show it (never its secret)."""

    id: str
    organisation_id: str
    type: ApiKeyType
    name: str
    team_id: str | None
    user_id: str | None
    preview: str = Field(description="masked secret, e.g. sk_ab12…9f3e")
    expires_at: datetime | None
    expired: bool
    timezone: str
    revoked: bool
    revoked_at: datetime | None
    rotation_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, key: ApiKey, now: datetime | None = None) -> ApiKeyView:
        """The view of a stored key."""
        moment = now or datetime.now(UTC)
        return cls(
            id=key.id,
            organisation_id=key.organisation_id,
            type=key.type,
            name=key.name,
            team_id=key.team_id,
            user_id=key.user_id,
            preview=key.key_preview,
            expires_at=key.expires_at,
            expired=key.expires_at is not None and key.expires_at <= moment,
            timezone=key.timezone,
            revoked=key.revoked,
            revoked_at=key.revoked_at,
            rotation_count=key.rotation_count,
            created_at=key.created_at,
            updated_at=key.updated_at,
        )


class IssuedApiKeyView(ApiKeyView):
    """A key with its secret: the answer of create and rotate, the only time the secret is shown."""

    secret: str = Field(description="the full secret; store it now, it is never shown again")


class ApiKeyCreate(BaseModel):
    """A new key: its type and owner (spec §3.3), expiry, timezone and the models it may call."""

    model_config = ConfigDict(extra="forbid")

    type: ApiKeyType = ApiKeyType.ORGANISATION
    name: Name
    team_id: Id | None = Field(default=None, description="TEAM keys: the owning team")
    user_id: Id | None = Field(default=None, description="USER keys: the owning user")
    expires_at: Expiry | None = Field(
        default=None, description="future instant; without a UTC offset, local time in `timezone`"
    )
    timezone: Timezone = Field(
        default="UTC", description="IANA timezone that interprets and shows the expiry"
    )
    models: list[ModelRef] = Field(default_factory=list, max_length=500, description="model names or ids")


class ApiKeyUpdate(BaseModel):
    """Changes to a key: name, expiry (``null`` removes it) and timezone."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    expires_at: Expiry | None = None
    timezone: Timezone | None = None


class RotateBody(BaseModel):
    """A rotation: the new secret's expiry (omitted or ``null``: the key keeps its expiry)."""

    model_config = ConfigDict(extra="forbid")

    expires_at: Expiry | None = None


class RotationView(BaseModel):
    """One rotation of a key (the previous secret only masked)."""

    id: str
    rotated_at: datetime
    previous_preview: str
    previous_expires_at: datetime | None
    new_expires_at: datetime | None
    rotated_by: str | None


class GrantsBody(BaseModel):
    """Models by name or id."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelRef] = Field(max_length=500)


class GrantedModelView(BaseModel):
    """A model a key may call."""

    id: str
    name: str
    slug: str
    type: str
    provider_id: str | None
    enabled: bool


class GrantList(BaseModel):
    """Every model a key may call, by name."""

    items: list[GrantedModelView]


ModelType = Literal[
    "chat", "reasoning", "image", "embeddings", "audio", "moderation", "transcription", "tts", "ocr"
]


class RoutingView(BaseModel):
    """A key's routing policy (spec §9.2), keyed by model type."""

    routing: dict[str, ModelTypeRouting]


# --- helpers ---------------------------------------------------------------------------------
def key_target(key: ApiKey) -> Target:
    """Where a key sits for authorisation: its organisation and owner."""
    return Target(key.organisation_id, team_id=key.team_id, user_id=key.user_id)


locate_key = row_locator(ApiKey, "api_key_id", key_target)


def keys_of(runtime: Runtime) -> KeyControl:
    """The key service over this runtime's control plane."""
    return KeyControl(runtime.control, runtime.sessions, runtime.bus)


def narrowed(query: Select[Any], scope: ListScope, team_col: Any, user_col: Any) -> Select[Any]:
    """``query`` kept to rows whose team is in the scope's teams or whose user is the scope's user."""
    if scope.team_ids is None and scope.user_id is None:
        return query
    conditions = []
    if scope.team_ids:
        conditions.append(team_col.in_(sorted(scope.team_ids)))
    if scope.user_id is not None:
        conditions.append(user_col == scope.user_id)
    return query.where(or_(*conditions) if conditions else false())


class KeyFilters(BaseModel):
    """The filters of the key lists."""

    type: ApiKeyType | None = None
    revoked: bool | None = None
    team_id: str | None = None
    user_id: str | None = None
    expired: bool | None = None
    q: str | None = None


def key_filters(
    type: Annotated[ApiKeyType | None, Query(description="ORGANISATION, TEAM or USER")] = None,
    revoked: Annotated[bool | None, Query()] = None,
    team_id: Annotated[Id | None, Query()] = None,
    user_id: Annotated[Id | None, Query()] = None,
    expired: Annotated[bool | None, Query(description="expiry passed (true) or not (false)")] = None,
    q: SearchQuery = None,
) -> KeyFilters:
    """The filter query parameters of the key lists (``q``: name, masked preview or exact id)."""
    return KeyFilters(type=type, revoked=revoked, team_id=team_id, user_id=user_id, expired=expired, q=q)


def _filtered(query: Select[Any], filters: KeyFilters, now: datetime) -> Select[Any]:
    if filters.type is not None:
        query = query.where(ApiKey.type == filters.type)
    if filters.revoked is not None:
        query = query.where(ApiKey.revoked.is_(filters.revoked))
    if filters.team_id is not None:
        query = query.where(ApiKey.team_id == filters.team_id)
    if filters.user_id is not None:
        query = query.where(ApiKey.user_id == filters.user_id)
    if filters.expired is True:
        query = query.where(ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now)
    elif filters.expired is False:
        query = query.where(or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
    if filters.q:
        query = query.where(or_(matches(filters.q, ApiKey.name, ApiKey.key_preview), ApiKey.id == filters.q))
    return query


async def _key_page(
    runtime: Runtime, query: Select[Any], filters: KeyFilters, params: PageParams
) -> Page[ApiKeyView]:
    now = datetime.now(UTC)
    query = keyset(_filtered(query, filters, now), ApiKey.created_at, ApiKey.id, params)
    async with runtime.sessions() as session:
        rows = list((await session.execute(query)).scalars())
    return make_page(rows, params, lambda k: ApiKeyView.of(k, now), lambda k: (k.created_at, k.id))


async def _grants(runtime: Runtime, key_id: str) -> GrantList:
    query = (
        select(Model)
        .join(ApiKeyModelAccess, ApiKeyModelAccess.model_id == Model.id)
        .where(ApiKeyModelAccess.api_key_id == key_id)
        .order_by(Model.name)
    )
    async with runtime.sessions() as session:
        rows = (await session.execute(query)).scalars()
        return GrantList(items=[_granted(m) for m in rows])


def _granted(model: Model) -> GrantedModelView:
    return GrantedModelView(
        id=model.id,
        name=model.name,
        slug=model.slug,
        type=model.type,
        provider_id=model.provider_id,
        enabled=model.enabled,
    )


KEYS = "/organisations/{organisation_id}/apikeys"
KEY = KEYS + "/{api_key_id}"
Paging = Annotated[PageParams, Depends(page_params)]
Filters = Annotated[KeyFilters, Depends(key_filters)]


# --- routes ----------------------------------------------------------------------------------
@router.get("/admin/apikeys", response_model=Page[ApiKeyView])
async def list_all_keys(
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ))],
    params: Paging,
    filters: Filters,
    organisation_id: Annotated[Id | None, Query()] = None,
) -> Page[ApiKeyView]:
    """Every organisation's keys, newest first (super admin)."""
    query = select(ApiKey)
    if organisation_id is not None:
        query = query.where(ApiKey.organisation_id == organisation_id)
    return await _key_page(runtime, query, filters, params)


@router.get(KEYS, response_model=Page[ApiKeyView])
async def list_keys(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ))],
    params: Paging,
    filters: Filters,
) -> Page[ApiKeyView]:
    """The organisation's keys within the caller's reach, newest first."""
    scope = grant.scope()
    query = select(ApiKey).where(ApiKey.organisation_id == organisation_id)
    query = narrowed(query, scope, ApiKey.team_id, ApiKey.user_id)
    return await _key_page(runtime, query, filters, params)


@router.post(KEYS, status_code=201, response_model=IssuedApiKeyView)
async def create_key(
    organisation_id: str,
    body: ApiKeyCreate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.CREATE))],
) -> IssuedApiKeyView:
    """Issue a key; the answer holds its secret, which is never shown again."""
    grant.check(Target(organisation_id, team_id=body.team_id, user_id=body.user_id))
    issued = await keys_of(runtime).create(
        organisation_id,
        body.name,
        type=body.type,
        team_id=body.team_id,
        user_id=body.user_id,
        expires_at=body.expires_at,
        timezone=body.timezone,
        models=body.models,
    )
    return IssuedApiKeyView(**ApiKeyView.of(issued.key).model_dump(), secret=issued.secret)


@router.get(KEY, response_model=ApiKeyView)
async def get_key(
    api_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
) -> ApiKeyView:
    """One key."""
    return ApiKeyView.of(await runtime.control.api_key(api_key_id))


@router.patch(KEY, response_model=ApiKeyView)
async def update_key(
    api_key_id: str,
    body: ApiKeyUpdate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> ApiKeyView:
    """Rename a key, or change its expiry (future only; ``null`` removes it) or timezone."""
    changes = body.model_dump(exclude_unset=True)
    for field in ("name", "timezone"):
        if field in changes and changes[field] is None:
            del changes[field]
    if not changes:
        return ApiKeyView.of(await runtime.control.api_key(api_key_id))
    return ApiKeyView.of(await keys_of(runtime).update(api_key_id, changes))


@router.post(KEY + "/rotate", response_model=IssuedApiKeyView)
async def rotate_key(
    api_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
    body: Annotated[RotateBody | None, Body()] = None,
) -> IssuedApiKeyView:
    """Give a key a new secret (same id, grants and history); the old secret stops at once."""
    expires_at = body.expires_at if body is not None else None
    issued = await keys_of(runtime).rotate(api_key_id, expires_at=expires_at, rotated_by=grant.actor.email)
    return IssuedApiKeyView(**ApiKeyView.of(issued.key).model_dump(), secret=issued.secret)


@router.post(KEY + "/revoke", response_model=ApiKeyView)
async def revoke_key(
    api_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> ApiKeyView:
    """Revoke a key: the gateway refuses it (401 api_key_revoked) from the next request on."""
    return ApiKeyView.of(await keys_of(runtime).set_revoked(api_key_id, True))


@router.post(KEY + "/unrevoke", response_model=ApiKeyView)
async def unrevoke_key(
    api_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> ApiKeyView:
    """Reinstate a revoked key."""
    return ApiKeyView.of(await keys_of(runtime).set_revoked(api_key_id, False))


@router.get(KEY + "/rotations", response_model=Page[RotationView])
async def list_rotations(
    api_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
    params: Paging,
) -> Page[RotationView]:
    """A key's rotation history, newest first by default."""
    query = select(ApiKeyRotation).where(ApiKeyRotation.api_key_id == api_key_id)
    query = keyset(query, ApiKeyRotation.rotated_at, ApiKeyRotation.id, params)
    async with runtime.sessions() as session:
        rows = list((await session.execute(query)).scalars())
    return make_page(
        rows,
        params,
        lambda r: RotationView(
            id=r.id,
            rotated_at=r.rotated_at,
            previous_preview=r.previous_key_preview,
            previous_expires_at=r.previous_expires_at,
            new_expires_at=r.new_expires_at,
            rotated_by=r.rotated_by,
        ),
        lambda r: (r.rotated_at, r.id),
    )


@router.get(KEY + "/models", response_model=Page[GrantedModelView])
async def list_grants(
    api_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
    params: Paging,
    q: SearchQuery = None,
) -> Page[GrantedModelView]:
    """The models a key may call, by name (``q`` searches name, slug and type)."""
    query = (
        select(Model)
        .join(ApiKeyModelAccess, ApiKeyModelAccess.model_id == Model.id)
        .where(ApiKeyModelAccess.api_key_id == api_key_id)
    )
    if q:
        query = query.where(or_(matches(q, Model.name, Model.slug, Model.type), Model.id == q))
    query = keyset(query, Model.name, Model.id, params)
    async with runtime.sessions() as session:
        rows = list((await session.execute(query)).scalars())
    return make_page(rows, params, _granted, lambda m: (m.name, m.id))


@router.put(KEY + "/models", response_model=GrantList)
async def replace_grants(
    api_key_id: str,
    body: GrantsBody,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> GrantList:
    """The key may call exactly these models (names or ids) from now on."""
    key = await runtime.control.api_key(api_key_id)
    await keys_of(runtime).replace_grants(key, body.models)
    return await _grants(runtime, api_key_id)


@router.post(KEY + "/models", response_model=GrantList)
async def add_grants(
    api_key_id: str,
    body: GrantsBody,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> GrantList:
    """The key may also call these models (names or ids); existing grants stay."""
    key = await runtime.control.api_key(api_key_id)
    await keys_of(runtime).add_grants(key, body.models)
    return await _grants(runtime, api_key_id)


@router.delete(KEY + "/models/{model_id}", status_code=204, response_class=Response)
async def remove_grant(
    api_key_id: str,
    model_id: Id,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> Response:
    """The key may no longer call this model."""
    key = await runtime.control.api_key(api_key_id)
    await keys_of(runtime).remove_grant(key, model_id)
    return Response(status_code=204)


@router.get(KEY + "/routing", response_model=RoutingView)
async def get_routing(
    api_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
) -> RoutingView:
    """A key's routing policy by model type (empty: every call goes direct)."""
    key = await runtime.control.api_key(api_key_id)
    return RoutingView(routing=parse_routing(key.policies.get("routing")))


@router.patch(KEY + "/routing", response_model=RoutingView)
async def update_routing(
    api_key_id: str,
    body: Annotated[dict[ModelType, ModelTypeRouting | None], Body(max_length=9)],
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> RoutingView:
    """Set the routing policy of the model types given (``null`` clears one); others stay."""
    key = await runtime.control.api_key(api_key_id)
    changes: dict[str, Any] = {k: None if p is None else p.model_dump(by_alias=True) for k, p in body.items()}
    routing = await keys_of(runtime).set_routing(key, changes)
    return RoutingView(routing=parse_routing(routing))
