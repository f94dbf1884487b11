"""Route dependencies, one per control-plane service: a handler asks for what it calls, not the runtime.

Each resolves the service from the process's :class:`odock.runtime.Runtime` (built with the API
app); the composition lives in :class:`odock.admin.control.ControlPlane`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from odock.admin.health import HealthCheck
from odock.audit.queries import AuditLog
from odock.budgets.control import BudgetControl
from odock.identity.invitations import Invitations
from odock.identity.tokens import AdminTokens
from odock.keys.service import KeyService
from odock.limits.service import PolicyEnvelopes
from odock.providers.crypto import EnvelopeDecrypter
from odock.providers.key_service import ProviderKeyService
from odock.providers.model_service import ModelService
from odock.providers.service import ProviderService
from odock.tenancy.queries import TenancyQueries
from odock.tenancy.service import TenancyService
from odock.tenancy.user_service import UserService
from odock.usage.analytics import UsageAnalytics
from odock.usage.dead_letters import DeadLetters
from odock.usage.invoices import Invoices
from odock.usage.queries import UsageRecords
from odock.web.api.deps import get_runtime, identity_of


def providers_of(request: Request) -> ProviderService:
    """The provider service."""
    return get_runtime(request).control.providers


def provider_keys_of(request: Request) -> ProviderKeyService:
    """The provider-key service."""
    return get_runtime(request).control.provider_keys


def decrypter_of(request: Request) -> EnvelopeDecrypter | None:
    """The gateway's provider-key encryption pair (``None`` when none is configured)."""
    return get_runtime(request).vault.decrypter


def models_of(request: Request) -> ModelService:
    """The model service."""
    return get_runtime(request).control.models


def keys_of(request: Request) -> KeyService:
    """The API key service."""
    return get_runtime(request).control.keys


def envelopes_of(request: Request) -> PolicyEnvelopes:
    """The governance-envelope service."""
    return get_runtime(request).control.policies


def budgets_of(request: Request) -> BudgetControl:
    """The budget and quota service (live counters included)."""
    return get_runtime(request).control.budgets


def global_policy_of(request: Request) -> dict[str, Any]:
    """The global policy envelope (from settings: read-only through the API)."""
    return dict(get_runtime(request).settings.ratelimit_global_policy)


def usage_records_of(request: Request) -> UsageRecords:
    """The usage-record reads."""
    return UsageRecords(get_runtime(request).sessions)


def analytics_of(request: Request) -> UsageAnalytics:
    """The usage analytics."""
    return UsageAnalytics(get_runtime(request).sessions)


def invoices_of(request: Request) -> Invoices:
    """The invoice previews and exports."""
    return Invoices(get_runtime(request).sessions)


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


def dead_letters(request: Request) -> DeadLetters:
    """The usage dead letters (the records the database refused)."""
    return DeadLetters(get_runtime(request).sessions)


def health_check(request: Request) -> HealthCheck:
    """The gateway's health probes (this process's database, cache, usage queue, dead letters)."""
    runtime = get_runtime(request)
    return HealthCheck(
        runtime.settings,
        runtime.engine,
        runtime.sessions,
        runtime.redis,
        runtime.recorder,
        runtime.started_at,
    )


def audit_log(request: Request) -> AuditLog:
    """The audit log's read side."""
    return AuditLog(get_runtime(request).sessions)


Providers = Annotated[ProviderService, Depends(providers_of)]
ProviderKeys = Annotated[ProviderKeyService, Depends(provider_keys_of)]
Decrypter = Annotated[EnvelopeDecrypter | None, Depends(decrypter_of)]
Models = Annotated[ModelService, Depends(models_of)]
Keys = Annotated[KeyService, Depends(keys_of)]
Envelopes = Annotated[PolicyEnvelopes, Depends(envelopes_of)]
Budgets = Annotated[BudgetControl, Depends(budgets_of)]
GlobalPolicy = Annotated[dict[str, Any], Depends(global_policy_of)]
Records = Annotated[UsageRecords, Depends(usage_records_of)]
Analytics = Annotated[UsageAnalytics, Depends(analytics_of)]
InvoicesDep = Annotated[Invoices, Depends(invoices_of)]
TenancyDep = Annotated[TenancyService, Depends(tenancy_service)]
UsersDep = Annotated[UserService, Depends(user_service)]
TenancyQueriesDep = Annotated[TenancyQueries, Depends(tenancy_queries)]
AdminTokensDep = Annotated[AdminTokens, Depends(admin_tokens)]
InvitationsDep = Annotated[Invitations, Depends(invitations)]
AuditLogDep = Annotated[AuditLog, Depends(audit_log)]
DeadLettersDep = Annotated[DeadLetters, Depends(dead_letters)]
HealthDep = Annotated[HealthCheck, Depends(health_check)]
