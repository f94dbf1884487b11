"""One router per resource; the order here is the order of the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from odock.web.api.routes import (
    admin_tokens,
    analytics,
    api_keys,
    audit,
    auth,
    budgets,
    dead_letters,
    health,
    invitations,
    invoices,
    mcp_catalogue,
    mcp_servers,
    models,
    organisations,
    playground,
    policies,
    providers,
    teams,
    usage,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    admin_tokens.router,
    organisations.router,
    invitations.router,
    users.router,
    teams.router,
    providers.router,
    models.router,
    mcp_servers.router,
    mcp_catalogue.router,
    api_keys.router,
    policies.router,
    playground.router,
    budgets.router,
    usage.router,
    dead_letters.router,
    analytics.router,
    invoices.router,
    audit.router,
    health.router,
)
