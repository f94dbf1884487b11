"""The console's page routers, one module per area (each area's views and templates go together)."""

from fastapi import APIRouter

from odock.web.console.routes import admin, auth, dashboard, onboarding, profile, settings

PAGE_ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    dashboard.router,
    admin.router,
    onboarding.router,
    profile.router,
    settings.router,
)
