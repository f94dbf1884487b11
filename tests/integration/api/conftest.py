"""Control-plane API fixtures: a running process with a super admin caller.

Starting a server (and, in production mode, migrating a fresh prefix) costs about a second, so
one server serves every test of a module; tests stay independent by working in organisations
and users they create themselves. A test that needs a fresh process (bootstrap, throttling,
settings of its own) starts one with ``gateway_factory``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from odock.app import create_app
from tests.conftest import BACKEND, Gateway, settings_factory
from tests.support import services
from tests.support.api import ControlPlaneUnderTest
from tests.support.server import ThreadedServer

ModuleGatewayFactory = Callable[..., Gateway]


@pytest.fixture
def empty_database() -> Iterator[dict[str, str]]:
    """Settings overrides for a database of this test's own (production: a fresh PostgreSQL database)."""
    if BACKEND != "production":
        yield {}  # every settings factory call already gets its own SQLite file
        return
    name = services.unique_name("odock_empty")
    url = asyncio.run(services.create_database(name))
    try:
        yield {"database_url": url}
    finally:
        asyncio.run(services.drop_database(name))


@pytest.fixture(scope="module")
def module_gateway_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ModuleGatewayFactory]:
    """Start gateways (with setting overrides) that live until the module's last test."""
    make = settings_factory(BACKEND, tmp_path_factory, request)
    started: list[Gateway] = []

    def start(**overrides: Any) -> Gateway:
        app = create_app(make(**overrides))
        gateway = Gateway(server=ThreadedServer(app).start(), app=app)
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        gateway.server.stop()


@pytest.fixture(scope="module")
def shared_control_plane(module_gateway_factory: ModuleGatewayFactory) -> Iterator[ControlPlaneUnderTest]:
    """One gateway + control plane for the module, with a super admin caller."""
    cp = ControlPlaneUnderTest(module_gateway_factory())
    yield cp
    cp.close()


@pytest.fixture
def control_plane(shared_control_plane: ControlPlaneUnderTest) -> ControlPlaneUnderTest:
    """The module's control plane (tests create their own organisations and users in it)."""
    return shared_control_plane
