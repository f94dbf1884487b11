"""``odock providers|models``: upstream providers, their keys, and the models clients call.

Provider secrets are read from standard input (a hidden prompt on a terminal) or from a named
environment variable, never from a command-line argument, which would land in shell history.
They are encrypted with the gateway's pair before they reach the database and never printed.
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click

from odock.cli.common import emit, fail, json_option, parse_json_object, run_admin
from odock.providers.model_service import ModelType
from odock.providers.service import ProviderChanges
from odock.providers.tables import ProviderType

if TYPE_CHECKING:
    from odock.admin.context import AdminContext
    from odock.providers.tables import Model


@click.group()
def providers() -> None:
    """Upstream providers of an organisation."""


@providers.command("create")
@click.option("--org", required=True, help="Organisation name.")
@click.option(
    "--type", "type_", required=True, type=click.Choice([t.value for t in ProviderType], case_sensitive=False)
)
@click.option("--base-url", help="Upstream base URL (default: the type's public API).")
@click.option("--timeout-ms", type=click.IntRange(min=1), help="Upstream timeout in milliseconds.")
@click.option("--config", "config_json", metavar="JSON", help="Provider config as a JSON object.")
@click.option("--disabled", is_flag=True, help="Create it switched off.")
@click.argument("name")
@click.pass_context
def providers_create(
    ctx: click.Context,
    org: str,
    type_: str,
    base_url: str | None,
    timeout_ms: int | None,
    config_json: str | None,
    disabled: bool,
    name: str,
) -> None:
    """Create a provider."""
    config = parse_json_object(config_json, "--config")

    async def action(admin: AdminContext) -> str:
        organisation = await admin.control.tenancy.organisation_by_name(org)
        provider = await admin.control.providers.create(
            organisation.id,
            name,
            ProviderType(type_.upper()),
            base_url=base_url,
            timeout_ms=timeout_ms,
            config=config,
            enabled=not disabled,
        )
        return provider.id

    click.echo(f"created provider {name} in {org} ({run_admin(ctx, action)})")


@providers.command("list")
@click.option("--org", help="Only this organisation's providers.")
@json_option()
@click.pass_context
def providers_list(ctx: click.Context, org: str | None, as_json: bool) -> None:
    """List providers with their keys (masked previews only)."""

    async def action(admin: AdminContext) -> list[dict[str, object]]:
        control = admin.control
        names = {o.id: o.name for o in await control.tenancy.list_organisations()}
        org_id = (await control.tenancy.organisation_by_name(org)).id if org else None
        rows: list[dict[str, object]] = []
        for p in await control.providers.listed(org_id):
            keys = [
                f"{k.name}={k.key_preview}{' (revoked)' if k.revoked else ''}"
                for k in await control.provider_keys.listed(p.id)
            ]
            rows.append(
                {
                    "id": p.id,
                    "org": names.get(p.organisation_id),
                    "name": p.name,
                    "type": p.type.value,
                    "enabled": p.enabled,
                    "base_url": p.base_url,
                    "timeout_ms": p.timeout_ms,
                    "keys": keys,
                }
            )
        return rows

    emit(run_admin(ctx, action), ["org", "name", "type", "enabled", "base_url", "keys", "id"], as_json)


def _switch(enabled: bool) -> click.Command:
    @click.command("enable" if enabled else "disable")
    @click.option("--org", required=True, help="Organisation name.")
    @click.argument("name")
    @click.pass_context
    def switch(ctx: click.Context, org: str, name: str) -> None:
        async def action(admin: AdminContext) -> None:
            provider = await admin.control.providers.named(
                (await admin.control.tenancy.organisation_by_name(org)).id, name
            )
            await admin.control.providers.update(provider.id, ProviderChanges(enabled=enabled))

        run_admin(ctx, action)
        click.echo(f"provider {name} {'enabled' if enabled else 'disabled'}")

    switch.help = "Switch a provider on." if enabled else "Switch a provider off (its models are refused)."
    return switch


providers.add_command(_switch(True))
providers.add_command(_switch(False))


@providers.command("add-key")
@click.option("--org", required=True, help="Organisation name.")
@click.option("--provider", required=True, help="Provider name.")
@click.option("--from-env", "from_env", metavar="VAR", help="Read the secret from this environment variable.")
@click.argument("key_name")
@click.pass_context
def providers_add_key(
    ctx: click.Context, org: str, provider: str, from_env: str | None, key_name: str
) -> None:
    """Store a provider secret (read from stdin or --from-env), encrypted with the gateway's pair."""
    secret = _read_secret(from_env)

    async def action(admin: AdminContext) -> tuple[str, str]:
        organisation = await admin.control.tenancy.organisation_by_name(org)
        target = await admin.control.providers.named(organisation.id, provider)
        key = await admin.control.provider_keys.add(target.id, key_name, secret=secret)
        return key.id, key.key_preview

    key_id, masked = run_admin(ctx, action)
    click.echo(f"stored provider key {key_name} ({masked}) for {provider} ({key_id})")


