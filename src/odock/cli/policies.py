"""``odock policies``: the rate-limit and IP policy envelope of an organisation, team, key or model.

``set`` replaces the whole envelope (``{}`` clears it); it is validated before anything is
stored, and an invalid field is named (``odock: ratelimit.requests.per_minutes: Extra inputs are
not permitted``). The envelope is stored bare and normalised; ``show`` prints what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import click
import orjson

from odock.cli.common import parse_json_object, run_admin
from odock.errors import NotFound
from odock.limits.service import PolicyScope

if TYPE_CHECKING:
    from odock.admin.context import AdminContext


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--org`` and at most one of ``--team``, ``--key`` and ``--model``."""
    options = [
        click.option("--org", required=True, help="Organisation name (alone: the organisation's policy)."),
        click.option("--team", help="Team name: the team's policy (applies to team keys)."),
        click.option("--key", "key_id", metavar="ID", help="API key id: the key's own policy."),
        click.option("--model", help="Model name: the model's policy."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


async def _policies(
    admin: AdminContext,
    org: str,
    team: str | None,
    key_id: str | None,
    model: str | None,
    replacement: dict[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    """(what, stored envelope) of the target, after replacing it when ``replacement`` is given."""
    control = admin.control
    organisation = await control.tenancy.organisation_by_name(org)
    what, scope, row_id = f"organisation {org}", PolicyScope.ORGANISATION, organisation.id
    if team is not None:
        found_team = await control.tenancy.team_by_name(organisation.id, team)
        what, scope, row_id = f"team {team} of {org}", PolicyScope.TEAM, found_team.id
    elif key_id is not None:
        key = await control.keys.get(key_id)
        if key.organisation_id != organisation.id:
            raise NotFound(f"API key '{key_id}' does not exist in '{org}'")
        what, scope, row_id = f"API key {key_id} of {org}", PolicyScope.API_KEY, key.id
    elif model is not None:
        found_model = await control.models.named(organisation.id, model)
        what, scope, row_id = f"model {model} of {org}", PolicyScope.MODEL, found_model.id
    if replacement is not None:
        return what, await control.policies.replace_document(scope, row_id, replacement)
    return what, await control.policies.stored(scope, row_id)


def _one_target(team: str | None, key_id: str | None, model: str | None) -> None:
    if sum(value is not None for value in (team, key_id, model)) > 1:
        raise click.UsageError("give at most one of --team, --key and --model")


@click.group()
def policies() -> None:
    """Rate-limit and IP policies of organisations, teams, API keys and models."""


@policies.command("set")
@target_options
@click.option(
    "--file", "source", type=click.File("r"), help="Read the envelope from this JSON file ('-': stdin)."
)
@click.option("--json", "text", metavar="JSON", help="The envelope as a JSON object.")
@click.pass_context
def policies_set(
    ctx: click.Context,
    org: str,
    team: str | None,
    key_id: str | None,
    model: str | None,
    source: IO[str] | None,
    text: str | None,
) -> None:
    """Replace a policy envelope (validated first; '{}' removes every limit)."""
    _one_target(team, key_id, model)
    if (source is None) == (text is None):
        raise click.UsageError("give exactly one of --file or --json")
    envelope = parse_json_object(source.read() if source else text, "--file" if source else "--json")

    async def action(admin: AdminContext) -> tuple[str, dict[str, Any]]:
        return await _policies(admin, org, team, key_id, model, envelope)

    what, stored = run_admin(ctx, action)
    click.echo(f"policies of {what} set to:")
    click.echo(orjson.dumps(stored, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


@policies.command("show")
@target_options
@click.pass_context
def policies_show(
    ctx: click.Context, org: str, team: str | None, key_id: str | None, model: str | None
) -> None:
    """Print a stored policy envelope as JSON ('{}' when it limits nothing)."""
    _one_target(team, key_id, model)

    async def action(admin: AdminContext) -> tuple[str, dict[str, Any]]:
        return await _policies(admin, org, team, key_id, model, None)

    _what, stored = run_admin(ctx, action)
    click.echo(orjson.dumps(stored, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
