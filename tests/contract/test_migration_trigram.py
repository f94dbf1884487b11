"""Migration 0006 run by a PostgreSQL role that may not create extensions: it succeeds without the indexes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest
from sqlalchemy import text

from odock.db import migrate
from odock.db.engine import create_engine
from tests.support import services

pytestmark = pytest.mark.production

TRIGRAM_INDEXES = {"ix_api_keys_name_trgm", "ix_api_keys_key_preview_trgm"}


@pytest.fixture
async def restricted_url() -> AsyncIterator[str]:
    """A fresh database, and the URL of a role that may create tables in it but not extensions."""
    services.require_services()
    name = services.unique_name("odock_trgm")
    role = services.unique_name("odock_noext")
    await services.create_database(name)
    admin = await asyncpg.connect(services.POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')  # not CREATE on the database
        yield f"postgresql+asyncpg://{role}@{urlsplit(services.POSTGRES_URL).hostname}:5432/{name}"
    finally:
        await admin.close()
        await services.drop_database(name)
        cleanup = await asyncpg.connect(services.POSTGRES_URL)
        try:
            await cleanup.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await cleanup.close()


async def test_upgrade_without_the_extension_privilege_skips_the_indexes(
    restricted_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without CREATE on the database the chain still reaches head, with no drift and no trigram indexes."""
    engine = create_engine(restricted_url)
    try:
        with caplog.at_level(logging.WARNING, logger="odock.db.migrate"):
            await migrate.upgrade(engine)
        assert (await migrate.status(engine)).is_current
        assert await migrate.drift(engine) == []
        async with engine.connect() as conn:
            indexes = set(
                (await conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'api_keys'")))
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    assert not indexes & TRIGRAM_INDEXES
    assert "pg_trgm could not be created" in caplog.text
    assert "CREATE INDEX IF NOT EXISTS ix_api_keys_name_trgm" in caplog.text
