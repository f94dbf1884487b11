"""Route dependencies that hand a handler the one service it calls, not the whole runtime."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from odock.audit.queries import AuditLog
from odock.identity.invitations import Invitations
from odock.identity.tokens import AdminTokens
from odock.tenancy.queries import TenancyQueries
from odock.tenancy.service import TenancyService
from odock.tenancy.user_service import UserService
from odock.web.api.deps import get_runtime, identity_of


def tenancy_service(request: Request) -> TenancyService:
    """Organisations, teams and members (writes and lookups)."""
    return get_runtime(request).control.tenancy


def user_service(request: Request) -> UserService:
    """Users (writes and lookups)."""
    return get_runtime(request).control.users


def tenancy_queries(request: Request) -> TenancyQueries:
    """The read side of tenancy (pages of organisations, teams, members and users)."""
    return TenancyQueries(get_runtime(request).sessions)


def admin_tokens(request: Request) -> AdminTokens:
    """Personal admin tokens (issue, list, revoke)."""
    return identity_of(request).tokens


def invitations(request: Request) -> Invitations:
    """Invitations (list, issue, resend, revoke, links, acceptance)."""
    return identity_of(request).invitations


def audit_log(request: Request) -> AuditLog:
    """The audit log's read side."""
    return AuditLog(get_runtime(request).sessions)


TenancyDep = Annotated[TenancyService, Depends(tenancy_service)]
UsersDep = Annotated[UserService, Depends(user_service)]
TenancyQueriesDep = Annotated[TenancyQueries, Depends(tenancy_queries)]
AdminTokensDep = Annotated[AdminTokens, Depends(admin_tokens)]
InvitationsDep = Annotated[Invitations, Depends(invitations)]
AuditLogDep = Annotated[AuditLog, Depends(audit_log)]
