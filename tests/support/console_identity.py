"""Fixtures for the onboarding tests: gateways on an empty database of their own, and a browser at one.

The module's shared ``console`` gateway already has users; the first-start link and the bootstrap
admin need an install with none. On the production backend each such gateway gets a fresh
PostgreSQL database (dropped after the gateway stops); embedded ones get a fresh data directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from odock.app import create_app
from tests.conftest import BACKEND, Gateway, settings_factory
from tests.support import services
from tests.support.browser import Page
from tests.support.identity import CHEAP_HASHING
from tests.support.server import ThreadedServer

EmptyInstall = Callable[..., Any]  # (**settings) -> a context manager giving an Install


@dataclass
class Install:
    """A gateway on its own empty database, which the test may restart (same settings, same data)."""

    gateway: Gateway

    def restart(self) -> Gateway:
        """Stop the server and start a new process image of it on the same database."""
        settings = self.gateway.app.settings
        self.gateway.server.stop()
        app = create_app(settings)
        self.gateway = Gateway(server=ThreadedServer(app).start(), app=app)
        return self.gateway


@pytest.fixture
def empty_install(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> EmptyInstall:
    """Start a gateway on a database with no user at all (settings overrides as keywords)."""
    make = settings_factory(BACKEND, tmp_path_factory, request)

    @contextmanager
    def start(**overrides: Any) -> Iterator[Install]:
        database: str | None = None
        if BACKEND == "production":
            database = services.unique_name("odock_welcome")
            overrides["database_url"] = asyncio.run(services.create_database(database))
        settings = make(**{**CHEAP_HASHING, **overrides})
        app = create_app(settings)
        install = Install(Gateway(server=ThreadedServer(app).start(), app=app))
        try:
            yield install
        finally:
            install.gateway.server.stop()
            if database is not None:
                asyncio.run(services.drop_database(database))

    return start


def browser_at(chromium: WebDriver, base_url: str) -> Page:
    """The browser at ``base_url``, signed out, at desktop size."""
    chromium.set_window_size(1280, 900)
    chromium.get(base_url + "/static/console.css")  # a same-origin document to clear cookies on
    chromium.delete_all_cookies()
    page = Page(chromium, base_url)
    page.console_errors()
    return page
