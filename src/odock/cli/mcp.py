"""``odock mcp``: MCP servers, the keys (and tools) granted them, and the STDIO allowlist.

Secrets (an auth token, password or client secret, header values, STDIO environment values) are
never command-line arguments, which would land in shell history: ``--secret-env
WHERE=VARIABLE`` reads each from a named environment variable (``auth_config.token=GH_TOKEN``,
``headers.X-Api-Key=API_KEY``, ``stdio_env.TOKEN=TOKEN``). They are encrypted before they reach
the database and printed as ``***``. A server is named by its slug within ``--org``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from odock.cli.common import emit, fail, json_option, parse_json_object, run_admin
from odock.mcp.link import AuthType, Transport
from odock.mcp.secrets import HIDDEN, SECRET_AUTH_FIELDS, shown_auth, shown_values

if TYPE_CHECKING:
    from collections.abc import Callable

    from odock.admin.context import AdminContext
    from odock.mcp.grant_service import ServerGrant
    from odock.mcp.tables import McpServer

_SECRET_PLACES = ("auth_config", "headers", "stdio_env")
_SET_REFUSED = frozenset(_SECRET_PLACES)


@click.group()
def mcp() -> None:
    """MCP servers of an organisation, key grants and the STDIO allowlist."""


def _server_options(create: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--transport",
                type=click.Choice([t.value for t in Transport], case_sensitive=False),
                required=create,
            ),
            click.option("--slug", help="URL name (default: made from the name)." if create else "New slug."),
            click.option("--name", "new_name", hidden=create, help="New display name."),
            click.option("--endpoint", help="Endpoint URL (STREAMABLE_HTTP, SSE)."),
            click.option("--command", "command_", help="Executable (STDIO; must be on the allowlist)."),
            click.option("--arg", "args", multiple=True, help="A STDIO argument (repeatable, in order)."),
            click.option("--auth-type", type=click.Choice([a.value for a in AuthType], case_sensitive=False)),
            click.option(
                "--auth",
                "auth",
                multiple=True,
                metavar="FIELD=VALUE",
                help="A non-secret auth_config field (username, token_url, client_id, scope, audience).",
            ),
            click.option(
                "--secret-env",
                "secret_env",
                multiple=True,
                metavar="WHERE=VARIABLE",
                help="A secret read from an environment variable: auth_config.FIELD, headers.NAME or "
                "stdio_env.NAME (repeatable).",
            ),
            click.option("--allow-tool", "allowed", multiple=True, help="Only these tools (repeatable)."),
            click.option("--block-tool", "blocked", multiple=True, help="Never these tools (repeatable)."),
            click.option("--team", help="Team scope: only keys of this team (team name)."),
            click.option(
                "--set",
                "set_json",
                metavar="JSON",
                help="Other fields as a JSON object (description, pricing, policies, semantic_filter, "
                "metadata, is_public, ...).",
            ),
        ]
        if create:
            options.append(click.option("--disabled", is_flag=True, help="Create it switched off."))
        for option in reversed(options):
            command = option(command)
        return command

    return wrap


def _fields(
    transport: str | None,
    slug: str | None,
    endpoint: str | None,
    command_: str | None,
    args: tuple[str, ...],
    auth_type: str | None,
    auth: tuple[str, ...],
    secret_env: tuple[str, ...],
    allowed: tuple[str, ...],
    blocked: tuple[str, ...],
    set_json: str | None,
) -> dict[str, Any]:
    """The service fields the options give (secrets read from the environment)."""
    fields = parse_json_object(set_json, "--set")
    refused = _SET_REFUSED & set(fields)
    if refused:
        raise click.BadParameter(
            f"{', '.join(sorted(refused))}: use --auth and --secret-env "
            "(secrets stay out of the command line)",
            param_hint="--set",
        )
    given = {
        "transport": transport.upper() if transport else None,
        "slug": slug,
        "endpoint_url": endpoint,
        "stdio_command": command_,
        "auth_type": auth_type.upper() if auth_type else None,
    }
    fields.update({k: v for k, v in given.items() if v is not None})
    if args:
        fields["stdio_args"] = list(args)
    if allowed:
        fields["allowed_tools"] = list(allowed)
    if blocked:
        fields["blocked_tools"] = list(blocked)
    if auth:
        fields["auth_config"] = dict(_pair(item, "--auth") for item in auth)
    for item in secret_env:
        where, variable = _pair(item, "--secret-env")
        place, _, name = where.partition(".")
        if place not in _SECRET_PLACES or not name:
            raise click.BadParameter(
                f"'{where}' must be auth_config.FIELD, headers.NAME or stdio_env.NAME",
                param_hint="--secret-env",
            )
        value = os.environ.get(variable)
        if value is None:
            fail(f"--secret-env {where}: the environment variable {variable} is not set")
        fields.setdefault(place, {})[name] = value
    return fields


def _pair(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"'{item}' is not NAME=VALUE", param_hint=option)
    return name, value


async def _org_id(admin: AdminContext, org: str) -> str:
    return (await admin.control.tenancy.organisation_by_name(org)).id


async def _team(admin: AdminContext, organisation_id: str, team: str | None, fields: dict[str, Any]) -> None:
    if team:
        fields["team_id"] = (await admin.control.tenancy.team_by_name(organisation_id, team)).id


def _row(server: McpServer, org: str | None = None) -> dict[str, Any]:
    return {
        "id": server.id,
        "org": org,
        "slug": server.slug,
        "name": server.name,
        "transport": server.transport,
        "target": server.endpoint_url or " ".join([server.stdio_command or "", *server.stdio_args]).strip(),
        "auth_type": server.auth_type,
        "auth_config": shown_auth(server.auth_config),
        "headers": shown_values(server.headers),
        "stdio_env": shown_values(server.stdio_env),
        "enabled": server.enabled,
        "allowed_tools": list(server.allowed_tools or []),
        "blocked_tools": list(server.blocked_tools or []),
        "pricing": dict(server.pricing or {}),
    }


_COLUMNS = ["org", "slug", "name", "transport", "target", "auth_type", "enabled", "id"]


@mcp.command("add")
@click.option("--org", required=True, help="Organisation name.")
@_server_options(create=True)
@json_option()
@click.argument("name")
@click.pass_context
def mcp_add(
    ctx: click.Context,
    /,
    org: str,
    team: str | None,
    disabled: bool,
    as_json: bool,
    name: str,
    **options: Any,
) -> None:
    """Add an MCP server."""
    options.pop("new_name", None)
    fields = _fields(**options) | {"name": name}
    if disabled:
        fields["enabled"] = False

    async def action(admin: AdminContext) -> dict[str, Any]:
        organisation_id = await _org_id(admin, org)
        await _team(admin, organisation_id, team, fields)
        return _row(await admin.control.mcp_servers.create(organisation_id, fields), org)

    row = run_admin(ctx, action)
    if as_json:
        emit([row], _COLUMNS, True)
    else:
        click.echo(
            f"added MCP server {row['slug']} in {org} ({row['id']}): reach it at /v1/mcp/{row['slug']}"
        )


@mcp.command("update")
@click.option("--org", required=True, help="Organisation name.")
@_server_options(create=False)
@click.option("--enable/--disable", "enabled", default=None, help="Switch it on or off.")
@click.option("--no-team", is_flag=True, help="Remove the team scope.")
@click.argument("slug_or_id")
@click.pass_context
def mcp_update(
    ctx: click.Context,
    /,
    org: str,
    team: str | None,
    enabled: bool | None,
    no_team: bool,
    new_name: str | None,
    slug_or_id: str,
    **options: Any,
) -> None:
    """Change an MCP server: only what is given changes (auth fields, headers, STDIO variables one by one)."""
    fields = _fields(**options)
    if new_name is not None:
        fields["name"] = new_name
    if enabled is not None:
        fields["enabled"] = enabled
    if no_team:
        fields["team_id"] = None

    async def action(admin: AdminContext) -> str:
        organisation_id = await _org_id(admin, org)
        await _team(admin, organisation_id, team, fields)
        server = await admin.control.mcp_servers.find(organisation_id, slug_or_id)
        # What is given is merged into what is stored (stored secrets kept with the service's "***"),
        # except the auth config of a new auth type, which is given whole.
        same_auth = fields.get("auth_type", server.auth_type) == server.auth_type
        stored = {"auth_config": server.auth_config, "headers": server.headers, "stdio_env": server.stdio_env}
        for place, values in stored.items():
            if place in fields and (place != "auth_config" or same_auth):
                kept = {k: v if place == "auth_config" and k not in SECRET_AUTH_FIELDS else HIDDEN
                        for k, v in (values or {}).items()}  # fmt: skip
                fields[place] = kept | fields[place]
        return (await admin.control.mcp_servers.update(server.id, fields)).slug

    click.echo(f"updated MCP server {run_admin(ctx, action)} in {org}")


@mcp.command("delete")
@click.option("--org", required=True, help="Organisation name.")
@click.argument("slug_or_id")
@click.pass_context
def mcp_delete(ctx: click.Context, org: str, slug_or_id: str) -> None:
    """Delete an MCP server with its key and tool grants."""

    async def action(admin: AdminContext) -> None:
        server = await admin.control.mcp_servers.find(await _org_id(admin, org), slug_or_id)
        await admin.control.mcp_servers.delete(server.id)

    run_admin(ctx, action)
    click.echo(f"deleted MCP server {slug_or_id} in {org}")


@mcp.command("list")
@click.option("--org", help="Only this organisation's servers.")
@json_option()
@click.pass_context
def mcp_list(ctx: click.Context, org: str | None, as_json: bool) -> None:
    """List MCP servers (secrets as ***)."""

    async def action(admin: AdminContext) -> list[dict[str, Any]]:
        names = {o.id: o.name for o in await admin.control.tenancy.list_organisations()}
        org_id = await _org_id(admin, org) if org else None
        return [_row(s, names.get(s.organisation_id)) for s in await admin.control.mcp_servers.listed(org_id)]

    emit(run_admin(ctx, action), _COLUMNS, as_json)


# --- key grants ---------------------------------------------------------------------------------
@mcp.command("grant")
@click.option(
    "--tool",
    "tools",
    multiple=True,
    help="Only this tool (repeatable; default: every tool the server allows).",
)
@click.argument("key_id")
@click.argument("servers", nargs=-1, required=True)
@click.pass_context
def mcp_grant(ctx: click.Context, tools: tuple[str, ...], key_id: str, servers: tuple[str, ...]) -> None:
    """Let a key use these servers (slugs or ids of the key's organisation); --tool limits it to tools."""
    from odock.mcp.grant_service import WantedGrant

    wanted = [WantedGrant(s, list(tools) if tools else None) for s in servers]

    async def action(admin: AdminContext) -> list[ServerGrant]:
        return await admin.control.mcp_grants.grant(key_id, wanted)

    _print_grants(run_admin(ctx, action), False)


@mcp.command("revoke")
@click.argument("key_id")
@click.argument("server")
@click.pass_context
def mcp_revoke(ctx: click.Context, key_id: str, server: str) -> None:
    """The key may no longer use this server (its tool grants there go too)."""

    async def action(admin: AdminContext) -> None:
        await admin.control.mcp_grants.revoke(key_id, server)

    run_admin(ctx, action)
    click.echo(f"key {key_id} may no longer use MCP server {server}")


@mcp.command("grants")
@json_option()
@click.argument("key_id")
@click.pass_context
def mcp_grants(ctx: click.Context, as_json: bool, key_id: str) -> None:
    """The MCP servers a key may use, with its tool grants."""

    async def action(admin: AdminContext) -> list[ServerGrant]:
        return await admin.control.mcp_grants.of_key(key_id)

    _print_grants(run_admin(ctx, action), as_json)


def _print_grants(grants: list[ServerGrant], as_json: bool) -> None:
    rows = [
        {"slug": g.server.slug, "id": g.server.id, "tools": list(g.tools) if g.tools is not None else "(all)"}
        for g in grants
    ]
    emit(rows, ["slug", "tools", "id"], as_json)


# --- the STDIO allowlist ------------------------------------------------------------------------
@mcp.group("allowlist")
def allowlist() -> None:
    """Commands STDIO servers may run (they run where the gateway runs, with its rights)."""


@allowlist.command("list")
@json_option()
@click.pass_context
def allowlist_list(ctx: click.Context, as_json: bool) -> None:
    """The allowed commands: from the settings and added ones."""

    async def action(admin: AdminContext) -> list[dict[str, Any]]:
        return [
            {"command": e.command, "origin": e.origin, "note": e.note, "added_by": e.added_by, "id": e.id}
            for e in await admin.control.mcp_servers.allowlist()
        ]

    emit(run_admin(ctx, action), ["command", "origin", "note", "added_by", "id"], as_json)


@allowlist.command("add")
@click.option("--note", help="Why it is allowed.")
@click.argument("command")
@click.pass_context
def allowlist_add(ctx: click.Context, note: str | None, command: str) -> None:
    """Allow a command (an executable name or absolute path, matched exactly)."""
    from odock.cli.common import operator_name

    async def action(admin: AdminContext) -> str:
        row = await admin.control.mcp_servers.allow(command, note=note, added_by=f"cli:{operator_name()}")
        return row.id

    click.echo(f"allowed {command} for STDIO MCP servers ({run_admin(ctx, action)})")


@allowlist.command("remove")
@click.argument("command")
@click.pass_context
def allowlist_remove(ctx: click.Context, command: str) -> None:
    """Remove an added command (by command or id); servers saved with it stay."""

    async def action(admin: AdminContext) -> None:
        await admin.control.mcp_servers.disallow(command)

    run_admin(ctx, action)
    click.echo(f"removed {command} from the STDIO allowlist")
