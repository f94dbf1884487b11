"""``odock apply``: make the database match the resources declared in the config file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from odock.cli.common import fail, run_admin, settings_from

if TYPE_CHECKING:
    from odock.admin.context import AdminContext
    from odock.admin.reconcile import ApplyReport


@click.command("apply")
@click.option("--dry-run", is_flag=True, help="Show what would change without changing anything.")
@click.pass_context
def apply(ctx: click.Context, dry_run: bool) -> None:
    """Create missing and update differing declared resources (idempotent; never deletes)."""
    settings = settings_from(ctx)
    if settings.config is None:
        fail("no config file: pass --config FILE or set ODOCK_CONFIG", code=2)
    path = settings.config

    from odock.admin.declarative import read_declarations
    from odock.admin.reconcile import apply_declarations, exclusive_apply

    async def action(admin: AdminContext) -> ApplyReport:
        declared = read_declarations(path)
        async with exclusive_apply(admin.redis, admin.settings.redis_prefix):
            # The CLI is the process boundary: secrets the file names are read from its environment.
            return await apply_declarations(admin.control, declared, environ=os.environ, dry_run=dry_run)

    report = run_admin(ctx, action)
    prefix = "would be " if dry_run else ""
    for change in report.changes:
        if change.action != "unchanged":
            click.echo(f"{prefix}{change.action}: {change.kind} {change.name}")
    for issued in report.issued:
        click.echo(f"API key {issued.name} ({issued.key_id}) secret, shown once: {issued.secret}")
    click.echo(report.summary())
