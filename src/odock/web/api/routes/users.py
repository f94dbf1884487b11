"""Routes: users of an organisation (list, detail, edit, approve/decline) and the super admin's view.

Role and status changes need organisation reach (ORG_ADMIN, SUPER_ADMIN); a USER or MANAGER may
edit only their own name. Only a super admin grants SUPER_ADMIN, creates users directly
(``POST /api/admin/users``; everyone else joins through an invitation or OAuth sign-in) or
deletes them. Nobody demotes or disables the last active super admin. Disabling a user (status
REVOKED) ends their sessions and admin tokens at once.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError

from odock.errors import Conflict, Forbidden, NotFound, UnprocessableEntity
from odock.identity.accounts import active_super_admins, create_password_user, passwords_for
from odock.identity.directory import change_user, memberships
from odock.identity.passwords import MAX_PASSWORD_LENGTH
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Reach, Resource
from odock.tenancy.tables import Organisation, Role, User, UserStatus
from odock.web.api.deps import Permit, RuntimeDep, row_locator
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.routes.auth import UserView, render_user

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


def _filtered(query: Select[User], filters: UserFilters) -> Select[User]:
    if filters.q:
        pattern = f"%{filters.q.lower()}%"
        query = query.where(or_(User.email.like(pattern), User.name.ilike(pattern)))
    if filters.role is not None:
        query = query.where(User.role == filters.role)
    if filters.status is not None:
        query = query.where(User.status == filters.status)
    return query


async def _page(runtime: RuntimeDep, query: Select[User], params: PageParams) -> Page[UserView]:
    async with runtime.sessions() as session:
        rows = list((await session.execute(keyset(query, User.created_at, User.id, params))).scalars())
        teams = await memberships(session, [r.id for r in rows])
    return make_page(rows, params, lambda u: render_user(u, teams[u.id]), lambda u: (u.created_at, u.id))


async def _detail(runtime: RuntimeDep, user_id: str) -> UserView:
    async with runtime.sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("user not found")
        teams = await memberships(session, [user.id])
    return render_user(user, teams[user.id])


async def _patch(runtime: RuntimeDep, grant: Grant, user_id: str, body: UserPatch) -> UserView:
    changes = body.model_dump(exclude_unset=True)
    if ("role" in changes or "status" in changes) and grant.reach < Reach.ORG:
        raise Forbidden("only organisation admins change roles and statuses")
    if body.role is Role.SUPER_ADMIN and grant.reach is not Reach.ALL:
        raise Forbidden("only a super admin grants SUPER_ADMIN")
    async with runtime.sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("user not found")
        if user.role is Role.SUPER_ADMIN and grant.reach is not Reach.ALL:
            raise Forbidden("only a super admin changes a super admin")
        if isinstance(body, AdminUserPatch) and "organisation_id" in changes:
            if (
                body.organisation_id is not None
                and await session.get(Organisation, body.organisation_id) is None
            ):
                raise UnprocessableEntity("no such organisation", param="organisation_id")
            user.organisation_id = body.organisation_id
        await change_user(
            session,
            user,
            name=body.name,
            role=body.role,
            status=UserStatus(body.status) if body.status else None,
        )
        await session.commit()
    return await _detail(runtime, user_id)


async def _decide(runtime: RuntimeDep, grant: Grant, user_id: str, status: UserStatus) -> UserView:
    if grant.reach < Reach.ORG:
        raise Forbidden("only organisation admins approve or decline users")
    async with runtime.sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("user not found")
        if user.status is not UserStatus.PENDING:
            raise Conflict(f"the user is {user.status.value}, not PENDING")
        await change_user(session, user, status=status)
        await session.commit()
    return await _detail(runtime, user_id)


# --- organisation scope -----------------------------------------------------------------------


@router.get(OrgUsers, response_model=Page[UserView])
async def list_users(
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.READ))],
    params: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[UserFilters, Depends(user_filters)],
) -> Page[UserView]:
    """The organisation's users (a USER sees only themselves); search ``q``, filters role and status."""
    scope = grant.scope()
    query = select(User).where(User.organisation_id == scope.organisation_id)
    if scope.user_id is not None:
        query = query.where(User.id == scope.user_id)
    return await _page(runtime, _filtered(query, filters), params)


@router.get(OrgUsers + "/{user_id}", response_model=UserView)
async def get_user(user_id: str, runtime: RuntimeDep, _grant: ReadUser) -> UserView:
    """One user, with team memberships."""
    return await _detail(runtime, user_id)


