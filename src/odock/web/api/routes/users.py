"""Routes: users of an organisation (list, detail, edit, approve/decline) and the super admin's view.

Role and status changes need organisation reach (ORG_ADMIN, SUPER_ADMIN); a USER or MANAGER may
edit only their own name. Only a super admin grants SUPER_ADMIN, creates users directly
(``POST /api/admin/users``; everyone else joins through an invitation or OAuth sign-in) or
deletes them. Nobody demotes or disables the last active super admin. Disabling a user (status
REVOKED) ends their sessions and admin tokens at once.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from odock.errors import Forbidden
from odock.identity.passwords import MAX_PASSWORD_LENGTH
from odock.rbac.grant import Grant, ListScope, Target
from odock.rbac.permissions import Action, Reach, Resource
from odock.tenancy.queries import UserFilter, UserWithTeams
from odock.tenancy.tables import Role, User, UserStatus
from odock.tenancy.user_service import KEEP
from odock.web.api.deps import IdentityDep, Permit, row_locator
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.routes.auth import UserView, render_user
from odock.web.api.services import TenancyQueriesDep, UsersDep

router = APIRouter(tags=["users"])

OrgUsers = "/organisations/{organisation_id}/users"


def _where(user: User) -> Target:
    return Target(user.organisation_id, user_id=user.id)


_LOCATE = row_locator(User, "user_id", _where)


ReadUser = Annotated[Grant, Depends(Permit(Resource.USER, Action.READ, locate=_LOCATE))]
UpdateUser = Annotated[Grant, Depends(Permit(Resource.USER, Action.UPDATE, locate=_LOCATE))]


class UserFilters(BaseModel):
    """Search and filters of the user lists."""

    q: str | None = None
    role: Role | None = None
    status: UserStatus | None = None


def user_filters(
    q: Annotated[str | None, Query(max_length=200, description="search in name and e-mail")] = None,
    role: Annotated[Role | None, Query()] = None,
    status: Annotated[UserStatus | None, Query()] = None,
) -> UserFilters:
    """The ``q``/``role``/``status`` query parameters."""
    return UserFilters(q=q, role=role, status=status)


class UserPatch(BaseModel):
    """Changes to a user: name (anyone, of themselves); role and status (organisation admins)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    role: Role | None = None
    status: Literal["ACTIVE", "REVOKED"] | None = None


class AdminUserPatch(UserPatch):
    """Super admin changes: also the organisation."""

    organisation_id: str | None = Field(None, max_length=64)


class UserCreate(BaseModel):
    """A user created directly by a super admin, who signs in with ``password``."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = Field(None, min_length=1, max_length=200)
    role: Role
    organisation_id: str | None = Field(None, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    must_change_password: bool = False


def _view(found: UserWithTeams) -> UserView:
    return render_user(found.user, found.teams)


async def _page(
    queries: TenancyQueriesDep, wanted: UserFilter, params: PageParams, scope: ListScope | None = None
) -> Page[UserView]:
    rows = await queries.users(partial(keyset, params=params), wanted, scope)
    return make_page(rows, params, _view, lambda r: (r.user.created_at, r.user.id))


async def _detail(queries: TenancyQueriesDep, user_id: str) -> UserView:
    return _view(await queries.user(user_id))


async def _patch(
    users: UsersDep, queries: TenancyQueriesDep, grant: Grant, user_id: str, body: UserPatch
) -> UserView:
    changes = body.model_dump(exclude_unset=True)
    if ("role" in changes or "status" in changes) and grant.reach < Reach.ORG:
        raise Forbidden("only organisation admins change roles and statuses")
    if body.role is Role.SUPER_ADMIN and grant.reach is not Reach.ALL:
        raise Forbidden("only a super admin grants SUPER_ADMIN")
    moves = isinstance(body, AdminUserPatch) and "organisation_id" in changes
    await users.update_user(
        user_id,
        name=body.name or KEEP,  # an explicit null name is ignored, as the field is optional
        role=body.role,
        status=UserStatus(body.status) if body.status else None,
        organisation_id=changes["organisation_id"] if moves else KEEP,
        by_super_admin=grant.reach is Reach.ALL,
    )
    return await _detail(queries, user_id)


async def _decide(
    users: UsersDep, queries: TenancyQueriesDep, grant: Grant, user_id: str, status: UserStatus
) -> UserView:
    if grant.reach < Reach.ORG:
        raise Forbidden("only organisation admins approve or decline users")
    await users.decide(user_id, status)
    return await _detail(queries, user_id)


# --- organisation scope -----------------------------------------------------------------------


@router.get(OrgUsers, response_model=Page[UserView])
async def list_users(
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.READ))],
    params: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[UserFilters, Depends(user_filters)],
) -> Page[UserView]:
    """The organisation's users (a USER sees only themselves); search ``q``, filters role and status."""
    wanted = UserFilter(q=filters.q, role=filters.role, status=filters.status)
    return await _page(queries, wanted, params, grant.scope())


