"""Control-plane API fixtures: a running process with a super admin caller."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import GatewayFactory, SettingsFactory
from tests.support.api import ControlPlaneUnderTest


@pytest.fixture
def control_plane(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory
) -> Iterator[ControlPlaneUnderTest]:
    """A gateway + control plane on the active backend, with a super admin caller."""
    cp = ControlPlaneUnderTest(gateway_factory(make_settings()))
    yield cp
    cp.close()
