"""Route dependencies that hand a handler the one service it calls, not the whole runtime."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from odock.tenancy.queries import TenancyQueries
from odock.tenancy.service import TenancyService
from odock.tenancy.users import UserService
from odock.web.api.deps import get_runtime


def tenancy_service(request: Request) -> TenancyService:
    """Organisations, teams and members (writes and lookups)."""
    return get_runtime(request).control.tenancy


def user_service(request: Request) -> UserService:
    """Users (writes and lookups)."""
    return get_runtime(request).control.users


def tenancy_queries(request: Request) -> TenancyQueries:
    """The read side of tenancy (pages of organisations, teams, members and users)."""
    return TenancyQueries(get_runtime(request).sessions)


TenancyDep = Annotated[TenancyService, Depends(tenancy_service)]
UsersDep = Annotated[UserService, Depends(user_service)]
TenancyQueriesDep = Annotated[TenancyQueries, Depends(tenancy_queries)]
