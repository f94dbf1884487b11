"""Shared fixtures: backend selection, isolated settings, real gateway servers, tenants.

The integration suite runs on the backend named by ``ODOCK_TEST_BACKEND`` (``embedded``, the
default, or ``production`` = PostgreSQL + Redis). Contract suites are parametrized over both
backends regardless. Each run uses its own PostgreSQL database and Redis key prefix and removes
them at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401  (see below)
import pytest

from odock.app import OdockApp, create_app
from odock.providers.crypto import KeyPair, generate_key_pair
from odock.providers.keyring import KEY_ID_FILE, PRIVATE_KEY_FILE, load_decrypter
from odock.providers.tables import ProviderType
from odock.runtime import Runtime
from odock.settings import Settings, load_settings
from tests.support import services
from tests.support.server import ThreadedServer

# Hypothesis' pytest plugin imports the package lazily at session end; under CPython 3.11 that
# late import (rewritten by pytest, after server threads ran) can fail with "AST constructor
# recursion depth mismatch". Importing it here, at collection, avoids the late import.

# The suite starts Odock in child processes hundreds of times (the CLI, `odock serve`, replicas);
# each start imports ~700 modules. Under PYTHONDONTWRITEBYTECODE every child compiled Odock's
# sources again (~0.3 s of CPU per start); children now keep their bytecode in a cache outside
# the source tree instead, which still leaves the tree free of __pycache__ directories.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    os.environ.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / f"odock-test-pycache-{os.getuid()}")
    )

BACKEND = os.environ.get("ODOCK_TEST_BACKEND", "embedded")
if BACKEND not in ("embedded", "production"):
    raise RuntimeError(f"ODOCK_TEST_BACKEND must be embedded or production, not {BACKEND!r}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which backend the integration suite runs on, and whether services are reachable."""
    available = services.services_available()
    lines = [f"odock backend: {BACKEND}; PostgreSQL+Redis reachable: {available}"]
    if not available:
        lines.append("NOTICE: production-backend tests will be SKIPPED (PostgreSQL/Redis not reachable)")
    return lines


@pytest.fixture(scope="session")
def production_services() -> Iterator[services.ProductionServices]:
    """A PostgreSQL database and Redis namespace owned by this test run (removed afterwards)."""
    services.require_services()
    name = services.unique_name("odock_test")
    url = asyncio.run(services.create_database(name))
    prefix = f"{name}:"
    try:
        yield services.ProductionServices(database_url=url, redis_url=services.REDIS_URL, redis_prefix=prefix)
    finally:
        asyncio.run(services.delete_redis_prefix(prefix))
        asyncio.run(services.drop_database(name))


SettingsFactory = Callable[..., Settings]

# What an embedded gateway's first start writes to its data directory before it serves: the
# SQLite file at the head of the migration chain and the provider-key encryption pair.
EMBEDDED_DATABASE_FILE = "odock.db"
SEEDED_FILES = (EMBEDDED_DATABASE_FILE, PRIVATE_KEY_FILE, KEY_ID_FILE)


async def _migrate(directory: Path) -> None:
    async with services.migrated_engine("sqlite", Path(EMBEDDED_DATABASE_FILE).stem, directory):
        pass


