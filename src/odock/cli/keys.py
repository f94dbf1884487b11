"""``odock keys``: virtual API keys, and the provider-key encryption pair.

A key's secret is printed exactly once, by ``create`` and ``rotate``; every other command shows
the masked preview only.
"""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from odock.cli.common import cell, emit, fail, json_option, run_admin
from odock.keys.tables import ApiKeyType
from odock.providers.crypto import KeyPair, generate_key_pair
from odock.providers.keyring import KEY_ID_FILE, PRIVATE_KEY_FILE

if TYPE_CHECKING:
    from odock.admin.context import AdminContext
    from odock.keys.service import IssuedKey
    from odock.keys.tables import ApiKey

PUBLIC_KEY_FILE = "provider-key.pub.pem"
ENV_FILE = "provider-key.env"


@click.group()
def keys() -> None:
    """Virtual API keys that applications present."""


@keys.command("create")
@click.option("--org", required=True, help="Organisation name.")
@click.option(
    "--type",
    "type_",
    type=click.Choice([t.value for t in ApiKeyType], case_sensitive=False),
    help="Owner type (default: TEAM with --team, USER with --user, else ORGANISATION).",
)
@click.option("--team", help="Owning team name (TEAM keys).")
@click.option("--user", help="Owning user e-mail (USER keys).")
@click.option(
    "--expires",
    metavar="ISO8601",
    callback=lambda ctx, param, value: _expiry(value),
    help="Expiry, ISO 8601, e.g. 2026-12-31T23:59:59Z; without an offset, local time in --timezone.",
)
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone for expiry and time views.")
@click.option("--model", "models", multiple=True, help="Grant this model (repeatable).")
@json_option()
@click.argument("name")
@click.pass_context
def keys_create(
    ctx: click.Context,
    org: str,
    type_: str | None,
    team: str | None,
    user: str | None,
    expires: datetime | None,
    timezone: str,
    models: tuple[str, ...],
    as_json: bool,
    name: str,
) -> None:
    """Issue a key and print its secret (shown this once only)."""
    kind = (
        ApiKeyType(type_.upper()) if type_ else ApiKeyType.TEAM if team else ApiKeyType.USER if user else None
    )

    async def action(admin: AdminContext) -> IssuedKey:
        control = admin.control
        organisation = await control.tenancy.organisation_by_name(org)
        team_id = (await control.tenancy.team_by_name(organisation.id, team)).id if team else None
        user_id = (await control.users.user_by_email(user)).id if user else None
        return await control.keys.create(
            organisation.id,
            name,
            type=kind or ApiKeyType.ORGANISATION,
            team_id=team_id,
            user_id=user_id,
            expires_at=expires,
            timezone=timezone,
            models=models,
        )

    _show_secret(run_admin(ctx, action), as_json, "created")