@router.patch(OrgUsers + "/{user_id}", response_model=UserView)
async def update_user(user_id: str, body: UserPatch, runtime: RuntimeDep, grant: UpdateUser) -> UserView:
    """Change name, role or status (disabling ends the user's sessions and admin tokens)."""
    return await _patch(runtime, grant, user_id, body)


@router.post(OrgUsers + "/{user_id}/approve", response_model=UserView)
async def approve_user(user_id: str, runtime: RuntimeDep, grant: UpdateUser) -> UserView:
    """A PENDING user becomes ACTIVE (409 otherwise)."""
    return await _decide(runtime, grant, user_id, UserStatus.ACTIVE)


@router.post(OrgUsers + "/{user_id}/decline", response_model=UserView)
async def decline_user(user_id: str, runtime: RuntimeDep, grant: UpdateUser) -> UserView:
    """A PENDING user becomes REVOKED (409 otherwise)."""
    return await _decide(runtime, grant, user_id, UserStatus.REVOKED)


# --- super admin --------------------------------------------------------------------------------


@router.get("/admin/users", response_model=Page[UserView])
async def list_all_users(
    runtime: RuntimeDep,
    _grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.READ))],
    params: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[UserFilters, Depends(user_filters)],
    organisation_id: Annotated[str | None, Query(max_length=64)] = None,
    no_organisation: Annotated[bool, Query(description="only users without an organisation")] = False,
) -> Page[UserView]:
    """Users of every organisation (filter ``organisation_id``; ``no_organisation`` for new sign-ups)."""
    query = select(User)
    if organisation_id is not None:
        query = query.where(User.organisation_id == organisation_id)
    if no_organisation:
        query = query.where(User.organisation_id.is_(None))
    return await _page(runtime, _filtered(query, filters), params)


@router.post("/admin/users", response_model=UserView, status_code=201)
async def create_user(
    body: UserCreate,
    runtime: RuntimeDep,
    _grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.CREATE))],
) -> UserView:
    """Create an active password user with a role and organisation (the only direct creation path)."""
    if body.role is not Role.SUPER_ADMIN and body.organisation_id is None:
        raise UnprocessableEntity("organisation_id is required for this role", param="organisation_id")
    if body.organisation_id is not None:
        async with runtime.sessions() as session:
            if await session.get(Organisation, body.organisation_id) is None:
                raise UnprocessableEntity("no such organisation", param="organisation_id")
    user = await create_password_user(
        runtime.sessions,
        passwords_for(runtime.settings),
        email=body.email,
        password=body.password,
        role=body.role,
        organisation_id=body.organisation_id,
        name=body.name,
        must_change_password=body.must_change_password,
    )
    return await _detail(runtime, user.id)


@router.get("/admin/users/{user_id}", response_model=UserView)
async def admin_get_user(user_id: str, runtime: RuntimeDep, _grant: ReadUser) -> UserView:
    """Any user, with team memberships."""
    return await _detail(runtime, user_id)


@router.patch("/admin/users/{user_id}", response_model=UserView)
async def admin_update_user(
    user_id: str, body: AdminUserPatch, runtime: RuntimeDep, grant: UpdateUser
) -> UserView:
    """Change any user's name, role, status or organisation."""
    return await _patch(runtime, grant, user_id, body)


@router.post("/admin/users/{user_id}/approve", response_model=UserView)
async def admin_approve_user(user_id: str, runtime: RuntimeDep, grant: UpdateUser) -> UserView:
    """A PENDING user becomes ACTIVE (assign an organisation first with PATCH when it has none)."""
    return await _decide(runtime, grant, user_id, UserStatus.ACTIVE)


@router.post("/admin/users/{user_id}/decline", response_model=UserView)
async def admin_decline_user(user_id: str, runtime: RuntimeDep, grant: UpdateUser) -> UserView:
    """A PENDING user becomes REVOKED."""
    return await _decide(runtime, grant, user_id, UserStatus.REVOKED)


@router.delete("/admin/users/{user_id}", status_code=204)
async def delete_user(
    user_id: str,
    runtime: RuntimeDep,
    _grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.DELETE, locate=_LOCATE))],
) -> Response:
    """Delete a user (their sessions and admin tokens go with them); never the last super admin."""
    async with runtime.sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("user not found")
        if (
            user.role is Role.SUPER_ADMIN
            and user.status is UserStatus.ACTIVE
            and await active_super_admins(session) <= 1
        ):
            raise Conflict("this is the last active super admin: it cannot be deleted")
        await session.delete(user)
        try:
            await session.commit()
        except IntegrityError as exc:
            raise Conflict("the user still owns resources (API keys, budgets): disable it instead") from exc
    return Response(status_code=204)
