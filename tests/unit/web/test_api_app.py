"""The control-plane API app's frame for a bug raised in a route: a JSON 500 with a request id."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from odock.web.api.app import create_api


class _Bug(Exception):
    """Stands for any bug in a route."""


def _api_with_a_bug() -> FastAPI:
    """The real API app with one extra route that raises, as a bug in a handler would."""
    app = create_api(None)

    async def broken() -> None:
        raise _Bug("a bug in a route")

    app.add_api_route("/api/broken", broken, methods=["GET"])
    return app


async def test_a_bug_in_a_route_answers_the_json_500_with_the_request_id() -> None:
    """An exception escaping a route answers JSON internal_error with X-Request-Id, not plain text."""
    transport = httpx.ASGITransport(app=_api_with_a_bug(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        sent = await client.get("/api/broken", headers={"X-Request-Id": "caller-42"})
        fresh = await client.get("/api/broken")
    assert sent.status_code == 500
    assert sent.headers["content-type"] == "application/json"
    assert sent.json()["error"]["code"] == "internal_error"
    assert sent.headers.get_list("x-request-id") == ["caller-42"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    assert "a bug in a route" not in sent.text  # the message of a bug is for the log, not the caller


async def test_the_bug_still_reaches_the_outermost_handler() -> None:
    """After answering, the exception is re-raised so the outermost handler logs its traceback."""
    transport = httpx.ASGITransport(app=_api_with_a_bug(), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        with pytest.raises(_Bug):
            await client.get("/api/broken")
