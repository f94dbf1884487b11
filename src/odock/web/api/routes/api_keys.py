"""Routes: API keys — list, detail, create (secret once), update, rotate, revoke, grants, routing.

Reach (``docs/rbac.md``): an organisation admin manages every key of the organisation; a team
manager the keys of the teams they manage and their own user keys (and creates only those); a
user their own user keys (and reads the keys of their teams). Rows of another organisation are
404. The secret is in the answer of create and rotate only; lists, details and the rotation
history carry the masked preview.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from odock.keys.queries import KeyFilters
from odock.keys.routing import ModelTypeRouting, parse_routing
from odock.keys.service import KeyService
from odock.keys.tables import ApiKey, ApiKeyRotation, ApiKeyType
from odock.providers.tables import Model
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit, row_locator
from odock.web.api.fields import Expiry, Id, ModelRef, Name, Timezone
from odock.web.api.lists import ListRoute, TwinLists, add_list_routes, paged
from odock.web.api.made import add_made_route, param
from odock.web.api.paging import Page, PageParams, page_params
from odock.web.api.search import SearchQuery
from odock.web.api.services import Keys, keys_of

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


def _rotation(r: ApiKeyRotation) -> RotationView:
    return RotationView(
        id=r.id,
        rotated_at=r.rotated_at,
        previous_preview=r.previous_key_preview,
        previous_expires_at=r.previous_expires_at,
        new_expires_at=r.new_expires_at,
        rotated_by=r.rotated_by,
    )


def _granted(model: Model) -> GrantedModelView:
    return GrantedModelView(
        id=model.id,
        name=model.name,
        slug=model.slug,
        type=model.type,
        provider_id=model.provider_id,
        enabled=model.enabled,
    )


async def _grants(keys: KeyService, key_id: str) -> GrantList:
    return GrantList(items=[_granted(m) for m in await keys.granted_models(key_id)])


def _issued(issued_key: ApiKey, secret: str) -> IssuedApiKeyView:
    return IssuedApiKeyView(**ApiKeyView.of(issued_key).model_dump(), secret=secret)


def key_list_filters(
    filters: Annotated[KeyFilters, Depends(key_filters)],
    organisation_id: Annotated[Id | None, Query()] = None,
) -> KeyFilters:
    """The key-list filters (``organisation_id``: the admin list's, see :mod:`odock.web.api.lists`)."""
    return filters


KEYS = "/organisations/{organisation_id}/apikeys"
KEY = KEYS + "/{api_key_id}"
Paging = Annotated[PageParams, Depends(page_params)]

add_list_routes(
    router,
    TwinLists(
        resource=Resource.API_KEY,
        service=keys_of,
        wanted=key_list_filters,
        fetch=KeyService.page,
        render=ApiKeyView.of,
        key=lambda k, _wanted: (k.created_at, k.id),
        item=ApiKeyView,
        everywhere=ListRoute(
            "/admin/apikeys", "list_all_keys", "Every organisation's keys, newest first (super admin)."
        ),
        organisation=ListRoute(
            KEYS, "list_keys", "The organisation's keys within the caller's reach, newest first."
        ),
    ),
)


# --- routes ----------------------------------------------------------------------------------
@router.post(KEYS, status_code=201, response_model=IssuedApiKeyView)
async def create_key(
    organisation_id: str,
    body: ApiKeyCreate,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.CREATE))],
) -> IssuedApiKeyView:
    """Issue a key; the answer holds its secret, which is never shown again."""
    grant.check(Target(organisation_id, team_id=body.team_id, user_id=body.user_id))
    issued = await keys.issue(
        organisation_id,
        body.name,
        type=body.type,
        team_id=body.team_id,
        user_id=body.user_id,
        expires_at=body.expires_at,
        timezone=body.timezone,
        models=body.models,
    )
    return _issued(issued.key, issued.secret)


@router.get(KEY, response_model=ApiKeyView)
async def get_key(
    api_key_id: str,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
) -> ApiKeyView:
    """One key."""
    return ApiKeyView.of(await keys.get(api_key_id))