@pytest.fixture(scope="session")
def embedded_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory as an embedded gateway's first start leaves it (migrated, with its pair),
    made once per test process by the gateway's own code paths.

    Every embedded settings factory call copies it, so a gateway start skips the RSA generation
    (~0.2 s) and the Alembic chain on an empty file (~0.2 s); the start still runs its migration
    check and loads the pair from the files. Both first-start paths keep tests of their own
    (tests/contract/test_migrations.py, tests/unit/providers/test_keyring.py).
    """
    directory = tmp_path_factory.mktemp("embedded-seed")
    asyncio.run(_migrate(directory))
    embedded = load_settings(
        data_dir=directory,
        demo=False,
        redis_url=None,
        provider_key_encryption_key_id=None,
        provider_key_encryption_private_key=None,
    )
    assert load_decrypter(embedded) is not None  # writes the pair files, as a first start does
    return directory


@pytest.fixture(scope="session")
def migrated_sqlite(embedded_seed: Path) -> Path:
    """A SQLite file at the head of the migration chain: copy it instead of migrating per test."""
    return embedded_seed / EMBEDDED_DATABASE_FILE


def seed_data_dir(seed: Path, data_dir: Path) -> None:
    """Copy the seeded first-start files into an (empty) embedded data directory."""
    for name in SEEDED_FILES:
        shutil.copy2(seed / name, data_dir / name)


@pytest.fixture(scope="session")
def encryption_pair() -> KeyPair:
    """One provider-key encryption pair for the run (production settings need a configured one)."""
    return generate_key_pair("odock-test", bits=2048)


def settings_factory(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        data_dir = tmp_path_factory.mktemp("odock")
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "demo": False,
            "log_level": "warning",
            "usage_flush_interval_seconds": 0.05,
        }
        if backend == "production":
            pair = request.getfixturevalue("encryption_pair")
            values.update(
                provider_key_encryption_key_id=pair.key_id,
                provider_key_encryption_private_key=pair.private_pem,
            )
            prod: services.ProductionServices = request.getfixturevalue("production_services")
            prefix = prod.fresh_prefix()
            values.update(
                database_url=prod.database_url,
                redis_url=prod.redis_url,
                redis_prefix=prefix,
                cache_invalidation_channel=prefix + "invalidation",
                migrate_on_start=True,
            )
        values.update(overrides)
        if backend == "embedded" and values["data_dir"] == data_dir and not values.get("database_url"):
            seed_data_dir(request.getfixturevalue("embedded_seed"), data_dir)
        return load_settings(**values)

    return make


@pytest.fixture
def make_settings(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> SettingsFactory:
    """Settings for the active integration backend, isolated per call."""
    return settings_factory(BACKEND, tmp_path_factory, request)


@pytest.fixture(params=["embedded", "production"])
def any_backend(request: pytest.FixtureRequest) -> str:
    """Parametrize a test over both backends (production skips without services)."""
    if request.param == "production":
        services.require_services()
    return str(request.param)


@pytest.fixture
def make_backend_settings(
    any_backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> SettingsFactory:
    """Settings for the backend chosen by ``any_backend``."""
    return settings_factory(any_backend, tmp_path_factory, request)


@dataclass
class Gateway:
    """A gateway running on a real port."""

    server: ThreadedServer
    app: OdockApp

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self.server.base_url

    @property
    def runtime(self) -> Runtime:
        """The live runtime (use via :meth:`run` for anything async)."""
        assert self.app.runtime is not None
        return self.app.runtime

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the gateway's loop."""
        return self.server.run(coro, timeout)

    def flush_usage(self) -> None:
        """Write every queued usage record now."""
        self.run(self.runtime.recorder.flush())


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def gateway_factory() -> Iterator[Callable[[Settings], Gateway]]:
    """Start gateways for given settings; all are stopped at teardown."""
    started: list[Gateway] = []

    def start(settings: Settings) -> Gateway:
        app = create_app(settings)
        gateway = Gateway(server=ThreadedServer(app).start(), app=app)
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        gateway.server.stop()


@pytest.fixture
def gateway(gateway_factory: Callable[[Settings], Gateway], make_settings: SettingsFactory) -> Gateway:
    """A gateway on the active backend with default test settings."""
    return gateway_factory(make_settings())


@dataclass
class Tenant:
    """An organisation with a provider, a model and a key that may call it."""

    organisation_id: str
    provider_id: str
    model: str
    model_id: str
    key_id: str
    secret: str


def provision(
    gateway: Gateway,
    *,
    provider_type: ProviderType = ProviderType.MOCK,
    base_url: str | None = None,
    provider_secret: str | None = None,
    provider_config: dict[str, Any] | None = None,
    model: str = "test-model",
    slug: str | None = None,
    pricing: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    model_type: str = "chat",
    grant: bool = True,
) -> Tenant:
    """Create a fresh tenant through the gateway's own control plane."""

    async def build() -> Tenant:
        control = gateway.runtime.control
        org = await control.tenancy.create_organisation("org-" + secrets.token_hex(4))
        provider = await control.providers.create(
            org.id, "provider", provider_type, base_url=base_url, config=provider_config or {}
        )
        key_id = None
        if provider_secret is not None:
            key_id = (await control.provider_keys.add(provider.id, "primary", secret=provider_secret)).id
        created = await control.models.create(
            org.id,
            model,
            slug=slug,
            provider_id=provider.id,
            provider_key_id=key_id,
            pricing=pricing,
            config=model_config or {},
            type=model_type,
        )
        issued = await control.keys.create(org.id, "test key", models=[model] if grant else [])
        return Tenant(org.id, provider.id, model, created.id, issued.key.id, issued.secret)

    return gateway.run(build())  # type: ignore[no-any-return]


@pytest.fixture
def tenant(gateway: Gateway) -> Tenant:
    """A tenant on the default gateway, served by the mock provider."""
    return provision(gateway)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty directory for an embedded gateway's data."""
    return tmp_path / "data"
