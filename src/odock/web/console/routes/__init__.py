"""The console's page routers, one module per area (each area's views and templates go together)."""

from fastapi import APIRouter

from odock.web.console.routes import (
    admin,
    audit,
    auth,
    budgets,
    dashboard,
    invoices,
    keys,
    mcp_servers,
    models,
    onboarding,
    playground,
    profile,
    providers,
    settings,
    teams,
    usage,
    users,
)

PAGE_ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    onboarding.router,
    dashboard.router,
    admin.router,
    profile.router,
    settings.router,
    users.router,
    teams.router,
    providers.router,
    models.router,
    mcp_servers.router,
    keys.router,
    budgets.router,
    usage.router,
    invoices.router,
    audit.router,
    playground.router,
    onboarding.invite_router,  # GET /invite/{token}: the link itself (page or JSON)
)
