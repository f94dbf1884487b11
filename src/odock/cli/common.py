"""What every ``odock`` command shares: settings, the admin context, errors and output.

An admin command is one call of :func:`run_admin`::

    settings (exit 2 on a bad field) → open_admin → the command's coroutine → close
    OdockError, a schema that is behind, an unreachable database → one line on stderr, exit 1
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import orjson

from odock.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from odock.admin.context import AdminContext

T = TypeVar("T")


def settings_from(ctx: click.Context, config_file: str | None = None, **overrides: Any) -> Settings:
    """Parse settings once, or exit with a message naming the bad field.

    ``config_file`` is a command's own ``--config``: it wins over ``odock --config`` and
    ``ODOCK_CONFIG`` (which the group's option also reads).
    """
    config = config_file or ctx.find_root().params.get("config")
    if config:
        # Also the ``config`` setting itself, which ODOCK_CONFIG would otherwise override: the file
        # whose settings were read must be the one whose declared resources are applied.
        overrides["config"] = Path(config)
    try:
        return load_settings(Path(config) if config else None, **overrides)
    except SettingsError as exc:
        click.echo(f"odock: {exc}", err=True)
        sys.exit(2)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``odock: message`` on stderr and exit."""
    click.echo(f"odock: {message}", err=True)
    sys.exit(code)


def run_admin(ctx: click.Context, action: Callable[[AdminContext], Awaitable[T]]) -> T:
    """Run ``action`` inside an admin context; report failures as one line, never a traceback."""
    # Imported here so that `odock --help` and `odock serve` do not pay for the admin stack.
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from odock.admin.context import open_admin
    from odock.admin.declarative import DeclarationError
    from odock.audit.context import AuditActor, acting_as
    from odock.db.migrate import SchemaBehind
    from odock.errors import OdockError
    from odock.providers.crypto import EnvelopeError
    from odock.telemetry.logging import configure_logging

    settings = settings_from(ctx)
    configure_logging("warning", settings.log_format)

    async def main() -> T:
        # Every change a command makes is audited as the operating-system user who ran it.
        with acting_as(AuditActor(kind="cli", label=operator_name())):
            async with open_admin(settings) as admin:
                return await action(admin)

    try:
        return asyncio.run(main())
    except (OdockError, DeclarationError) as exc:
        fail(str(exc))
    except (SchemaBehind, EnvelopeError) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database error: {_first_line(exc)}")
    except (RedisError, OSError) as exc:
        fail(f"cannot reach a required service: {_first_line(exc)}")


def operator_name() -> str:
    """The operating-system user running the command (the CLI's audit-log actor)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """Print rows as JSON or as an aligned table (``-`` for empty cells)."""
    if as_json:
        click.echo(orjson.dumps(list(rows), option=orjson.OPT_INDENT_2, default=str).decode())
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row_cells in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row_cells, widths, strict=True)).rstrip())


def json_option(
    help: str = "Print JSON instead of a table.",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--json`` flag."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def parse_json_object(value: str | None, param: str) -> dict[str, Any]:
    """A JSON object given on the command line (empty when not given)."""
    if value is None:
        return {}
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=param) from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=param)
    return parsed


def aware_datetime(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """Click callback: an ISO 8601 timestamp that carries its UTC offset (``…+01:00`` or ``…Z``)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"'{value}' is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        raise click.BadParameter(f"'{value}' has no UTC offset (add Z or +HH:MM)")
    return parsed


def cell(value: Any) -> str:
    """One value as table text."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
