"""Fixtures shared by the unit tests: one migrated SQLite file per run, copied for each test."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support import services


async def _migrate(directory: Path) -> None:
    async with services.migrated_engine("sqlite", "template", directory):
        pass


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the head of the migration chain: copy it instead of migrating per test."""
    directory = tmp_path_factory.mktemp("migrated")
    asyncio.run(_migrate(directory))
    return directory / "template.db"
