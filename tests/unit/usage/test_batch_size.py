"""The usage writer's batch size: the backend's default unless set."""

from __future__ import annotations

from pathlib import Path

from odock.settings import load_settings

POSTGRES = "postgresql+asyncpg://odock@db.invalid/odock"


def test_batches_default_to_64_records_on_sqlite_and_16_on_postgresql(tmp_path: Path) -> None:
    """PostgreSQL gets small transactions (their server work stays out of the latency tail)."""
    assert load_settings(data_dir=tmp_path).resolved_usage_batch_size == 64
    assert load_settings(data_dir=tmp_path, database_url=POSTGRES).resolved_usage_batch_size == 16


def test_a_batch_size_that_is_set_wins_on_either_backend(tmp_path: Path) -> None:
    """ODOCK_USAGE_BATCH_SIZE (here as an override) replaces the default on both backends."""
    for database_url in (None, POSTGRES):
        settings = load_settings(data_dir=tmp_path, database_url=database_url, usage_batch_size=100)
        assert settings.resolved_usage_batch_size == 100
