"""One gateway and one scripted upstream per module; each test routes in an organisation of its own.

The breaker is read afresh on every choice (``routing_breaker_refresh_seconds=0``), opens after
three failures and cools down for a second, so its scenarios run in seconds without waiting on
a stale view.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from odock.app import create_app
from odock.providers.crypto import KeyPair
from tests.conftest import BACKEND, Gateway, settings_factory
from tests.fakes.scripted_upstream import ScriptedUpstream, untrusted_tls
from tests.support.server import ThreadedServer

BREAKER_FAILURES = 3
COOLDOWN_SECONDS = 1.0


@pytest.fixture(scope="module")
def routing_gateway(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, provider_keypair: KeyPair
) -> Iterator[Gateway]:
    """The module's gateway on the active backend."""
    settings = settings_factory(BACKEND, tmp_path_factory, request)(
        provider_key_encryption_key_id=provider_keypair.key_id,
        provider_key_encryption_private_key=provider_keypair.private_pem,
        routing_breaker_failures=BREAKER_FAILURES,
        routing_breaker_cooldown_seconds=COOLDOWN_SECONDS,
        routing_breaker_refresh_seconds=0,
    )
    app = create_app(settings)
    gateway = Gateway(server=ThreadedServer(app).start(), app=app)
    yield gateway
    gateway.server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    """The scripted upstream every provider of the module points at."""
    with ScriptedUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptedUpstream]:
    """The same, over HTTPS with a certificate the gateway does not trust."""
    with ScriptedUpstream(tls=untrusted_tls(tmp_path_factory.mktemp("tls"))) as fake:
        yield fake
