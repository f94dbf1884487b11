"""Entry point of the ``odock`` CLI and its server/config/migrate commands."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import click

from odock.cli.apply import apply
from odock.cli.budgets import budgets, quotas
from odock.cli.common import settings_from
from odock.cli.keys import keys
from odock.cli.mcp import mcp
from odock.cli.policies import policies
from odock.cli.providers import models, providers
from odock.cli.tenancy import orgs, teams, users
from odock.cli.usage import usage
from odock.settings import Settings


@click.group()
@click.option("--config", type=click.Path(dir_okay=False), envvar="ODOCK_CONFIG", help="YAML config file.")
@click.version_option(package_name="odock")
def main(config: str | None) -> None:
    """Odock: an open-source AI governance gateway."""


for command in (orgs, teams, users, providers, models, mcp, keys, policies, budgets, quotas, usage, apply):
    main.add_command(command)


@main.command()
@click.option("--host", envvar="ODOCK_HOST", help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, envvar="ODOCK_PORT", help="Bind port (default 8080).")
@click.option("--workers", type=int, envvar="ODOCK_WORKERS", help="Worker processes (needs Redis when > 1).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML config file (as ODOCK_CONFIG; this option wins when both are given).",
)
@click.pass_context
def serve(
    ctx: click.Context, host: str | None, port: int | None, workers: int | None, config_file: str | None
) -> None:
    """Start the gateway."""
    import uvicorn

    from odock.app import create_app
    from odock.telemetry.exposition import multiprocess_directory
    from odock.telemetry.logging import configure_logging
    from odock.web.http_protocol import protocol_factory

    settings = settings_from(ctx, config_file=config_file, host=host, port=port, workers=workers)
    configure_logging(settings.log_level, settings.log_format)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools, with bounded request heads and times and JSON answers to malformed requests.
        "http": protocol_factory(settings),
        # No route speaks WebSocket: an Upgrade request is an ordinary request, answered in JSON.
        "ws": "none",
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds),
        "server_header": False,
        # The client address is odock's to decide (trusted_proxy_cidrs): uvicorn must not rewrite it
        # from X-Forwarded-For, which it otherwise does for peers in FORWARDED_ALLOW_IPS (127.0.0.1).
        "proxy_headers": False,
    }
    # uvicorn re-raises the signal it handled once it has shut down gracefully; a graceful
    # SIGTERM is a clean exit, so say so with status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if settings.workers == 1:
        app = create_app(settings)
        tune_garbage_collector()
        uvicorn.run(app, **common)
        return
    # Worker processes re-read settings: hand them the values this command resolved.
    for name in ("host", "port", "workers"):
        os.environ[f"ODOCK_{name.upper()}"] = str(getattr(settings, name))
    if settings.config:
        os.environ["ODOCK_CONFIG"] = str(settings.config)
    # The workers keep their metrics in files of a directory of their own, summed by the scrape.
    with multiprocess_directory():
        uvicorn.run("odock.cli.main:worker_app", factory=True, workers=settings.workers, **common)


def worker_app() -> Any:
    """Factory of one worker process of ``odock serve --workers N`` (the app, with the collector tuned)."""
    from odock.app import app_from_environment

    app = app_from_environment()
    tune_garbage_collector()
    return app


# Allocations between young-generation collections, then collections between older ones. The
# default (700, 10, 10) collects every few requests; a gateway allocates many short-lived
# objects per request and keeps few, so fewer, larger young collections cost less in total.
GC_THRESHOLDS = (20_000, 50, 100)


def tune_garbage_collector() -> None:
    """Freeze what importing and building the app allocated, and collect the young generation less often.

    Frozen objects (modules, classes, framework tables: most of the heap at start) are never
    scanned again, so a full collection under load stops costing tens of milliseconds, which
    otherwise shows up as latency spikes of the requests it interrupts.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@main.command()
@click.option(
    "--out", type=click.Path(dir_okay=False, writable=True), help="Write to this file instead of stdout."
)
def openapi(out: str | None) -> None:
    """Print (or write) the control-plane API's OpenAPI document (docs/openapi.json)."""
    from pathlib import Path

    from odock.web.api.openapi import openapi_document

    document = openapi_document()
    if out is None:
        click.echo(document, nl=False)
        return
    Path(out).write_text(document, encoding="utf-8")
    click.echo(f"wrote {out}")


@main.group()
def config() -> None:
    """Inspect configuration."""


@config.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate settings (and declared resources) without starting anything."""
    settings = settings_from(ctx)  # includes the global rate-limit policy
    if settings.config:
        from odock.admin.declarative import DeclarationError, read_declarations

        try:
            declared = read_declarations(settings.config)
        except DeclarationError as exc:
            click.echo(f"odock: {exc}", err=True)
            sys.exit(2)
        click.echo(f"declared resources: {declared.summary()}")
    mode = "embedded (SQLite + in-process state)" if settings.is_embedded else "production (Redis)"
    click.echo(f"settings OK: {mode}; database {settings.resolved_database_url.split('@')[-1]}")


@main.group()
def migrate() -> None:
    """Database schema migrations."""


@migrate.command("status")
@click.pass_context
def migrate_status(ctx: click.Context) -> None:
    """Show the schema revision against the code's head."""
    from odock.db import migrate as m

    settings = settings_from(ctx)
    state = asyncio.run(_with_engine(settings, m.status))
    click.echo(f"current: {state.current or '(empty)'}\nhead:    {state.head}")
    click.echo("up to date" if state.is_current else "migrations pending: run 'odock migrate upgrade'")


@migrate.command("upgrade")
@click.pass_context
def migrate_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations."""
    from odock.db import migrate as m

    settings = settings_from(ctx)
    asyncio.run(_with_engine(settings, m.upgrade))
    click.echo("schema is at head")


@migrate.command("check")
@click.pass_context
def migrate_check(ctx: click.Context) -> None:
    """Exit non-zero when the schema is behind or differs from the code (drift)."""
    from odock.db import migrate as m

    settings = settings_from(ctx)
    state = asyncio.run(_with_engine(settings, m.status))
    if not state.is_current:
        click.echo(f"schema is at {state.current or '(empty)'}, head is {state.head}", err=True)
        sys.exit(1)
    differences = asyncio.run(_with_engine(settings, m.drift))
    if differences:
        click.echo("schema drift detected:", err=True)
        for diff in differences:
            click.echo(f"  {diff}", err=True)
        sys.exit(1)
    click.echo("schema matches the code")


async def _with_engine(settings: Settings, action: Any) -> Any:
    from odock.db.engine import create_engine

    engine = create_engine(settings.resolved_database_url)
    try:
        return await action(engine)
    finally:
        await engine.dispose()
