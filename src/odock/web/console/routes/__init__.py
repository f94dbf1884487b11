"""The console's page routers, one module per area (each area's views and templates go together)."""

from fastapi import APIRouter

from odock.web.console.routes import admin, audit, auth, dashboard, invoices, usage

PAGE_ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    dashboard.router,
    usage.router,
    invoices.router,
    audit.router,
    admin.router,
)
