"""``odock budgets|quotas``: money budgets and metric quotas over period windows.

Money is given in USD (``--amount-usd 12.50``: exact, at most 9 decimals) or in nanos
(``--amount-nanos``) and stored as integer nanos (1 USD = 1e9). ``set-limit`` changes a limit
through the same service as the admin API: the current window keeps what it used, including use
production gateways have settled in Redis but not yet flushed to the ledger. Listings show each meter's
current window with what the ledger has settled in it (``used``) against its effective limit;
amounts reserved by requests in flight are not included (``GET /v1/keys/self`` shows those).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
import orjson

from odock.budgets.control import MeterSchedule
from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period
from odock.cli.common import aware_datetime, emit, json_option, run_admin
from odock.errors import UnprocessableEntity
from odock.rules import nanos_to_usd, usd_to_nanos

if TYPE_CHECKING:
    from odock.admin.context import AdminContext
    from odock.budgets.control import BudgetControl

OWNER_FORMS = "org|team:NAME|user:EMAIL|key:ID"
_OWNER_PREFIXES = {"team": OwnerType.TEAM, "user": OwnerType.USER, "key": OwnerType.APIKEY}


@dataclass(frozen=True)
class Owner:
    """An owner as given on the command line: the organisation, or a team/user/key reference."""

    type: OwnerType
    reference: str | None = None


@dataclass(frozen=True)
class ScheduleOptions:
    """The options every ``create`` shares: owner and schedule."""

    owner: Owner
    period: Period
    start: datetime | None
    end: datetime | None
    timezone: str
    rollover: bool
    thresholds: tuple[int, ...]
    disabled: bool

    def schedule(self, owner_id: str | None) -> MeterSchedule:
        """The keyword arguments of ``BudgetControl.create_budget`` / ``create_quota``."""
        return MeterSchedule(
            owner_type=self.owner.type, owner_id=owner_id, period=self.period, start_at=self.start,
            end_at=self.end, timezone=self.timezone, rollover=self.rollover, thresholds=self.thresholds,
            active=not self.disabled,
        )  # fmt: skip


def _owner(ctx: click.Context, param: click.Parameter, value: str) -> Owner:
    """Click callback: ``org``, ``team:NAME``, ``user:EMAIL`` or ``key:ID``."""
    if value.strip().lower() == "org":
        return Owner(OwnerType.ORG)
    prefix, _, reference = value.partition(":")
    kind = _OWNER_PREFIXES.get(prefix.strip().lower())
    if kind is None or not reference.strip():
        raise click.BadParameter(f"'{value}' is not one of {OWNER_FORMS}")
    return Owner(kind, reference.strip())


def schedule_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The owner and schedule options of ``budgets create`` and ``quotas create``."""
    options = [
        click.option(
            "--owner",
            default="org",
            show_default=True,
            metavar=OWNER_FORMS,
            callback=_owner,
            help="Who is limited: the organisation, or one team, user or API key of it.",
        ),
        click.option(
            "--period",
            type=click.Choice([p.value for p in Period], case_sensitive=False),
            default=Period.MONTHLY.value,
            show_default=True,
            help="Length of one window.",
        ),
        click.option(
            "--start",
            metavar="ISO8601",
            callback=aware_datetime,
            help="Start of the first window, with offset (default: now); later windows keep its local time.",
        ),
        click.option(
            "--end",
            metavar="ISO8601",
            callback=aware_datetime,
            help="End of the last window (default: none).",
        ),
        click.option(
            "--timezone", default="UTC", show_default=True, help="IANA zone windows are anchored in."
        ),
        click.option("--rollover", is_flag=True, help="Carry what a window leaves unused into the next one."),
        click.option(
            "--threshold",
            "thresholds",
            type=click.IntRange(1, 1000),
            multiple=True,
            help="Alert threshold, percent of the limit (repeatable).",
        ),
        click.option("--disabled", is_flag=True, help="Create it switched off."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _schedule(values: dict[str, Any]) -> ScheduleOptions:
    return ScheduleOptions(
        owner=values["owner"],
        period=Period(values["period"].upper()),
        start=values["start"],
        end=values["end"],
        timezone=values["timezone"],
        rollover=values["rollover"],
        thresholds=tuple(values["thresholds"]),
        disabled=values["disabled"],
    )


async def _owner_id(admin: AdminContext, organisation_id: str, owner: Owner) -> str | None:
    """The id of the owning team, user or key, checked to belong to the organisation."""
    control = admin.control
    if owner.type == OwnerType.ORG or owner.reference is None:
        return None
    if owner.type == OwnerType.TEAM:
        return (await control.tenancy.team_by_name(organisation_id, owner.reference)).id
    found = (
        await control.users.user_by_email(owner.reference)
        if owner.type == OwnerType.USER
        else await control.keys.get(owner.reference)
    )
    if found.organisation_id != organisation_id:
        raise UnprocessableEntity(f"{owner.reference} is not in this organisation", param="owner")
    return found.id


def _amount(amount_usd: str | None, amount_nanos: int | None) -> int:
    """Nanos from exactly one of --amount-usd and --amount-nanos (a usage error otherwise)."""
    if (amount_usd is None) == (amount_nanos is None):
        raise click.UsageError("give exactly one of --amount-usd or --amount-nanos")
    if amount_nanos is not None:
        return amount_nanos
    assert amount_usd is not None
    try:
        return usd_to_nanos(amount_usd)
    except UnprocessableEntity as exc:
        raise click.BadParameter(exc.message, param_hint="--amount-usd") from exc


def _amount_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--amount-nanos", type=click.IntRange(min=0), help="Amount per window in nanos USD (1 USD = 1e9)."
    )(command)
    return click.option(
        "--amount-usd", metavar="USD", help="Amount per window in USD, e.g. 12.50 (exact, ≤ 9 decimals)."
    )(command)


# --- listing ----------------------------------------------------------------------------
async def _rows(
    admin: AdminContext, organisation_id: str, meters: Sequence[Budget | Quota]
) -> list[dict[str, Any]]:
    """Table rows of budgets or quotas with their current window, used and limit."""
    control = admin.control
    teams = {t.id: t.name for t in await control.tenancy.list_teams(organisation_id)}
    users = {u.id: u.email for u in await control.users.list_users(organisation_id)}
    windows = await admin.budgets.current_windows(meters)
    rows = []
    for meter in meters:
        window = windows[meter.id]
        limit = meter.amount_nanos_usd if isinstance(meter, Budget) else meter.limit
        row: dict[str, Any] = {
            "id": meter.id,
            "name": meter.name,
            "owner": _owner_label(meter, teams, users),
            "period": meter.period.value,
            "timezone": meter.timezone,
            "start_at": meter.start_at,
            "end_at": meter.end_at,
            "rollover": meter.rollover,
            "thresholds": list(meter.thresholds or ()),
            "active": meter.active,
            "version": meter.version,
            "window_start": window.start if window else None,
            "window_end": window.end if window else None,
            "used": window.used if window else None,
            "limit": window.limit if window else limit,
        }
        if isinstance(meter, Budget):
            row["amount_nanos_usd"] = meter.amount_nanos_usd
            row["used_usd"] = None if row["used"] is None else nanos_to_usd(row["used"])
            row["limit_usd"] = nanos_to_usd(row["limit"])
        else:
            row["metric"] = meter.metric.value
        rows.append(row)
    return rows


def _owner_label(meter: Budget | Quota, teams: dict[str, str], users: dict[str, str]) -> str:
    if meter.owner_type == OwnerType.TEAM:
        return f"team:{teams.get(meter.team_id or '', meter.team_id)}"
    if meter.owner_type == OwnerType.USER:
        return f"user:{users.get(meter.user_id or '', meter.user_id)}"
    if meter.owner_type == OwnerType.APIKEY:
        return f"key:{meter.api_key_id}"
    return "org"


# --- switching and limits (shared by both groups) ------------------------------------------
Lookup = Callable[["BudgetControl", str], Awaitable[Budget | Quota]]


def _switch(kind: str, lookup: Lookup, enabled: bool) -> click.Command:
    @click.command("enable" if enabled else "disable")
    @click.argument("meter_id")
    @click.pass_context
    def switch(ctx: click.Context, meter_id: str) -> None:
        async def action(admin: AdminContext) -> str:
            meter = await lookup(admin.budgets, meter_id)
            await admin.budgets.set_active(meter.id, enabled)
            return meter.name

        name = run_admin(ctx, action)
        click.echo(f"{kind} {name} ({meter_id}) {'enabled' if enabled else 'disabled'}")

    switch.help = (
        f"Switch a {kind} on (it applies from the next request)."
        if enabled
        else f"Switch a {kind} off (requests are no longer counted against it)."
    )
    return switch


Make = Callable[["BudgetControl", str, MeterSchedule], Awaitable[Budget | Quota]]
Listed = Callable[["BudgetControl", str], Awaitable[Sequence[Budget | Quota]]]


def _create(
    ctx: click.Context,
    org: str,
    schedule: ScheduleOptions,
    as_json: bool,
    make: Make,
    summary: Callable[[dict[str, Any]], str],
) -> None:
    """Create a budget or quota for the organisation and owner given, and show it (a line or JSON)."""

    async def action(admin: AdminContext) -> list[dict[str, Any]]:
        organisation = await admin.control.tenancy.organisation_by_name(org)
        owner_id = await _owner_id(admin, organisation.id, schedule.owner)
        meter = await make(admin.budgets, organisation.id, schedule.schedule(owner_id))
        return await _rows(admin, organisation.id, [meter])

    row = run_admin(ctx, action)[0]
    click.echo(orjson.dumps(row, option=orjson.OPT_INDENT_2).decode() if as_json else summary(row))


def _lister(help: str, listed: Listed, columns: list[str]) -> click.Command:
    @click.command("list", help=help)
    @click.option("--org", required=True, help="Organisation name.")
    @json_option()
    @click.pass_context
    def list_meters(ctx: click.Context, org: str, as_json: bool) -> None:
        async def action(admin: AdminContext) -> list[dict[str, Any]]:
            organisation = await admin.control.tenancy.organisation_by_name(org)
            return await _rows(admin, organisation.id, list(await listed(admin.budgets, organisation.id)))

        emit(run_admin(ctx, action), columns, as_json)

    return list_meters


async def _set_limit(admin: AdminContext, lookup: Lookup, meter_id: str, limit: int) -> Budget | Quota:
    meter = await lookup(admin.budgets, meter_id)
    # The API's path: the same update, carrying use the gateways' counters hold beyond the ledger.
    return await admin.budgets.update(meter.id, {"limit": limit})


async def _budget(control: BudgetControl, meter_id: str) -> Budget | Quota:
    return await control.budget(meter_id)


async def _quota(control: BudgetControl, meter_id: str) -> Budget | Quota:
    return await control.quota(meter_id)


# --- budgets ---------------------------------------------------------------------------------
@click.group()
def budgets() -> None:
    """Money budgets (402 budget_exceeded when a window's amount is spent)."""


@budgets.command("create")
@click.option("--org", required=True, help="Organisation name.")
@_amount_options
@schedule_options
@json_option("Print the created budget as JSON.")
@click.argument("name")
@click.pass_context
def budgets_create(
    ctx: click.Context,
    /,
    org: str,
    amount_usd: str | None,
    amount_nanos: int | None,
    as_json: bool,
    name: str,
    **options: Any,
) -> None:
    """Create a budget: an amount of USD per window for the organisation or one of its owners."""
    nanos = _amount(amount_usd, amount_nanos)
    schedule = _schedule(options)
    _create(
        ctx,
        org,
        schedule,
        as_json,
        lambda budgets, org_id, when: budgets.create_budget(org_id, name, amount_nanos_usd=nanos, **when),
        lambda row: (
            f"created budget {name} in {org} ({row['id']}): {row['limit_usd']} USD per "
            f"{schedule.period.value.lower()} window, owner {row['owner']}"
        ),
    )


budgets.add_command(
    _lister(
        "List budgets with their current window and what it has spent (USD, settled).",
        lambda budgets, org_id: budgets.list_budgets(org_id),
        ["name", "owner", "period", "window_start", "window_end", "used_usd", "limit_usd", "active", "id"],
    )
)
budgets.add_command(_switch("budget", _budget, True))
budgets.add_command(_switch("budget", _budget, False))


@budgets.command("set-limit")
@_amount_options
@click.argument("budget_id")
@click.pass_context
def budgets_set_limit(
    ctx: click.Context, amount_usd: str | None, amount_nanos: int | None, budget_id: str
) -> None:
    """Change a budget's amount per window (what the current window spent is kept)."""
    nanos = _amount(amount_usd, amount_nanos)

    async def action(admin: AdminContext) -> Budget | Quota:
        return await _set_limit(admin, _budget, budget_id, nanos)

    budget = run_admin(ctx, action)
    click.echo(f"budget {budget.name} ({budget.id}): {nanos_to_usd(nanos)} USD per window")


# --- quotas ----------------------------------------------------------------------------------
@click.group()
def quotas() -> None:
    """Quotas on requests, tokens, errors or cost (429 quota_exceeded when a window is used up)."""


@quotas.command("create")
@click.option("--org", required=True, help="Organisation name.")
@click.option(
    "--metric",
    required=True,
    type=click.Choice([m.value for m in QuotaMetric], case_sensitive=False),
    help="What the quota counts (COST is in nanos USD).",
)
@click.option("--limit", required=True, type=click.IntRange(min=0), help="Units per window.")
@schedule_options
@json_option("Print the created quota as JSON.")
@click.argument("name")
@click.pass_context
def quotas_create(
    ctx: click.Context, /, org: str, metric: str, limit: int, as_json: bool, name: str, **options: Any
) -> None:
    """Create a quota: a number of requests, tokens, errors or cost units per window."""
    schedule = _schedule(options)
    _create(
        ctx,
        org,
        schedule,
        as_json,
        lambda budgets, org_id, when: budgets.create_quota(
            org_id, name, metric=QuotaMetric(metric.upper()), limit=limit, **when
        ),
        lambda row: (
            f"created quota {name} in {org} ({row['id']}): {limit} {row['metric']} per "
            f"{schedule.period.value.lower()} window, owner {row['owner']}"
        ),
    )


quotas.add_command(
    _lister(
        "List quotas with their current window and how much of it is used (settled).",
        lambda budgets, org_id: budgets.list_quotas(org_id),
        ["name", "metric", "owner", "period", "window_start", "window_end", "used", "limit", "active", "id"],
    )
)
quotas.add_command(_switch("quota", _quota, True))
quotas.add_command(_switch("quota", _quota, False))


@quotas.command("set-limit")
@click.option("--limit", required=True, type=click.IntRange(min=0), help="Units per window.")
@click.argument("quota_id")
@click.pass_context
def quotas_set_limit(ctx: click.Context, limit: int, quota_id: str) -> None:
    """Change a quota's limit per window (what the current window used is kept)."""

    async def action(admin: AdminContext) -> Budget | Quota:
        return await _set_limit(admin, _quota, quota_id, limit)

    quota = run_admin(ctx, action)
    assert isinstance(quota, Quota)
    click.echo(f"quota {quota.name} ({quota.id}): {limit} {quota.metric.value} per window")
