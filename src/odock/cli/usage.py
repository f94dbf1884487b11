"""``odock usage``: operations on stored usage — replaying the records the database refused.

``odock usage replay-dead-letters [--organisation ID] [--id ID ...]`` sends each selected dead
letter through the normal store path again (idempotent by record id): stored ones are deleted,
refused ones are kept with the new reason. Exit status 1 when any was kept.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from odock.cli.common import emit, fail, json_option, settings_from

if TYPE_CHECKING:
    from odock.settings import Settings


@click.group()
def usage() -> None:
    """Stored usage records."""


@usage.command("replay-dead-letters")
@click.option("--organisation", "organisation_id", help="Only this organisation's dead letters (its id).")
@click.option("--id", "ids", multiple=True, help="Only this dead letter (a usage record id); repeatable.")
@json_option()
@click.pass_context
def replay_dead_letters(
    ctx: click.Context, organisation_id: str | None, ids: tuple[str, ...], as_json: bool
) -> None:
    """Store dead letters again through the normal path; delete each one stored."""
    # Imported here so that `odock --help` and `odock serve` do not pay for the database stack.
    from sqlalchemy.exc import SQLAlchemyError

    from odock.db.migrate import SchemaBehind

    settings = settings_from(ctx)
    try:
        stored, kept = asyncio.run(_replay(settings, organisation_id, ids))
    except SchemaBehind as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database error: {str(exc).splitlines()[0]}")
    except OSError as exc:
        fail(f"cannot reach a required service: {exc}")
    rows = [{"id": i, "result": "stored", "error": None} for i in stored]
    rows += [{"id": i, "result": "kept", "error": reason} for i, reason in kept.items()]
    emit(rows, ("id", "result", "error"), as_json)
    if kept:
        sys.exit(1)


async def _replay(
    settings: Settings, organisation_id: str | None, ids: tuple[str, ...]
) -> tuple[tuple[str, ...], dict[str, str]]:
    from odock.db.engine import create_engine, session_factory
    from odock.db.migrate import prepare_schema
    from odock.usage.dead_letters import DeadLetters
    from odock.usage.store import UsageStore

    engine = create_engine(settings.resolved_database_url, pool_size=2)
    try:
        await prepare_schema(engine, settings)
        sessions = session_factory(engine)
        store = UsageStore(sessions)
        try:
            report = await DeadLetters(sessions).replay(store, organisation_id, ids)
        finally:
            await store.close()
    finally:
        await engine.dispose()
    return report.stored, report.kept