@router.get(OrgUsers + "/{user_id}", response_model=UserView)
async def get_user(user_id: str, queries: TenancyQueriesDep, _grant: ReadUser) -> UserView:
    """One user, with team memberships."""
    return await _detail(queries, user_id)


@router.patch(OrgUsers + "/{user_id}", response_model=UserView)
async def update_user(
    user_id: str, body: UserPatch, users: UsersDep, queries: TenancyQueriesDep, grant: UpdateUser
) -> UserView:
    """Change name, role or status (disabling ends the user's sessions and admin tokens)."""
    return await _patch(users, queries, grant, user_id, body)


@router.post(OrgUsers + "/{user_id}/approve", response_model=UserView)
async def approve_user(
    user_id: str, users: UsersDep, queries: TenancyQueriesDep, grant: UpdateUser
) -> UserView:
    """A PENDING user becomes ACTIVE (409 otherwise)."""
    return await _decide(users, queries, grant, user_id, UserStatus.ACTIVE)


@router.post(OrgUsers + "/{user_id}/decline", response_model=UserView)
async def decline_user(
    user_id: str, users: UsersDep, queries: TenancyQueriesDep, grant: UpdateUser
) -> UserView:
    """A PENDING user becomes REVOKED (409 otherwise)."""
    return await _decide(users, queries, grant, user_id, UserStatus.REVOKED)


# --- super admin --------------------------------------------------------------------------------


@router.get("/admin/users", response_model=Page[UserView])
async def list_all_users(
    queries: TenancyQueriesDep,
    _grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.READ))],
    params: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[UserFilters, Depends(user_filters)],
    organisation_id: Annotated[str | None, Query(max_length=64)] = None,
    no_organisation: Annotated[bool, Query(description="only users without an organisation")] = False,
) -> Page[UserView]:
    """Users of every organisation (filter ``organisation_id``; ``no_organisation`` for new sign-ups)."""
    wanted = UserFilter(
        q=filters.q,
        role=filters.role,
        status=filters.status,
        organisation_id=organisation_id,
        no_organisation=no_organisation,
    )
    return await _page(queries, wanted, params)


@router.post("/admin/users", response_model=UserView, status_code=201)
async def create_user(
    body: UserCreate,
    users: UsersDep,
    queries: TenancyQueriesDep,
    identity: IdentityDep,
    _grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.CREATE))],
) -> UserView:
    """Create an active password user with a role and organisation (the only direct creation path)."""
    user = await users.create_password_user(
        identity.passwords,
        email=body.email,
        password=body.password,
        role=body.role,
        organisation_id=body.organisation_id,
        name=body.name,
        must_change_password=body.must_change_password,
    )
    return await _detail(queries, user.id)


@router.get("/admin/users/{user_id}", response_model=UserView)
async def admin_get_user(user_id: str, queries: TenancyQueriesDep, _grant: ReadUser) -> UserView:
    """Any user, with team memberships."""
    return await _detail(queries, user_id)


@router.patch("/admin/users/{user_id}", response_model=UserView)
async def admin_update_user(
    user_id: str, body: AdminUserPatch, users: UsersDep, queries: TenancyQueriesDep, grant: UpdateUser
) -> UserView:
    """Change any user's name, role, status or organisation."""
    return await _patch(users, queries, grant, user_id, body)


@router.post("/admin/users/{user_id}/approve", response_model=UserView)
async def admin_approve_user(
    user_id: str, users: UsersDep, queries: TenancyQueriesDep, grant: UpdateUser
) -> UserView:
    """A PENDING user becomes ACTIVE (assign an organisation first with PATCH when it has none)."""
    return await _decide(users, queries, grant, user_id, UserStatus.ACTIVE)


@router.post("/admin/users/{user_id}/decline", response_model=UserView)
async def admin_decline_user(
    user_id: str, users: UsersDep, queries: TenancyQueriesDep, grant: UpdateUser
) -> UserView:
    """A PENDING user becomes REVOKED."""
    return await _decide(users, queries, grant, user_id, UserStatus.REVOKED)


@router.delete("/admin/users/{user_id}", status_code=204)
async def delete_user(
    user_id: str,
    users: UsersDep,
    _grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.DELETE, locate=_LOCATE))],
) -> Response:
    """Delete a user (their sessions and admin tokens go with them); never the last super admin."""
    await users.delete_user(user_id)
    return Response(status_code=204)
