"""Applying declared resources: make the database match the config file, idempotently.

Resources are matched by name (organisations globally, everything else within its organisation;
users by e-mail) and applied in dependency order::

    organisations (+ teams, users) → providers (+ keys) → models → MCP servers → API keys
    (+ their MCP grants) → budgets → quotas

What is missing is created; what differs is updated; nothing is ever deleted or duplicated.
A budget's or quota's limit, ``active`` switch and thresholds are updated in place (a new limit
starts new counters that keep the window's spend); its owner, metric and schedule are not, as
that would restart its windows: declare a new one under another name instead.
Fields a declaration leaves out are left as they are on existing resources (defaults apply on
creation only), so a change made with the CLI to an undeclared field survives a re-apply. Every
change goes through the :class:`ControlPlane`, so it commits and invalidates the gateways'
caches like any other. Each change commits on its own: after a failure, fix the file and apply
again; what was already applied is then unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from redis.asyncio import Redis

from odock.admin.control import ControlPlane
from odock.admin.declarative import (
    ApiKeySpec,
    BudgetSpec,
    DeclarationError,
    Declarations,
    McpServerSpec,
    ModelSpec,
    OrganisationSpec,
    ProviderSpec,
    QuotaSpec,
    TeamSpec,
    UserSpec,
    read_declarations,
)
from odock.audit.context import AuditActor, acting_as, current_actor
from odock.budgets.control import MeterChanges
from odock.budgets.tables import Budget, OwnerType, Quota
from odock.errors import NotFound, OdockError
from odock.keys.secrets import hash_secret
from odock.keys.tables import ApiKey
from odock.mcp.grant_service import WantedGrant
from odock.providers.service import ProviderChanges
from odock.settings import Settings
from odock.tenancy.tables import Organisation

T = TypeVar("T")
Action = Literal["created", "updated", "unchanged"]
# Stands in for the id of a resource a dry run would create, so comparisons see "it differs".
PLANNED = "(planned)"


@dataclass(frozen=True)
class Change:
    """What applying did (or, in a dry run, would do) to one resource."""

    kind: str
    name: str
    action: Action


@dataclass(frozen=True)
class IssuedSecret:
    """A newly created API key whose generated secret is shown once."""

    name: str
    key_id: str
    secret: str


@dataclass
class ApplyReport:
    """Changes, by resource, and the secrets of newly issued keys."""

    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    issued: list[IssuedSecret] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        """How many resources were created, updated and left unchanged."""
        return Counter(change.action for change in self.changes)

    def summary(self) -> str:
        """``2 created, 1 updated, 5 unchanged`` (prefixed in a dry run)."""
        counts = self.counts()
        text = ", ".join(f"{counts[a]} {a}" for a in ("created", "updated", "unchanged"))
        return f"dry run: would have {text}" if self.dry_run else text


async def apply_declarations(
    control: ControlPlane,
    declared: Declarations,
    *,
    environ: Mapping[str, str],
    dry_run: bool = False,
) -> ApplyReport:
    """Apply every declaration; the secrets the file names are read from ``environ``."""
    secrets_by_var = declared.secrets_from(environ)
    applier = _Applier(control, declared, secrets_by_var, ApplyReport(dry_run=dry_run))
    with acting_as(_config_actor()):
        await _apply_steps(declared, applier, dry_run)
    return applier.report


def _config_actor() -> AuditActor:
    """The audit actor of declarative changes: ``config``, labelled with who applied it (CLI) if known."""
    outer = current_actor()
    return AuditActor(kind="config", label=outer.label if outer.kind == "cli" else "config file")


async def _apply_steps(declared: Declarations, applier: _Applier, dry_run: bool) -> None:
    steps: list[tuple[str, Sequence[Any], Callable[[Any], Awaitable[None]]]] = [
        ("organisations", declared.organisations, applier.organisation),
        ("providers", declared.providers, applier.provider),
        ("models", declared.models, applier.model),
        ("mcp_servers", declared.mcp_servers, applier.mcp_server),
        ("api_keys", declared.api_keys, applier.api_key),
        ("budgets", declared.budgets, applier.budget),
        ("quotas", declared.quotas, applier.quota),
    ]
    for section, specs, apply_one in steps:
        for index, spec in enumerate(specs):
            try:
                await apply_one(spec)
            except (OdockError, DeclarationError) as exc:
                done = "" if dry_run else " (the resources before it were applied)"
                raise DeclarationError(f"{section}[{index}]: {exc}{done}") from exc


async def apply_config_file(
    settings: Settings, control: ControlPlane, redis: Redis | None, environ: Mapping[str, str]
) -> ApplyReport | None:
    """At gateway startup: apply what the config file declares (None when it declares nothing)."""
    if settings.config is None:
        return None
    declared = read_declarations(settings.config)
    if declared.is_empty:
        return None
    async with exclusive_apply(redis, settings.redis_prefix):
        return await apply_declarations(control, declared, environ=environ)


@contextlib.asynccontextmanager
async def exclusive_apply(
    redis: Redis | None, prefix: str, *, wait_seconds: float = 60
) -> AsyncIterator[None]:
    """Hold the cluster-wide apply lock (Redis), so replicas starting together apply one at a time.

    Without Redis there is one process, and nothing to coordinate.
    """
    if redis is None:
        yield
        return
    name, token = prefix + "declarations:lock", secrets.token_hex(16)
    deadline = time.monotonic() + wait_seconds
    while not await redis.set(name, token, nx=True, px=int(wait_seconds * 1000)):
        if time.monotonic() > deadline:
            raise DeclarationError(f"another process held the apply lock for {wait_seconds:.0f}s")
        await asyncio.sleep(0.1)
    try:
        yield
    finally:
        # Release only our own lock (it may have expired and been taken by another process).
        await redis.eval(_RELEASE, 1, name, token)


# Model column → the declaration field that manages it (pricing has two alternative fields).
_MODEL_FIELDS = {
    "slug": "slug",
    "type": "type",
    "capabilities": "capabilities",
    "config": "config",
    "policies": "policies",
    "enabled": "enabled",
    "provider_id": "provider",
    "provider_api_key_id": "provider_key",
}
_Declared = (
    OrganisationSpec | TeamSpec | UserSpec | ProviderSpec | ModelSpec | ApiKeySpec | BudgetSpec | QuotaSpec
)
# Fields of a budget or quota that define its windows; a change would restart them.
_SCHEDULE_FIELDS = ("period", "start_at", "end_at", "timezone", "rollover")
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class _Applier:
    """Compares each declaration with the database and makes the needed change."""

    def __init__(
        self,
        control: ControlPlane,
        declared: Declarations,
        secrets_by_var: dict[str, str],
        report: ApplyReport,
    ) -> None:
        self._control = control
        self._declared = declared
        self._secrets = secrets_by_var
        self.report = report
        self._dry = report.dry_run

    # --- organisations ---------------------------------------------------------------
    async def organisation(self, spec: OrganisationSpec) -> None:
        org = await self._find_org(spec.name)
        if org is None:
            org_id = PLANNED
            if not self._dry:
                org_id = (
                    await self._control.tenancy.create_organisation(
                        spec.name,
                        contact=spec.contact,
                        policies=spec.policies,
                        strict_provider_family=spec.strict_provider_family,
                    )
                ).id
            self._record("organisation", spec.name, "created")
        else:
            org_id = org.id
            changes = _differences(spec, org, ("contact", "policies", "strict_provider_family"))
            if changes and not self._dry:
                await self._control.tenancy.update_organisation(org.id, **changes)
            self._record("organisation", spec.name, "updated" if changes else "unchanged")
        for team in spec.teams:
            await self._team(org_id, spec.name, team)
        for user in spec.users:
            await self._user(org_id, user)

    async def _team(self, org_id: str, org: str, spec: TeamSpec) -> None:
        label = f"{org}/{spec.name}"
        tenancy = self._control.tenancy
        team = None if org_id == PLANNED else await _optional(tenancy.team_by_name(org_id, spec.name))
        if team is None:
            if not self._dry:
                await self._control.tenancy.create_team(org_id, spec.name, policies=spec.policies)
            self._record("team", label, "created")
            return
        changed = spec.declares("policies") and team.policies != spec.policies
        if changed and not self._dry:
            await self._control.tenancy.update_team(team.id, policies=spec.policies)
        self._record("team", label, "updated" if changed else "unchanged")

    async def _user(self, org_id: str, spec: UserSpec) -> None:
        user = await _optional(self._control.users.user_by_email(spec.email))
        if user is None:
            if not self._dry:
                await self._control.users.create_user(
                    spec.email, organisation_id=org_id, role=spec.role, name=spec.name
                )
            self._record("user", spec.email, "created")
            return
        if user.organisation_id != org_id and org_id != PLANNED:
            raise DeclarationError(f"user '{spec.email}' belongs to another organisation")
        changes = _differences(spec, user, ("name", "role"))
        if changes and not self._dry:
            await self._control.users.update_user(user.id, **changes)
        self._record("user", spec.email, "updated" if changes else "unchanged")

    # --- providers ---------------------------------------------------------------------
    async def provider(self, spec: ProviderSpec) -> None:
        label = f"{spec.org}/{spec.name}"
        org_id = await self._org_id(spec.org)
        provider = (
            None if org_id == PLANNED else await _optional(self._control.providers.named(org_id, spec.name))
        )
        if provider is None:
            provider_id = PLANNED
            if not self._dry:
                provider_id = (
                    await self._control.providers.create(
                        org_id,
                        spec.name,
                        spec.type,
                        base_url=spec.base_url,
                        timeout_ms=spec.timeout_ms,
                        config=spec.full_config(self._secrets),
                        enabled=spec.enabled,
                    )
                ).id
            self._record("provider", label, "created")
        else:
            provider_id = provider.id
            changes = _differences(spec, provider, ("type", "base_url", "timeout_ms", "enabled"))
            # Stored header values are envelopes: compare what they open to, not the stored form.
            config = spec.full_config(self._secrets)
            if spec.declares_config() and not self._control.providers.config_holds(provider, config):
                changes["config"] = config
            if changes and not self._dry:
                await self._control.providers.update(provider.id, ProviderChanges.of(changes))
            self._record("provider", label, "updated" if changes else "unchanged")
        for key in spec.keys:
            await self._provider_key(
                provider_id, f"{label}/{key.name}", key.name, self._secrets[key.from_env]
            )

    async def _provider_key(self, provider_id: str, label: str, name: str, secret: str) -> None:
        existing = None
        if provider_id != PLANNED:
            existing = await _optional(self._control.provider_keys.named(provider_id, name))
        if existing is None:
            if not self._dry:
                await self._control.provider_keys.add(provider_id, name, secret=secret)
            self._record("provider key", label, "created")
            return
        changed = not self._control.provider_keys.holds(existing, secret)
        if changed and not self._dry:
            await self._control.provider_keys.replace_secret(existing.id, secret)
        self._record("provider key", label, "updated" if changed else "unchanged")

    # --- models ------------------------------------------------------------------------
    async def model(self, spec: ModelSpec) -> None:
        label = f"{spec.org}/{spec.name}"
        org_id = await self._org_id(spec.org)
        provider_id, key_id = await self._model_provider(org_id, spec)
        wanted: dict[str, Any] = {
            "slug": spec.slug or spec.name,
            "type": spec.type,
            "capabilities": spec.capabilities,
            "config": spec.config,
            "policies": spec.policies,
            "enabled": spec.enabled,
            "provider_id": provider_id,
            "provider_api_key_id": key_id,
            "pricing": spec.stored_pricing(),
        }
        model = None if org_id == PLANNED else await _optional(self._control.models.named(org_id, spec.name))
        if model is None:
            if not self._dry:
                await self._control.models.create(
                    org_id,
                    spec.name,
                    slug=wanted["slug"],
                    provider_id=provider_id,
                    provider_key_id=key_id,
                    type=spec.type,
                    capabilities=spec.capabilities,
                    pricing=wanted["pricing"],
                    config=spec.config,
                    policies=spec.policies,
                    enabled=spec.enabled,
                )
            self._record("model", label, "created")
            return
        managed = {column for column, field in _MODEL_FIELDS.items() if spec.declares(field)}
        if spec.declares_pricing():
            managed.add("pricing")
        changes = {
            column: value
            for column, value in wanted.items()
            if column in managed and getattr(model, column) != value
        }
        if changes and not self._dry:
            await self._control.models.update(model.id, **changes)
        self._record("model", label, "updated" if changes else "unchanged")

    async def _model_provider(self, org_id: str, spec: ModelSpec) -> tuple[str | None, str | None]:
        if spec.provider is None:
            return None, None
        if org_id == PLANNED:
            return PLANNED, PLANNED if spec.provider_key else None
        provider = await _optional(self._control.providers.named(org_id, spec.provider))
        if provider is None:
            return self._planned_or_missing(
                "provider", spec.org, spec.provider
            ), PLANNED if spec.provider_key else None
        if spec.provider_key is None:
            return provider.id, None
        key = await _optional(self._control.provider_keys.named(provider.id, spec.provider_key))
        if key is None:
            declared = any(
                p.org == spec.org
                and p.name == spec.provider
                and any(k.name == spec.provider_key for k in p.keys)
                for p in self._declared.providers
            )
            if not (self._dry and declared):
                raise NotFound(
                    f"provider key '{spec.provider_key}' of provider '{spec.provider}' does not exist"
                )
            return provider.id, PLANNED
        return provider.id, key.id

    # --- API keys ----------------------------------------------------------------------
    async def api_key(self, spec: ApiKeySpec) -> None:
        label = f"{spec.org}/{spec.name}"
        org_id = await self._org_id(spec.org)
        team_id, user_id = await self._owners(org_id, spec)
        pinned = self._secrets[spec.secret_from_env] if spec.secret_from_env else None
        existing = [] if org_id == PLANNED else await self._control.keys.named(org_id, spec.name)
        if len(existing) > 1:
            raise DeclarationError(
                f"{len(existing)} API keys are named '{spec.name}' in '{spec.org}': rename all but one"
            )
        if not existing:
            await self._create_key(org_id, label, spec, team_id, user_id, pinned)
            return
        key = existing[0]
        changed = await self._update_key(key, spec, team_id, user_id, pinned)
        self._record("API key", label, "updated" if changed else "unchanged")

    async def _create_key(
        self,
        org_id: str,
        label: str,
        spec: ApiKeySpec,
        team_id: str | None,
        user_id: str | None,
        pinned: str | None,
    ) -> None:
        self._record("API key", label, "created")
        if self._dry:
            return
        issued = await self._control.keys.create(
            org_id,
            spec.name,
            type=spec.owner_type,
            team_id=team_id,
            user_id=user_id,
            expires_at=spec.expires_at,
            timezone=spec.timezone,
            models=spec.models,
            policies=spec.policies,
            secret=pinned,
        )
        if spec.mcp_servers:
            await self._control.mcp_grants.grant(issued.key.id, _wanted_grants(spec), replace=True)
        if spec.revoked:
            await self._control.keys.revoke(issued.key.id)
        if pinned is None:
            self.report.issued.append(IssuedSecret(label, issued.key.id, issued.secret))

    async def _update_key(
        self, key: ApiKey, spec: ApiKeySpec, team_id: str | None, user_id: str | None, pinned: str | None
    ) -> bool:
        wanted = {
            "type": spec.owner_type,
            "team_id": team_id,
            "user_id": user_id,
            "expires_at": spec.expires_at,
            "timezone": spec.timezone,
            "policies": spec.policies,
        }
        owner_declared = spec.declares("type") or spec.declares("team") or spec.declares("user")
        changes = {
            name: value
            for name, value in wanted.items()
            if (owner_declared if name in ("type", "team_id", "user_id") else spec.declares(name))
            and getattr(key, name) != value
        }
        grants_differ = spec.declares("models") and set(await self._control.keys.grants(key.id)) != set(
            spec.models
        )
        new_secret = pinned is not None and hash_secret(pinned) != key.key_hash
        revoke = spec.revoked is not None and spec.revoked != key.revoked
        mcp_differ = spec.declares("mcp_servers") and await self._mcp_grants_differ(key.id, spec)
        if not self._dry:
            if mcp_differ:
                await self._control.mcp_grants.grant(key.id, _wanted_grants(spec), replace=True)
            if changes:
                await self._control.keys.update(key.id, **changes)
            if grants_differ:
                await self._control.keys.set_grants(key.id, spec.models)
            if new_secret:
                await self._control.keys.rotate(key.id, secret=pinned, rotated_by="declarative config")
            if revoke:
                await self._control.keys.revoke(key.id, revoked=bool(spec.revoked))
        return bool(changes) or grants_differ or new_secret or revoke or mcp_differ

    async def _mcp_grants_differ(self, key_id: str, spec: ApiKeySpec) -> bool:
        held = {
            g.server.slug: sorted(g.tools) if g.tools is not None else None
            for g in await self._control.mcp_grants.of_key(key_id)
        }
        wanted = {g.server: sorted(set(g.tools)) if g.tools is not None else None for g in spec.mcp_servers}
        return held != wanted

    # --- MCP servers ---------------------------------------------------------------------
    async def mcp_server(self, spec: McpServerSpec) -> None:
        label = f"{spec.org}/{spec.wanted_slug}"
        org_id = await self._org_id(spec.org)
        team_id = None
        if spec.team:
            tenancy = self._control.tenancy
            team = None if org_id == PLANNED else await _optional(tenancy.team_by_name(org_id, spec.team))
            team_id = team.id if team else self._planned_or_missing("team", spec.org, spec.team)
        fields = spec.fields(self._secrets, team_id)
        servers = self._control.mcp_servers
        existing = None if org_id == PLANNED else await _optional(servers.find(org_id, spec.wanted_slug))
        if existing is None:
            if not self._dry:
                await servers.create(org_id, fields)
            self._record("MCP server", label, "created")
            return
        # Stored secrets are envelopes: holds() compares what they open to.
        changed = not servers.holds(existing, fields)
        if changed and not self._dry:
            await servers.update(existing.id, fields)
        self._record("MCP server", label, "updated" if changed else "unchanged")

    async def _owners(self, org_id: str, spec: ApiKeySpec) -> tuple[str | None, str | None]:
        team_id = user_id = None
        if spec.team:
            team = (
                None
                if org_id == PLANNED
                else await _optional(self._control.tenancy.team_by_name(org_id, spec.team))
            )
            team_id = team.id if team else self._planned_or_missing("team", spec.org, spec.team)
        if spec.user:
            user = await _optional(self._control.users.user_by_email(spec.user))
            user_id = user.id if user else self._planned_or_missing("user", spec.org, spec.user)
        return team_id, user_id

    # --- budgets and quotas ------------------------------------------------------------
    async def budget(self, spec: BudgetSpec) -> None:
        org_id = await self._org_id(spec.org)
        owner_id = await self._meter_owner(org_id, spec)
        budgets = self._control.budgets
        row = await self._existing_meter("budget", spec, org_id)
        if row is None:
            if not self._dry:
                await budgets.create_budget(
                    org_id, spec.name, amount_nanos_usd=spec.nanos, **spec.schedule(owner_id)
                )
            self._record("budget", f"{spec.org}/{spec.name}", "created")
            return
        assert isinstance(row, Budget)
        await self._update_meter("budget", spec, row, owner_id, row.amount_nanos_usd, spec.nanos)

    async def quota(self, spec: QuotaSpec) -> None:
        org_id = await self._org_id(spec.org)
        owner_id = await self._meter_owner(org_id, spec)
        budgets = self._control.budgets
        row = await self._existing_meter("quota", spec, org_id)
        if row is None:
            if not self._dry:
                await budgets.create_quota(
                    org_id, spec.name, metric=spec.metric, limit=spec.limit, **spec.schedule(owner_id)
                )
            self._record("quota", f"{spec.org}/{spec.name}", "created")
            return
        assert isinstance(row, Quota)
        if row.metric != spec.metric:
            raise DeclarationError(_fixed_in_place("quota", spec, ["metric"]))
        await self._update_meter("quota", spec, row, owner_id, row.limit, spec.limit)

    async def _existing_meter(
        self, kind: str, spec: BudgetSpec | QuotaSpec, org_id: str
    ) -> Budget | Quota | None:
        if org_id == PLANNED:
            return None
        budgets = self._control.budgets
        lookup = budgets.list_budgets if kind == "budget" else budgets.list_quotas
        rows: Sequence[Budget | Quota] = await lookup(org_id, spec.name)
        if len(rows) > 1:
            raise DeclarationError(
                f"{len(rows)} {kind}s are named '{spec.name}' in '{spec.org}': rename all but one"
            )
        return rows[0] if rows else None

    async def _update_meter(
        self,
        kind: str,
        spec: BudgetSpec | QuotaSpec,
        row: Budget | Quota,
        owner_id: str | None,
        stored_limit: int,
        limit: int,
    ) -> None:
        fixed = [
            name
            for name in _SCHEDULE_FIELDS
            if spec.declares(name) and getattr(row, name) != getattr(spec, name)
        ]
        if spec.declares("owner") and (row.owner_type, _meter_owner_id(row)) != (spec.owner.kind, owner_id):
            fixed.insert(0, "owner")
        if fixed:
            raise DeclarationError(_fixed_in_place(kind, spec, fixed))
        thresholds = sorted(set(spec.thresholds))
        new_limit = stored_limit != limit
        switch = spec.declares("active") and row.active != spec.active
        new_thresholds = spec.declares("thresholds") and list(row.thresholds or ()) != thresholds
        changes: MeterChanges = {}
        if new_limit:
            changes["limit"] = limit
        if switch:
            changes["active"] = spec.active
        if new_thresholds:
            changes["thresholds"] = thresholds
        if changes and not self._dry:
            # One transaction, like the API's: a new limit carries the live use the ledger lacks.
            await self._control.budgets.update(row.id, changes)
        changed = bool(changes)
        self._record(kind, f"{spec.org}/{spec.name}", "updated" if changed else "unchanged")

    async def _meter_owner(self, org_id: str, spec: BudgetSpec | QuotaSpec) -> str | None:
        """The id of the team, user or API key the budget or quota limits (None for the organisation)."""
        owner, name = spec.owner.kind, spec.owner.reference
        if owner == OwnerType.ORG or name is None:
            return None
        if owner == OwnerType.TEAM:
            team = (
                None
                if org_id == PLANNED
                else await _optional(self._control.tenancy.team_by_name(org_id, name))
            )
            return team.id if team else self._planned_or_missing("team", spec.org, name)
        if owner == OwnerType.USER:
            user = await _optional(self._control.users.user_by_email(name))
            if user is None:
                return self._planned_or_missing("user", spec.org, name)
            if org_id != PLANNED and user.organisation_id != org_id:
                raise DeclarationError(f"user '{name}' belongs to another organisation")
            return user.id
        keys = [] if org_id == PLANNED else await self._control.keys.named(org_id, name)
        if len(keys) > 1:
            raise DeclarationError(
                f"{len(keys)} API keys are named '{name}' in '{spec.org}': rename all but one"
            )
        return keys[0].id if keys else self._planned_or_missing("API key", spec.org, name)

    # --- lookups -----------------------------------------------------------------------
    async def _find_org(self, name: str) -> Organisation | None:
        return await _optional(self._control.tenancy.organisation_by_name(name))

    async def _org_id(self, name: str) -> str:
        org = await self._find_org(name)
        if org is not None:
            return org.id
        return self._planned_or_missing("organisation", name, name)

    def _planned_or_missing(self, kind: str, org: str, name: str) -> str:
        """In a dry run, a referent declared earlier in the file will exist; otherwise it is missing."""
        if self._dry and self._declares(kind, org, name):
            return PLANNED
        raise NotFound(f"{kind} '{name}' does not exist")

    def _declares(self, kind: str, org: str, name: str) -> bool:
        d = self._declared
        if kind == "organisation":
            return any(o.name == name for o in d.organisations)
        if kind == "provider":
            return any(p.org == org and p.name == name for p in d.providers)
        if kind == "team":
            return any(o.name == org and any(t.name == name for t in o.teams) for o in d.organisations)
        if kind == "API key":
            return any(k.org == org and k.name == name for k in d.api_keys)
        return any(any(u.email == name.lower() for u in o.users) for o in d.organisations)

    def _record(self, kind: str, name: str, action: Action) -> None:
        self.report.changes.append(Change(kind, name, action))


def _wanted_grants(spec: ApiKeySpec) -> list[WantedGrant]:
    return [WantedGrant(g.server, g.tools) for g in spec.mcp_servers]


def _differences(spec: _Declared, row: object, fields: tuple[str, ...]) -> dict[str, Any]:
    """The declared fields whose value differs from the stored row."""
    return {
        name: getattr(spec, name)
        for name in fields
        if spec.declares(name) and getattr(row, name) != getattr(spec, name)
    }


def _meter_owner_id(row: Budget | Quota) -> str | None:
    return {
        OwnerType.ORG: None,
        OwnerType.TEAM: row.team_id,
        OwnerType.USER: row.user_id,
        OwnerType.APIKEY: row.api_key_id,
    }[row.owner_type]


def _fixed_in_place(kind: str, spec: BudgetSpec | QuotaSpec, fields: Sequence[str]) -> str:
    return (
        f"{kind} '{spec.org}/{spec.name}' exists with a different {', '.join(fields)}; these cannot change "
        f"in place (its windows would restart): declare a new {kind} under another name and set "
        "active: false on this one"
    )


async def _optional(lookup: Awaitable[T]) -> T | None:
    """The looked-up row, or None when it does not exist."""
    try:
        return await lookup
    except NotFound:
        return None
