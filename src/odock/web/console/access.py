"""Who may see a page, and what a refused page looks like.

Pages use the API's own dependencies (``Permit``, ``ActorDep``): a page is refused exactly when
the API route it mirrors would be. The refusal is rendered for a person instead of as JSON:
not signed in → the sign-in page (coming back afterwards), password change due → the password
page, anything else → an error page with the same status and message as the API's answer.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from odock.errors import OdockError, PasswordChangeRequired, Unauthorized
from odock.web.console.paths import is_page as is_page


def sign_in_url(request: Request) -> str:
    """The sign-in page, returning to the page asked for."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/sign-in" if target == "/" else f"/sign-in?next={quote(target, safe='')}"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def page_error(request: Request, error: OdockError) -> Response:
    """The page answer for a refused or failed page request."""
    if isinstance(error, Unauthorized):
        return RedirectResponse(sign_in_url(request), status_code=303)
    if isinstance(error, PasswordChangeRequired):
        return RedirectResponse("/password", status_code=303)
    from odock.web.console.pages import render  # the templates are loaded only when a page errs

    actor = getattr(request.state, "actor", None)
    return render(
        request,
        "errors/page.html",
        actor=actor,
        organisation_id=request.path_params.get("organisation_id"),
        status_code=error.http_status,
        error=error,
    )


def not_found_page(request: Request) -> HTMLResponse:
    """A 404 page for a console path that names no page."""
    from odock.errors import NotFound

    response = page_error(request, NotFound("There is no page at this address."))
    assert isinstance(response, HTMLResponse)
    return response
