"""Routes: personal admin API tokens (``/api/auth/tokens``) and a super admin's view of anyone's.

A token acts with its owner's current rights (read on every request), so a role change applies
at once; it stops working when revoked, past its expiry, or when the owner is no longer active.
The secret is in the create response only; the database keeps its SHA-256 hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from odock.db.base import utcnow
from odock.identity.tables import AdminToken
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.tenancy.tables import User
from odock.web.api.deps import Permit, row_locator
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.services import AdminTokensDep

router = APIRouter(tags=["admin tokens"])

TokenId = Annotated[str, Path(max_length=64)]


class TokenCreate(BaseModel):
    """A name for the token, and an optional expiry in the future."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value <= utcnow():
            raise ValueError("must be in the future")
        return value


class TokenView(BaseModel):
    """A token without its secret."""

    id: str
    user_id: str
    name: str
    preview: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class IssuedToken(TokenView):
    """A new token: ``token`` is the secret, shown this once."""

    token: str


def _render(row: AdminToken) -> TokenView:
    now = utcnow()
    active = row.revoked_at is None and (row.expires_at is None or row.expires_at > now)
    return TokenView(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        preview=row.token_preview,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        active=active,
    )


async def _list(
    tokens: AdminTokensDep, user_id: str, params: PageParams, active: bool | None
) -> Page[TokenView]:
    rows = await tokens.page(user_id, partial(keyset, params=params), active=active)
    return make_page(rows, params, _render, lambda r: (r.created_at, r.id))


@router.get("/auth/tokens", response_model=Page[TokenView])
async def list_tokens(
    tokens: AdminTokensDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ADMIN_TOKEN, Action.READ, personal=True))],
    params: Annotated[PageParams, Depends(page_params)],
    active: Annotated[
        bool | None, Query(description="only unrevoked (true) or revoked (false) tokens")
    ] = None,
) -> Page[TokenView]:
    """The caller's own admin tokens (never their secrets)."""
    return await _list(tokens, grant.actor.user_id, params, active)


@router.post("/auth/tokens", response_model=IssuedToken, status_code=201)
async def create_token(
    body: TokenCreate,
    tokens: AdminTokensDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ADMIN_TOKEN, Action.CREATE, personal=True))],
) -> IssuedToken:
    """Issue a personal admin token; the secret is in this response only."""
    row, secret = await tokens.issue(grant.actor.user_id, body.name, body.expires_at)
    return IssuedToken(**_render(row).model_dump(), token=secret)


@router.delete("/auth/tokens/{token_id}", status_code=204)
async def revoke_token(
    token_id: TokenId,
    tokens: AdminTokensDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ADMIN_TOKEN, Action.DELETE, personal=True))],
) -> Response:
    """Revoke one of one's own tokens (404 for anyone else's); it stops working at once."""
    await tokens.revoke(token_id, owner_id=grant.actor.user_id)
    return Response(status_code=204)


def _owner(user: User) -> Target:
    return Target(user.organisation_id, user_id=user.id)


@router.get("/admin/users/{user_id}/tokens", response_model=Page[TokenView])
async def list_user_tokens(
    user_id: Annotated[str, Path(max_length=64)],
    tokens: AdminTokensDep,
    _grant: Annotated[
        Grant, Depends(Permit(Resource.ADMIN_TOKEN, Action.READ, locate=row_locator(User, "user_id", _owner)))
    ],
    params: Annotated[PageParams, Depends(page_params)],
    active: Annotated[
        bool | None, Query(description="only unrevoked (true) or revoked (false) tokens")
    ] = None,
) -> Page[TokenView]:
    """Super admin: any user's admin tokens."""
    return await _list(tokens, user_id, params, active)


@router.delete("/admin/users/{user_id}/tokens/{token_id}", status_code=204)
async def revoke_user_token(
    user_id: Annotated[str, Path(max_length=64)],
    token_id: TokenId,
    tokens: AdminTokensDep,
    _grant: Annotated[
        Grant,
        Depends(Permit(Resource.ADMIN_TOKEN, Action.DELETE, locate=row_locator(User, "user_id", _owner))),
    ],
) -> Response:
    """Super admin: revoke any user's admin token."""
    await tokens.revoke(token_id, owner_id=user_id)
    return Response(status_code=204)