@router.patch(KEY, response_model=ApiKeyView)
async def update_key(
    api_key_id: str,
    body: ApiKeyUpdate,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> ApiKeyView:
    """Rename a key, or change its expiry (future only; ``null`` removes it) or timezone."""
    changes = body.model_dump(exclude_unset=True)
    for field in ("name", "timezone"):
        if field in changes and changes[field] is None:
            del changes[field]
    if not changes:
        return ApiKeyView.of(await keys.get(api_key_id))
    return ApiKeyView.of(await keys.change(api_key_id, changes))


@router.post(KEY + "/rotate", response_model=IssuedApiKeyView)
async def rotate_key(
    api_key_id: str,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
    body: Annotated[RotateBody | None, Body()] = None,
) -> IssuedApiKeyView:
    """Give a key a new secret (same id, grants and history); the old secret stops at once."""
    expires_at = body.expires_at if body is not None else None
    issued = await keys.rotate_live(api_key_id, expires_at=expires_at, rotated_by=grant.actor.email)
    return _issued(issued.key, issued.secret)


@router.get(KEY + "/rotations", response_model=Page[RotationView])
async def list_rotations(
    api_key_id: str,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
    params: Paging,
) -> Page[RotationView]:
    """A key's rotation history, newest first by default."""
    return await paged(
        lambda page: keys.rotations_page(api_key_id, page), params, _rotation, lambda r: (r.rotated_at, r.id)
    )


@router.get(KEY + "/models", response_model=Page[GrantedModelView])
async def list_grants(
    api_key_id: str,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
    params: Paging,
    q: SearchQuery = None,
) -> Page[GrantedModelView]:
    """The models a key may call, by name (``q`` searches name, slug and type)."""
    return await paged(
        lambda page: keys.grants_page(api_key_id, q, page), params, _granted, lambda m: (m.name, m.id)
    )


@router.delete(KEY + "/models/{model_id}", status_code=204, response_class=Response)
async def remove_grant(
    api_key_id: str,
    model_id: Id,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> Response:
    """The key may no longer call this model."""
    await keys.remove_grant(api_key_id, model_id)
    return Response(status_code=204)


@router.get(KEY + "/routing", response_model=RoutingView)
async def get_routing(
    api_key_id: str,
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
) -> RoutingView:
    """A key's routing policy by model type (empty: every call goes direct)."""
    key = await keys.get(api_key_id)
    return RoutingView(routing=parse_routing(key.policies.get("routing")))


@router.patch(KEY + "/routing", response_model=RoutingView)
async def update_routing(
    api_key_id: str,
    body: Annotated[dict[ModelType, ModelTypeRouting | None], Body(max_length=9)],
    keys: Keys,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> RoutingView:
    """Set the routing policy of the model types given (``null`` clears one); others stay."""
    changes: dict[str, Any] = {k: None if p is None else p.model_dump(by_alias=True) for k, p in body.items()}
    routing = await keys.set_routing(api_key_id, changes)
    return RoutingView(routing=parse_routing(routing))


# --- key changes made from one definition (revoke/unrevoke, replace/add grants) ----------------
def _key_change(
    method: str, path: str, name: str, doc: str, call: Callable[..., Awaitable[Any]], **options: Any
) -> None:
    """Register one key change: the key in the path, an optional body, the key service, UPDATE on it."""
    body = options.pop("body", None)
    parameters = [param("api_key_id", str)] + ([param("body", body)] if body is not None else [])
    parameters += [
        param("keys", Keys),
        param("grant", Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))]),
    ]
    add_made_route(
        router, method, KEY + path, name=name, doc=doc, call=call, parameters=parameters, **options
    )


def _switch(revoked: bool) -> Callable[..., Awaitable[ApiKeyView]]:
    async def switch(api_key_id: str, keys: KeyService, **_: Any) -> ApiKeyView:
        return ApiKeyView.of(await keys.set_revoked(api_key_id, revoked))

    return switch


def _granting(replace: bool) -> Callable[..., Awaitable[GrantList]]:
    async def granting(api_key_id: str, body: GrantsBody, keys: KeyService, **_: Any) -> GrantList:
        await (keys.set_grants if replace else keys.grant)(api_key_id, body.models)
        return await _grants(keys, api_key_id)

    return granting


_key_change(
    "POST",
    "/revoke",
    "revoke_key",
    "Revoke a key: the gateway refuses it (401 api_key_revoked) from the next request on.",
    _switch(True),
    response_model=ApiKeyView,
)
_key_change(
    "POST", "/unrevoke", "unrevoke_key", "Reinstate a revoked key.", _switch(False), response_model=ApiKeyView
)
_key_change(
    "PUT",
    "/models",
    "replace_grants",
    "The key may call exactly these models (names or ids) from now on.",
    _granting(True),
    body=GrantsBody,
    response_model=GrantList,
)
_key_change(
    "POST", "/models", "add_grants",
    "The key may also call these models (names or ids); existing grants stay.",
    _granting(False), body=GrantsBody, response_model=GrantList,
)  # fmt: skip