def _expiry(value: str | None) -> datetime | None:
    """An ISO 8601 expiry, with or without a UTC offset (the key's timezone reads one without)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"'{value}' is not an ISO 8601 timestamp") from exc


@keys.command("list")
@click.option("--org", help="Only this organisation's keys.")
@json_option()
@click.pass_context
def keys_list(ctx: click.Context, org: str | None, as_json: bool) -> None:
    """List keys, newest first (masked previews, never secrets)."""

    async def action(admin: AdminContext) -> list[dict[str, Any]]:
        names = {o.id: o.name for o in await admin.control.tenancy.list_organisations()}
        org_id = (await admin.control.tenancy.organisation_by_name(org)).id if org else None
        return [_key_row(k, names.get(k.organisation_id)) for k in await admin.control.keys.listed(org_id)]

    columns = ["id", "org", "name", "type", "preview", "expires_at", "revoked", "rotations"]
    emit(run_admin(ctx, action), columns, as_json)


@keys.command("show")
@json_option()
@click.argument("key_id")
@click.pass_context
def keys_show(ctx: click.Context, as_json: bool, key_id: str) -> None:
    """Show one key with its model grants and rotation history."""

    async def action(admin: AdminContext) -> dict[str, Any]:
        key = await admin.control.keys.get(key_id)
        org = await admin.control.tenancy.organisation(key.organisation_id)
        row = _key_row(key, org.name)
        row["models"] = await admin.control.keys.grants(key.id)
        row["rotation_history"] = [
            {
                "rotated_at": r.rotated_at,
                "previous_preview": r.previous_key_preview,
                "previous_expires_at": r.previous_expires_at,
                "new_expires_at": r.new_expires_at,
                "rotated_by": r.rotated_by,
            }
            for r in await admin.control.keys.rotations(key.id)
        ]
        return row

    row = run_admin(ctx, action)
    if as_json:
        click.echo(orjson.dumps(row, default=str, option=orjson.OPT_INDENT_2).decode())
        return
    for field in ("id", "org", "name", "type", "preview", "timezone", "expires_at", "revoked", "rotations"):
        click.echo(f"{field + ':':<12} {cell(row[field])}")
    click.echo(f"{'models:':<12} {', '.join(row['models']) or '(none: the key can call nothing)'}")
    click.echo("rotation history:")
    emit(
        row["rotation_history"],
        ["rotated_at", "previous_preview", "previous_expires_at", "new_expires_at", "rotated_by"],
        False,
    )


def _revocation(revoked: bool) -> click.Command:
    @click.command("revoke" if revoked else "unrevoke")
    @click.argument("key_id")
    @click.pass_context
    def command(ctx: click.Context, key_id: str) -> None:
        async def action(admin: AdminContext) -> ApiKey:
            return await admin.control.keys.revoke(key_id, revoked=revoked)

        key = run_admin(ctx, action)
        click.echo(f"key {key.id} ({key.key_preview}) {'revoked' if revoked else 'reinstated'}")

    command.help = (
        "Revoke a key (refused with api_key_revoked at once)." if revoked else "Reinstate a revoked key."
    )
    return command


keys.add_command(_revocation(True))
keys.add_command(_revocation(False))


@keys.command("rotate")
@click.option(
    "--expires",
    metavar="ISO8601",
    callback=lambda ctx, param, value: _expiry(value),
    help="New expiry, ISO 8601; without an offset, local time in the key's timezone (default: unchanged).",
)
@json_option()
@click.argument("key_id")
@click.pass_context
def keys_rotate(ctx: click.Context, expires: datetime | None, as_json: bool, key_id: str) -> None:
    """Give a key a new secret (printed once); the old secret stops working at once."""

    async def action(admin: AdminContext) -> IssuedKey:
        return await admin.control.keys.rotate(key_id, expires_at=expires, rotated_by=_operator())

    _show_secret(run_admin(ctx, action), as_json, "rotated")


@keys.command("grant")
@click.option("--model", "models", multiple=True, required=True, help="Model name (repeatable).")
@click.argument("key_id")
@click.pass_context
def keys_grant(ctx: click.Context, models: tuple[str, ...], key_id: str) -> None:
    """Allow a key to call more models (existing grants are kept)."""

    async def action(admin: AdminContext) -> list[str]:
        await admin.control.keys.grant(key_id, models)
        return await admin.control.keys.grants(key_id)

    click.echo(f"key {key_id} may call: {', '.join(run_admin(ctx, action))}")


@keys.command("encryption-pair")
@click.option("--key-id", help="Key id written into envelopes (default: provider-key-rsa-YYYYMMDD).")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the pair to files here instead of printing it (private files mode 0600).",
)
def keys_encryption_pair(key_id: str | None, out_dir: Path | None) -> None:
    """Generate the RSA pair that encrypts provider keys (spec §3.6)."""
    pair = generate_key_pair(key_id or f"provider-key-rsa-{datetime.now(UTC):%Y%m%d}")
    if out_dir is None:
        click.echo(_pair_env(pair), nl=False)
        return
    files = [
        (PRIVATE_KEY_FILE, pair.private_pem, 0o600),
        (KEY_ID_FILE, pair.key_id + "\n", 0o600),
        (ENV_FILE, _pair_env(pair), 0o600),
        (PUBLIC_KEY_FILE, pair.public_pem, 0o644),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = [name for name, _text, _mode in files if (out_dir / name).exists()]
    if taken:
        fail(f"refusing to overwrite {', '.join(taken)} in {out_dir}")
    for name, text, mode in files:
        fd = os.open(out_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    click.echo(f"wrote {', '.join(name for name, _t, _m in files)} to {out_dir} (key id {pair.key_id})")


def _pair_env(pair: KeyPair) -> str:
    """Environment lines for the gateway (secret) and for browsers that encrypt (public)."""
    return (
        "# Gateway (secret: keep out of version control)\n"
        f"ODOCK_PROVIDER_KEY_ENCRYPTION_KEY_ID={pair.key_id}\n"
        f'ODOCK_PROVIDER_KEY_ENCRYPTION_PRIVATE_KEY="{_escaped(pair.private_pem)}"\n'
        "# Browsers and clients that encrypt provider keys (public)\n"
        f"NEXT_PUBLIC_PROVIDER_KEY_ENCRYPTION_KEY_ID={pair.key_id}\n"
        f'NEXT_PUBLIC_PROVIDER_KEY_ENCRYPTION_PUBLIC_KEY="{_escaped(pair.public_pem)}"\n'
    )


def _escaped(pem: str) -> str:
    return pem.strip().replace("\n", "\\n") + "\\n"


def _show_secret(issued: IssuedKey, as_json: bool, verb: str) -> None:
    key = issued.key
    if as_json:
        payload = {
            "id": key.id,
            "name": key.name,
            "type": key.type.value,
            "secret": issued.secret,
            "preview": key.key_preview,
            "expires_at": key.expires_at,
        }
        click.echo(orjson.dumps(payload, default=str).decode())
        return
    click.echo(f"{verb} key {key.id} ({key.name})")
    click.echo(f"secret (shown once, store it now): {issued.secret}")


def _key_row(key: ApiKey, org: str | None) -> dict[str, Any]:
    return {
        "id": key.id,
        "org": org,
        "name": key.name,
        "type": key.type.value,
        "preview": key.key_preview,
        "timezone": key.timezone,
        "expires_at": key.expires_at,
        "revoked": key.revoked,
        "rotations": key.rotation_count,
        "created_at": key.created_at,
    }


def _operator() -> str:
    # Recorded in the rotation history; best effort (containers may have no user name).
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"
