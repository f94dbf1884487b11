"""Rendering: the Jinja2 environment, the navigation, and ``render()`` for views.

The navigation is built from the permission table: an entry is shown when the actor's role reaches
its resource at all (:func:`odock.rbac.permissions.reach_of`), so a USER sees the self-service
pages only. The same dependency that guards the page refuses it when typed in directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from odock import __version__
from odock.rbac.grant import Actor
from odock.rbac.permissions import Action, Reach, Resource, reach_of
from odock.web.api.deps import CSRF_COOKIE

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Pages only load what the gateway serves itself: no CDN, no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class NavItem:
    """One entry of the organisation workspace's navigation."""

    label: str
    path: str  # below /o/{organisation_id}
    resource: Resource
    section: str
    action: Action = Action.READ
    reach: Reach = Reach.SELF  # shown when the role reaches ``action`` on ``resource`` this far


# The organisation workspace. Later capabilities (routing, SafetySec, plugins,
# observability) add their entries to the "Gateway" section.
NAVIGATION: tuple[NavItem, ...] = (
    NavItem("Dashboard", "", Resource.USAGE, "Overview"),
    NavItem("Playground", "/playground", Resource.API_KEY, "Overview"),
    NavItem("Usage", "/usage", Resource.USAGE, "Spend"),
    NavItem("Analytics", "/analytics", Resource.USAGE, "Spend"),
    NavItem("Invoices", "/invoices", Resource.USAGE, "Spend"),
    NavItem("Budgets & quotas", "/budgets", Resource.BUDGET, "Spend"),
    NavItem("API keys", "/keys", Resource.API_KEY, "Access"),
    NavItem("Models", "/models", Resource.PROVIDER, "Gateway"),
    NavItem("Providers", "/providers", Resource.PROVIDER, "Gateway"),
    NavItem("MCP servers", "/mcp-servers", Resource.MCP_SERVER, "Gateway"),
    NavItem("Users", "/users", Resource.USER, "Organisation", reach=Reach.ORG),
    NavItem("Teams", "/teams", Resource.TEAM, "Organisation", Action.UPDATE, Reach.TEAM),
    NavItem("Settings", "/settings", Resource.ORGANISATION, "Organisation", Action.UPDATE, Reach.ORG),
    NavItem("Audit log", "/audit", Resource.AUDIT, "Organisation"),
)


def navigation(actor: Actor, organisation_id: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The sections and (label, href) entries ``actor`` may open in ``organisation_id``."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for item in NAVIGATION:
        if reach_of(actor.role, item.resource, item.action) < item.reach:
            continue
        sections.setdefault(item.section, []).append((item.label, f"/o/{organisation_id}{item.path}"))
    return list(sections.items())


def can(actor: Actor, resource: Resource, action: Action) -> bool:
    """Whether ``actor``'s role reaches ``action`` on ``resource`` at all (to offer a button).

    Only to decide what to *show*: the API route the button calls checks the actual row.
    """
    return reach_of(actor.role, resource, action) is not Reach.NONE


def usd(nanos: int | None) -> str:
    """Nano-dollars as USD with as many decimals as are useful (at least 2, at most 9)."""
    if nanos is None:
        return "—"
    text = f"{Decimal(nanos) / Decimal(10**9):,.9f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def when(value: datetime | str | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM UTC``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def number(value: int | float | None) -> str:
    """A count with thousands separators."""
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def duration(seconds: float | None) -> str:
    """A length of time in its two largest units: ``3 d 4 h``, ``5 min 12 s``, ``4.2 s``."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    while parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{value} {unit}" for value, unit in parts[:2])


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The template environment (built once; templates are compiled on first use)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html",)),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(usd=usd, when=when, number=number, duration=duration)
    env.globals.update(version=__version__, can=can, Resource=Resource, Action=Action)
    return env


def render(
    request: Request,
    template: str,
    *,
    actor: Actor | None = None,
    organisation_id: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` as a page for ``actor`` (``None`` on the public pages)."""
    org = organisation_id or (actor.organisation_id if actor else None)
    values = {
        "request": request,
        "actor": actor,
        "organisation_id": org,
        "nav": navigation(actor, org) if actor is not None and org else [],
        "path": request.url.path,
        "csrf_cookie": CSRF_COOKIE,
        **context,
    }
    html = environment().get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)
