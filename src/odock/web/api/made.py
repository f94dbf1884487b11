"""Routes made from one definition: the signature FastAPI reads is built, not written out twice.

Where two routes differ only in a path, a permission or a body type (budgets and quotas, the
admin and organisation lists, the four policy scopes), one function makes both: it gives the
endpoint an explicit signature, from which FastAPI takes the parameters, the dependencies and
the OpenAPI operation exactly as if the handler had been written by hand. Every parameter is
keyword-only, so a path parameter may follow ones with defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

_EMPTY = inspect.Parameter.empty


def param(name: str, annotation: Any, default: Any = _EMPTY) -> inspect.Parameter:
    """One keyword-only endpoint parameter (a path id, a body, a ``Depends``, a query value)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def add_made_route(
    router: APIRouter,
    method: str,
    path: str,
    *,
    name: str,
    doc: str,
    call: Callable[..., Any],
    parameters: list[inspect.Parameter],
    **options: Any,
) -> None:
    """Register ``call`` (which takes the parameters as keywords) under ``name``, described by ``doc``."""

    async def endpoint(**values: Any) -> Any:
        return await call(**values)

    endpoint.__doc__ = doc
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    router.add_api_route(path, endpoint, methods=[method], name=name, **options)