def _read_secret(from_env: str | None) -> str:
    # The CLI is the process boundary: the operator names the variable that holds the secret.
    if from_env:
        value = os.environ.get(from_env, "").strip()
        if not value:
            fail(f"environment variable {from_env} is not set or empty")
        return value
    if sys.stdin.isatty():
        value = click.prompt("Provider secret", hide_input=True).strip()
    else:
        value = sys.stdin.read().strip()
    if not value:
        fail("no provider secret on standard input (or use --from-env VAR)")
    return str(value)


@click.group()
def models() -> None:
    """Models clients call by name."""


@models.command("create")
@click.option("--org", required=True, help="Organisation name.")
@click.option("--provider", required=True, help="Provider name.")
@click.option("--provider-key", help="Provider key name (when the provider needs one).")
@click.option("--slug", help="Upstream model id (default: the name).")
@click.option(
    "--type",
    "type_",
    type=click.Choice([t.value for t in ModelType]),
    default=ModelType.CHAT.value,
    show_default=True,
    help="Model type (decides the endpoint that serves it: chat and reasoning, or embeddings).",
)
@click.option("--capability", "capabilities", multiple=True, help="vision, reasoning, tool_use (repeatable).")
@click.option("--pricing", "pricing_json", metavar="JSON", help="Pricing in the stored per-1K shape.")
@click.option("--input-per-million", type=click.FloatRange(min=0), help="USD per 1M input tokens.")
@click.option("--output-per-million", type=click.FloatRange(min=0), help="USD per 1M output tokens.")
@click.option("--disabled", is_flag=True, help="Create it switched off.")
@click.argument("name")
@click.pass_context
def models_create(
    ctx: click.Context,
    org: str,
    provider: str,
    provider_key: str | None,
    slug: str | None,
    type_: str,
    capabilities: tuple[str, ...],
    pricing_json: str | None,
    input_per_million: float | None,
    output_per_million: float | None,
    disabled: bool,
    name: str,
) -> None:
    """Create a model."""
    pricing = _pricing(pricing_json, input_per_million, output_per_million)

    async def action(admin: AdminContext) -> str:
        control = admin.control
        organisation = await control.tenancy.organisation_by_name(org)
        target = await control.providers.named(organisation.id, provider)
        key_id = (await control.provider_keys.named(target.id, provider_key)).id if provider_key else None
        model = await control.models.create(
            organisation.id,
            name,
            slug=slug,
            provider_id=target.id,
            provider_key_id=key_id,
            type=type_,
            capabilities=capabilities,
            pricing=pricing,
            enabled=not disabled,
        )
        return model.id

    click.echo(f"created model {name} in {org} ({run_admin(ctx, action)})")


def _pricing(pricing_json: str | None, per_m_in: float | None, per_m_out: float | None) -> dict[str, Any]:
    per_million = per_m_in is not None or per_m_out is not None
    if pricing_json is not None and per_million:
        raise click.UsageError("give --pricing or --input/--output-per-million, not both")
    if per_million:
        if per_m_in is None or per_m_out is None:
            raise click.UsageError("give both --input-per-million and --output-per-million")
        from odock.admin.declarative import pricing_per_million

        return pricing_per_million(per_m_in, per_m_out)
    return parse_json_object(pricing_json, "--pricing")


@models.command("list")
@click.option("--org", help="Only this organisation's models.")
@json_option()
@click.pass_context
def models_list(ctx: click.Context, org: str | None, as_json: bool) -> None:
    """List models with their provider and pricing per 1M tokens."""

    async def action(admin: AdminContext) -> list[dict[str, object]]:
        control = admin.control
        names = {o.id: o.name for o in await control.tenancy.list_organisations()}
        providers_by_id = {p.id: p.name for p in await control.providers.listed()}
        org_id = (await control.tenancy.organisation_by_name(org)).id if org else None
        return [_model_row(m, names, providers_by_id) for m in await control.models.listed(org_id)]

    emit(
        run_admin(ctx, action),
        ["org", "name", "slug", "provider", "type", "enabled", "usd_per_1m", "id"],
        as_json,
    )


def _model_row(model: Model, orgs: dict[str, str], providers_by_id: dict[str, str]) -> dict[str, object]:
    text = (model.pricing or {}).get
    usd_in = (text("input") or {}).get("text_cost_per_1k_tokens")
    usd_out = (text("output") or {}).get("text_cost_per_1k_tokens")
    return {
        "id": model.id,
        "org": orgs.get(model.organisation_id),
        "name": model.name,
        "slug": model.slug,
        "provider": providers_by_id.get(model.provider_id or ""),
        "type": model.type,
        "enabled": model.enabled,
        "usd_per_1m": f"{_per_m(usd_in)} in / {_per_m(usd_out)} out" if model.pricing else None,
        "pricing": model.pricing,
    }


def _per_m(per_1k: object) -> str:
    return str((Decimal(str(per_1k or 0)) * 1000).normalize())
