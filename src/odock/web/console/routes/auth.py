"""Pages: the start page, sign-in and the password page (the sign-in itself is ``POST /api/auth/login``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from odock.errors import OdockError
from odock.web.api.deps import IdentityDep, current_credential
from odock.web.console.access import safe_next
from odock.web.console.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/")
async def start(request: Request) -> Response:
    """Signed in: the organisation's dashboard (the admin workspace for a super admin without one)."""
    try:
        credential = await current_credential(request)
    except OdockError:
        return RedirectResponse("/sign-in", status_code=303)
    user = credential.user
    if user.must_change_password:
        return RedirectResponse("/password", status_code=303)
    if user.organisation_id:
        return RedirectResponse(f"/o/{user.organisation_id}", status_code=303)
    return RedirectResponse("/admin" if user.role.value == "SUPER_ADMIN" else "/profile", status_code=303)


@router.get("/sign-in")
async def sign_in(
    request: Request,
    identity: IdentityDep,
    next_: Annotated[str | None, Query(alias="next")] = None,
    failed: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The sign-in form (password, and each configured external provider).

    ``failed``: the error code of an external sign-in that did not complete (the provider's
    callback sends the browser back here); the page says it in its own words.
    """
    providers = [
        {"name": name, "label": provider.display_name} for name, provider in identity.flows.providers.items()
    ]
    return render(
        request,
        "auth/sign_in.html",
        next=safe_next(next_),
        providers=providers,
        failed=EXTERNAL_FAILURES.get(failed or "", EXTERNAL_FAILURES["sign_in_failed"]) if failed else None,
    )


# What the sign-in page says when an external sign-in came back refused, by the error's code.
EXTERNAL_FAILURES = {
    "sign_in_failed": "Signing in with the external provider did not complete. Please try again.",
    "forbidden": "Your account may not sign in here: ask an administrator for an invitation.",
    "unauthorized": "Signing in with the external provider did not complete. Please try again.",
    "not_found": "The invitation this sign-in was for is no longer valid.",
    "conflict": "An account with this e-mail address already exists: sign in with its password.",
}


@router.get("/password")
async def password(request: Request) -> Response:
    """Choose a new password (forced after a reset or for the bootstrap admin, or by choice)."""
    credential = await current_credential(request)  # not signed in: the page error handler redirects
    user = credential.user
    return render(
        request,
        "auth/password.html",
        forced=user.must_change_password,
        has_password=user.password_hash is not None,
    )
