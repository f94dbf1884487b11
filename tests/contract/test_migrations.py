"""The migration chain on a fresh SQLite file and a fresh PostgreSQL database.

Covers the library (``odock.db.migrate``: status, upgrade, drift), the CLI
(``odock migrate status|upgrade|check`` as an operator runs it) and the startup guard: a
gateway that may not migrate refuses to serve on a schema that is behind.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from odock.db import migrate
from odock.db.engine import create_engine
from odock.db.migrate import SchemaBehind, prepare_schema
from odock.settings import load_settings
from tests.support import services

ODOCK = str(Path(sys.executable).parent / "odock")
STRAY_COLUMN = "ALTER TABLE organisations ADD COLUMN stray TEXT"


@dataclass(frozen=True)
class Database:
    """An empty database owned by one test."""

    kind: str
    url: str
    data_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of an ``odock`` process on this database (no inherited ODOCK_* values)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ODOCK_")}
        env.update(ODOCK_DATABASE_URL=self.url, ODOCK_DATA_DIR=str(self.data_dir), ODOCK_LOG_LEVEL="warning")
        env.update(extra)
        return env


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh SQLite file, or a fresh uniquely named PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}", tmp_path)
        return
    services.require_services()
    name = services.unique_name("odock_migrations")
    url = asyncio.run(services.create_database(name))
    try:
        yield Database("postgresql", url, tmp_path)
    finally:
        asyncio.run(services.drop_database(name))


async def _add_stray_column(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(STRAY_COLUMN))
    finally:
        await engine.dispose()


def odock(database: Database, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the ``odock`` CLI against ``database``."""
    return subprocess.run(
        [ODOCK, *args], env=database.env(**env), capture_output=True, text=True, timeout=120, check=False
    )


# --- the library ----------------------------------------------------------------------------


async def test_fresh_database_has_no_revision(database: Database) -> None:
    """An empty database reports no current revision and is behind the chain's head."""
    engine = create_engine(database.url)
    try:
        state = await migrate.status(engine)
    finally:
        await engine.dispose()
    assert state.current is None
    assert state.head == migrate.head_revision()
    assert not state.is_current


async def test_upgrade_reaches_head_without_drift(database: Database) -> None:
    """upgrade brings an empty database to head, leaves no drift, and is a no-op when repeated."""
    engine = create_engine(database.url)
    try:
        await migrate.upgrade(engine)
        state = await migrate.status(engine)
        assert state.current == state.head
        assert state.is_current
        assert await migrate.drift(engine) == []
        await migrate.upgrade(engine)
        assert (await migrate.status(engine)).current == state.head
    finally:
        await engine.dispose()


async def test_manual_schema_change_is_drift(database: Database) -> None:
    """A column added by hand is reported as drift on a schema that is otherwise at head."""
    engine = create_engine(database.url)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text(STRAY_COLUMN))
        differences = await migrate.drift(engine)
        assert (await migrate.status(engine)).is_current
    finally:
        await engine.dispose()
    assert [(d[0], d[2], d[3].name) for d in differences] == [("remove_column", "organisations", "stray")]


async def test_startup_guard_follows_migrate_on_start(database: Database) -> None:
    """With migrate_on_start off an empty schema raises SchemaBehind; on, startup migrates to head."""
    engine = create_engine(database.url)
    url, data_dir = database.url, database.data_dir
    try:
        refusing = load_settings(database_url=url, data_dir=data_dir, migrate_on_start=False)
        with pytest.raises(SchemaBehind, match="odock migrate upgrade"):
            await prepare_schema(engine, refusing)
        assert (await migrate.status(engine)).current is None
        migrating = refusing.model_copy(update={"migrate_on_start": True})
        await prepare_schema(engine, migrating)
        assert (await migrate.status(engine)).is_current
        await prepare_schema(engine, refusing)  # at head: nothing to refuse
    finally:
        await engine.dispose()


# Imports odock and connects first, then waits for "go" on stdin, so that the upgrades overlap.
CONCURRENT_UPGRADER = """
import asyncio, sys
from odock.db import migrate
from odock.db.engine import create_engine

async def main() -> None:
    engine = create_engine(sys.argv[1])
    async with engine.connect():
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()

asyncio.run(main())
"""


def test_concurrent_upgrades_all_succeed(database: Database) -> None:
    """Several processes upgrading an empty database at once all succeed (one migrates, the rest wait)."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_UPGRADER, database.url],
            env=database.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outcomes = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    codes = [worker.returncode for worker in workers]
    failures = [err.strip()[-600:] for (_, err), code in zip(outcomes, codes, strict=True) if code]
    assert failures == []
    assert f"current: {migrate.head_revision()}" in odock(database, "migrate", "status").stdout


# --- the CLI --------------------------------------------------------------------------------


def test_cli_status_upgrade_check(database: Database) -> None:
    """'odock migrate' reports pending work, check fails until upgrade, then passes, then catches drift."""
    before = odock(database, "migrate", "status")
    assert before.returncode == 0, before.stderr
    assert "current: (empty)" in before.stdout
    assert "migrations pending" in before.stdout

    behind = odock(database, "migrate", "check")
    assert behind.returncode == 1
    assert "schema is at (empty)" in behind.stderr

    upgraded = odock(database, "migrate", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "schema is at head" in upgraded.stdout

    after = odock(database, "migrate", "status")
    assert "up to date" in after.stdout
    assert f"current: {migrate.head_revision()}" in after.stdout

    current = odock(database, "migrate", "check")
    assert current.returncode == 0, current.stderr
    assert "schema matches the code" in current.stdout

    asyncio.run(_add_stray_column(database.url))
    drifted = odock(database, "migrate", "check")
    assert drifted.returncode == 1
    assert "schema drift detected" in drifted.stderr
    assert "stray" in drifted.stderr


def test_gateway_refuses_to_serve_a_schema_that_is_behind(database: Database) -> None:
    """'odock serve' that may not migrate exits on an empty database, telling the operator what to run."""
    extra = {"ODOCK_MIGRATE_ON_START": "false", "ODOCK_PORT": "0", "ODOCK_DEMO": "false"}
    if database.kind == "postgresql":
        prefix = services.unique_name("odock_migrations") + ":"
        extra.update(ODOCK_REDIS_URL=services.REDIS_URL, ODOCK_REDIS_PREFIX=prefix)
    served = odock(database, "serve", **extra)
    assert served.returncode != 0
    output = served.stdout + served.stderr
    assert "database schema is at empty" in output
    assert "run 'odock migrate upgrade'" in output
    still_empty = odock(database, "migrate", "status")
    assert "current: (empty)" in still_empty.stdout
