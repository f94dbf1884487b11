"""``odock orgs|teams|users``: organisations, their teams and their users."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from odock.cli.common import emit, json_option, run_admin
from odock.tenancy.tables import Role

if TYPE_CHECKING:
    from odock.admin.context import AdminContext


@click.group()
def orgs() -> None:
    """Organisations (tenants)."""


@orgs.command("create")
@click.argument("name")
@click.option("--contact", help="Contact e-mail or name.")
@click.option(
    "--strict-provider-family",
    "strict",
    is_flag=True,
    help="Native endpoints refuse models of another API family instead of translating.",
)
@click.pass_context
def orgs_create(ctx: click.Context, name: str, contact: str | None, strict: bool) -> None:
    """Create an organisation."""

    async def action(admin: AdminContext) -> str:
        tenancy = admin.control.tenancy
        return (await tenancy.create_organisation(name, contact=contact, strict_provider_family=strict)).id

    org_id = run_admin(ctx, action)
    click.echo(f"created organisation {name} ({org_id})")


@orgs.command("list")
@json_option()
@click.pass_context
def orgs_list(ctx: click.Context, as_json: bool) -> None:
    """List organisations."""

    async def action(admin: AdminContext) -> list[dict[str, object]]:
        return [
            {
                "id": o.id,
                "name": o.name,
                "contact": o.contact,
                "status": o.status,
                "strict_provider_family": o.strict_provider_family,
                "created_at": o.created_at,
            }
            for o in await admin.control.tenancy.list_organisations()
        ]

    columns = ["name", "id", "contact", "status", "strict_provider_family", "created_at"]
    emit(run_admin(ctx, action), columns, as_json)


@click.group()
def teams() -> None:
    """Teams inside an organisation."""


@teams.command("create")
@click.option("--org", required=True, help="Organisation name.")
@click.argument("name")
@click.pass_context
def teams_create(ctx: click.Context, org: str, name: str) -> None:
    """Create a team."""

    async def action(admin: AdminContext) -> str:
        organisation = await admin.control.tenancy.organisation_by_name(org)
        return (await admin.control.tenancy.create_team(organisation.id, name)).id

    click.echo(f"created team {name} in {org} ({run_admin(ctx, action)})")


@teams.command("list")
@click.option("--org", required=True, help="Organisation name.")
@json_option()
@click.pass_context
def teams_list(ctx: click.Context, org: str, as_json: bool) -> None:
    """List the teams of an organisation."""

    async def action(admin: AdminContext) -> list[dict[str, object]]:
        organisation = await admin.control.tenancy.organisation_by_name(org)
        return [{"id": t.id, "name": t.name} for t in await admin.control.tenancy.list_teams(organisation.id)]

    emit(run_admin(ctx, action), ["name", "id"], as_json)


@click.group()
def users() -> None:
    """Users of an organisation."""


@users.command("create")
@click.option("--org", required=True, help="Organisation name.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role], case_sensitive=False),
    default=Role.USER.value,
    show_default=True,
)
@click.option("--name", help="Display name.")
@click.argument("email")
@click.pass_context
def users_create(ctx: click.Context, org: str, role: str, name: str | None, email: str) -> None:
    """Create a user."""

    async def action(admin: AdminContext) -> str:
        organisation = await admin.control.tenancy.organisation_by_name(org)
        user = await admin.control.users.create_user(
            email, organisation_id=organisation.id, role=Role(role.upper()), name=name
        )
        return user.id

    click.echo(f"created user {email.strip().lower()} in {org} ({run_admin(ctx, action)})")


@users.command("list")
@click.option("--org", help="Only this organisation's users.")
@json_option()
@click.pass_context
def users_list(ctx: click.Context, org: str | None, as_json: bool) -> None:
    """List users."""

    async def action(admin: AdminContext) -> list[dict[str, object]]:
        org_id = (await admin.control.tenancy.organisation_by_name(org)).id if org else None
        return [
            {"id": u.id, "email": u.email, "name": u.name, "role": u.role.value, "status": u.status.value}
            for u in await admin.control.users.list_users(org_id)
        ]

    emit(run_admin(ctx, action), ["email", "id", "name", "role", "status"], as_json)
