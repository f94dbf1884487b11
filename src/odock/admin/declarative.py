"""Declarative configuration (GitOps): resources declared in the YAML config file.

The file that holds the ``settings:`` section may also declare, next to it::

    organisations: [{name, contact, policies, strict_provider_family,
                     teams: [{name, policies}], users: [{email, name, role}]}]
    providers:     [{org, name, type, base_url, timeout_ms, config, headers_from_env: {header: var},
                     enabled, keys: [{name, from_env}]}]
    models:        [{org, name, slug, provider, provider_key, type, capabilities,
                     pricing | pricing_per_million: {input, output}, config, policies, enabled}]
    mcp_servers:   [{org, name, slug, description, transport, endpoint_url, stdio_command, stdio_args,
                     stdio_env_from_env: {name: var}, headers_from_env: {header: var}, auth_type,
                     auth_config (non-secret fields), auth_from_env: {token|password|client_secret: var},
                     team, allowed_tools, blocked_tools, semantic_filter, pricing, policies, metadata,
                     enabled, is_public, oauth_required}]
    api_keys:      [{org, name, type, team, user, expires_at, timezone, models, policies,
                     secret_from_env, revoked, mcp_servers: [slug | {server: slug, tools: [...]}]}]
    budgets:       [{org, name, owner: {type, team | user | key}, amount_usd | amount_nanos,
                     period, start_at, end_at, timezone, rollover, thresholds, active}]
    quotas:        [{org, name, owner, metric, limit, period, start_at, end_at, timezone,
                     rollover, thresholds, active}]

This module parses and checks declarations (errors name the path, e.g.
``models[2].pricing.input.text_cost_per_1k_tokens`` or
``organisations[0].policies.ratelimit.requests.per_minute``); :mod:`odock.admin.reconcile`
applies them. Policy envelopes are validated and normalised here exactly as the control plane
stores them, so a re-apply compares like with like.
Secrets never appear in the file: provider keys, pinned API key secrets, secret header values
(``headers_from_env``, added to ``config.headers``) and an MCP server's secrets (``auth_from_env``,
``headers_from_env``, ``stdio_env_from_env``) name the environment variable that holds them, read
at apply time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from odock.billing import Pricing
from odock.budgets.control import MeterSchedule
from odock.budgets.tables import OwnerType, QuotaMetric
from odock.budgets.windows import Period
from odock.errors import InvalidPolicy, UnprocessableEntity
from odock.keys.rules import check_ownership
from odock.keys.tables import ApiKeyType
from odock.mcp.link import AuthType, Transport
from odock.mcp.rules import slug_of
from odock.mcp.secrets import SECRET_AUTH_FIELDS
from odock.providers.tables import ProviderType
from odock.rules import check_timezone, usd_to_nanos, validate_policies
from odock.settings import SettingsError, read_config_file
from odock.tenancy.tables import Role

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Json = dict[str, Any]


class DeclarationError(Exception):
    """Declared resources are invalid or cannot be applied; the message names the path."""


class PolicyFieldError(ValueError):
    """A policy envelope failed validation at ``field`` (a dotted path inside the envelope)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _stored_policies(value: Json) -> Json:
    try:
        return validate_policies(value)
    except InvalidPolicy as exc:
        # parse_policy's message is "<field>: <reason>"; the path is rebuilt from ``field``.
        reason = exc.message.split(": ", 1)[-1] if exc.param else exc.message
        raise PolicyFieldError(exc.param, reason) from exc


Policies = Annotated[Json, AfterValidator(_stored_policies)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def declares(self, field: str) -> bool:
        """True when the file sets ``field`` (fields left out are left alone on update)."""
        return field in self.model_fields_set


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class TeamSpec(_Spec):
    """A team of an organisation."""

    name: Name
    policies: Policies = Field(default_factory=dict)


class UserSpec(_Spec):
    """A user of an organisation."""

    email: Annotated[
        str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[^@\s]+@[^@\s]+$")
    ]
    name: str | None = None
    role: Role = Role.USER

    _role = field_validator("role", mode="before")(_upper)


class OrganisationSpec(_Spec):
    """An organisation with its teams and users."""

    name: Name
    contact: str | None = None
    policies: Policies = Field(default_factory=dict)
    strict_provider_family: bool = False
    teams: list[TeamSpec] = Field(default_factory=list)
    users: list[UserSpec] = Field(default_factory=list)

    @field_validator("teams", mode="before")
    @classmethod
    def _team_names(cls, value: object) -> object:
        # A bare name is shorthand for a team without policies.
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value


class ProviderKeySpec(_Spec):
    """A provider credential whose secret is read from an environment variable at apply time."""

    name: Name
    from_env: EnvName


class ProviderSpec(_Spec):
    """An upstream provider of an organisation."""

    org: Name
    name: Name
    type: ProviderType
    base_url: str | None = None
    timeout_ms: PositiveInt | None = None
    config: Json = Field(default_factory=dict)
    # Extra upstream headers whose values are secrets: header name -> environment variable. They
    # join config.headers at apply time, so declaring them declares the provider's config.
    headers_from_env: dict[Name, EnvName] = Field(default_factory=dict)
    enabled: bool = True
    keys: list[ProviderKeySpec] = Field(default_factory=list)

    _type = field_validator("type", mode="before")(_upper)

    @model_validator(mode="after")
    def _headers_once(self) -> ProviderSpec:
        headers = self.config.get("headers")
        given = {str(n).lower() for n in headers} if isinstance(headers, dict) else set()
        twice = sorted(n for n in self.headers_from_env if n.lower() in given)
        if twice:
            raise ValueError(f"header {twice[0]!r} is in both config.headers and headers_from_env")
        return self

    def declares_config(self) -> bool:
        """True when the file sets the provider's config (directly or through headers_from_env)."""
        return self.declares("config") or bool(self.headers_from_env)

    def full_config(self, secrets_by_var: Mapping[str, str]) -> Json:
        """``config`` with the ``headers_from_env`` values read from ``secrets_by_var`` added."""
        if not self.headers_from_env:
            return self.config
        headers = dict(self.config.get("headers") or {})
        headers.update({name: secrets_by_var[var] for name, var in self.headers_from_env.items()})
        return {**self.config, "headers": headers}


class PerMillion(_Spec):
    """Text pricing as people quote it: USD per 1M input and output tokens."""

    input: NonNegativeFloat
    output: NonNegativeFloat


class ModelSpec(_Spec):
    """A model clients call by ``name``."""

    org: Name
    name: Name
    slug: Name | None = None
    provider: Name | None = None
    provider_key: Name | None = None
    type: str = "chat"
    capabilities: list[str] = Field(default_factory=list)
    pricing: Pricing | None = None
    pricing_per_million: PerMillion | None = None
    config: Json = Field(default_factory=dict)
    policies: Policies = Field(default_factory=dict)
    enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.pricing is not None and self.pricing_per_million is not None:
            raise ValueError("give pricing or pricing_per_million, not both")
        if self.provider_key is not None and self.provider is None:
            raise ValueError("provider_key needs provider")
        return self

    def declares_pricing(self) -> bool:
        """True when the file sets either form of pricing."""
        return self.declares("pricing") or self.declares("pricing_per_million")

    def stored_pricing(self) -> Json:
        """Pricing in the stored per-1K shape (spec §3.7); empty when none is declared."""
        if self.pricing is not None:
            return self.pricing.model_dump()
        if self.pricing_per_million is not None:
            return pricing_per_million(self.pricing_per_million.input, self.pricing_per_million.output)
        return {}


class McpServerSpec(_Spec):
    """An MCP server of an organisation, matched by slug (made from the name when not given)."""

    org: Name
    name: Name
    slug: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=100)] | None = (
        None
    )
    description: str | None = None
    transport: Transport
    endpoint_url: str | None = None
    stdio_command: str | None = None
    stdio_args: list[str] = Field(default_factory=list)
    stdio_env_from_env: dict[Name, EnvName] = Field(default_factory=dict)
    headers_from_env: dict[Name, EnvName] = Field(default_factory=dict)
    auth_type: AuthType = AuthType.NONE
    auth_config: dict[str, str] = Field(default_factory=dict)  # the non-secret fields
    auth_from_env: dict[str, EnvName] = Field(default_factory=dict)  # token / password / client_secret
    team: Name | None = None
    allowed_tools: list[Name] = Field(default_factory=list)
    blocked_tools: list[Name] = Field(default_factory=list)
    semantic_filter: Json = Field(default_factory=dict)
    pricing: Json = Field(default_factory=dict)
    policies: Policies = Field(default_factory=dict)
    metadata: Json = Field(default_factory=dict)
    enabled: bool = True
    is_public: bool = False
    oauth_required: bool = False

    _transport = field_validator("transport", "auth_type", mode="before")(_upper)

    @model_validator(mode="after")
    def _secrets_from_env(self) -> McpServerSpec:
        inline = sorted(SECRET_AUTH_FIELDS & set(self.auth_config))
        if inline:
            raise ValueError(f"auth_config.{inline[0]} is a secret: name its variable in auth_from_env")
        unknown = sorted(set(self.auth_from_env) - SECRET_AUTH_FIELDS)
        if unknown:
            raise ValueError(
                f"auth_from_env.{unknown[0]} is not a secret field (token, password, client_secret)"
            )
        return self

    @property
    def wanted_slug(self) -> str:
        """The slug the server is matched and stored by."""
        return self.slug or slug_of(self.name)

    def fields(self, secrets_by_var: Mapping[str, str], team_id: str | None) -> Json:
        """The service fields the file declares (secrets read from ``secrets_by_var``)."""
        plain = (
            "name", "description", "transport", "endpoint_url", "stdio_command", "stdio_args", "auth_type",
            "allowed_tools", "blocked_tools", "semantic_filter", "pricing", "policies", "metadata",
            "enabled", "is_public", "oauth_required",
        )  # fmt: skip
        fields: Json = {name: getattr(self, name) for name in plain if self.declares(name) or name == "name"}
        fields["slug"] = self.wanted_slug
        if "transport" in fields:
            fields["transport"] = self.transport.value
        if "auth_type" in fields:
            fields["auth_type"] = self.auth_type.value
        if self.declares("auth_config") or self.declares("auth_from_env") or self.declares("auth_type"):
            secret = {name: secrets_by_var[var] for name, var in self.auth_from_env.items()}
            fields["auth_config"] = {**self.auth_config, **secret}
        if self.declares("headers_from_env"):
            fields["headers"] = {name: secrets_by_var[var] for name, var in self.headers_from_env.items()}
        if self.declares("stdio_env_from_env"):
            fields["stdio_env"] = {name: secrets_by_var[var] for name, var in self.stdio_env_from_env.items()}
        if self.declares("team"):
            fields["team_id"] = team_id
        return fields


class McpGrantSpec(_Spec):
    """A key's grant for one MCP server (slug), optionally only for some tools."""

    server: Name
    tools: list[Name] | None = None


def _grant_of(value: object) -> object:
    return {"server": value} if isinstance(value, str) else value


class ApiKeySpec(_Spec):
    """A virtual API key; ownership follows spec §3.3."""

    org: Name
    name: Name
    type: ApiKeyType | None = None
    team: Name | None = None
    user: str | None = None
    expires_at: AwareDatetime | None = None
    timezone: str = "UTC"
    models: list[Name] = Field(default_factory=list)
    policies: Policies = Field(default_factory=dict)
    secret_from_env: EnvName | None = None
    revoked: bool | None = None
    mcp_servers: list[Annotated[McpGrantSpec, BeforeValidator(_grant_of)]] = Field(default_factory=list)

    _type = field_validator("type", mode="before")(_upper)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        _as_value_error(check_timezone, value)
        return value

    @model_validator(mode="after")
    def _ownership(self) -> ApiKeySpec:
        # Team and user are names here; the rule only looks at which of them are given.
        _as_value_error(check_ownership, self.owner_type, self.team, self.user)
        return self

    @property
    def owner_type(self) -> ApiKeyType:
        """The declared type, or the one implied by team/user."""
        if self.type is not None:
            return self.type
        if self.team:
            return ApiKeyType.TEAM
        return ApiKeyType.USER if self.user else ApiKeyType.ORGANISATION


class OwnerSpec(_Spec):
    """Who a budget or quota limits: the organisation, or one team, user or API key of it (by name)."""

    type: OwnerType | None = None
    team: Name | None = None
    user: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)] | None = None
    key: Name | None = None

    _type = field_validator("type", mode="before")(_upper)

    @model_validator(mode="after")
    def _one_owner(self) -> OwnerSpec:
        given = {name: getattr(self, name) for name in ("team", "user", "key") if getattr(self, name)}
        needed = {OwnerType.TEAM: "team", OwnerType.USER: "user", OwnerType.APIKEY: "key"}.get(self.kind)
        if needed is None and given:
            raise ValueError("an ORG owner names no team, user or key")
        if needed is not None and set(given) != {needed}:
            raise ValueError(f"a {self.kind.value} owner needs {needed} and nothing else")
        return self

    @property
    def kind(self) -> OwnerType:
        """The declared type, or the one implied by team/user/key."""
        if self.type is not None:
            return self.type
        if self.team:
            return OwnerType.TEAM
        if self.user:
            return OwnerType.USER
        return OwnerType.APIKEY if self.key else OwnerType.ORG

    @property
    def reference(self) -> str | None:
        """The team name, user e-mail or key name (None for the organisation)."""
        return self.team or self.user or self.key


class _MeterSpec(_Spec):
    """What budgets and quotas share: owner and schedule (fields of odock.budgets.tables)."""

    org: Name
    name: Name
    owner: OwnerSpec = OwnerSpec()
    period: Period = Period.MONTHLY
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    timezone: str = "UTC"
    rollover: bool = False
    thresholds: list[Annotated[int, Field(ge=1, le=1000)]] = Field(default_factory=list)
    active: bool = True

    _period = field_validator("period", mode="before")(_upper)

    def schedule(self, owner_id: str | None) -> MeterSchedule:
        """The keyword arguments of ``BudgetControl.create_budget`` / ``create_quota``."""
        return MeterSchedule(
            owner_type=self.owner.kind, owner_id=owner_id, period=self.period, start_at=self.start_at,
            end_at=self.end_at, timezone=self.timezone, rollover=self.rollover, thresholds=self.thresholds,
            active=self.active,
        )  # fmt: skip

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        _as_value_error(check_timezone, value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> _MeterSpec:
        if self.start_at is not None and self.end_at is not None and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


class BudgetSpec(_MeterSpec):
    """A money budget per window: ``amount_usd`` (exact, at most 9 decimals) or ``amount_nanos``."""

    amount_usd: Decimal | None = None
    amount_nanos: NonNegativeInt | None = None

    @field_validator("amount_usd")
    @classmethod
    def _exact_usd(cls, value: Decimal | None) -> Decimal | None:
        if value is not None:
            _as_value_error(usd_to_nanos, value)
        return value

    @model_validator(mode="after")
    def _one_amount(self) -> BudgetSpec:
        if (self.amount_usd is None) == (self.amount_nanos is None):
            raise ValueError("give exactly one of amount_usd or amount_nanos")
        return self

    @property
    def nanos(self) -> int:
        """The amount per window in nanos USD."""
        return self.amount_nanos if self.amount_nanos is not None else usd_to_nanos(self.amount_usd or 0)


class QuotaSpec(_MeterSpec):
    """A limit on a usage metric per window."""

    metric: QuotaMetric
    limit: NonNegativeInt

    _metric = field_validator("metric", mode="before")(_upper)


class Declarations(_Spec):
    """Everything a config file declares (the ``settings:`` section is parsed by odock.settings)."""

    settings: Json | None = None
    organisations: list[OrganisationSpec] = Field(default_factory=list)
    providers: list[ProviderSpec] = Field(default_factory=list)
    models: list[ModelSpec] = Field(default_factory=list)
    mcp_servers: list[McpServerSpec] = Field(default_factory=list)
    api_keys: list[ApiKeySpec] = Field(default_factory=list)
    budgets: list[BudgetSpec] = Field(default_factory=list)
    quotas: list[QuotaSpec] = Field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """True when the file declares no resources."""
        tenancy = (self.organisations, self.providers, self.models, self.mcp_servers, self.api_keys)
        return not any(tenancy) and not (self.budgets or self.quotas)

    def summary(self) -> str:
        """A one-line count of what is declared."""
        counts = [
            (len(self.organisations), "organisation"),
            (sum(len(o.teams) for o in self.organisations), "team"),
            (sum(len(o.users) for o in self.organisations), "user"),
            (len(self.providers), "provider"),
            (sum(len(p.keys) for p in self.providers), "provider key"),
            (len(self.models), "model"),
            (len(self.api_keys), "API key"),
            (len(self.budgets), "budget"),
            (len(self.quotas), "quota"),
        ]
        if self.mcp_servers:
            counts.insert(-3, (len(self.mcp_servers), "MCP server"))
        return ", ".join(f"{n} {what}{'' if n == 1 else 's'}" for n, what in counts)

    def environment_variables(self) -> list[tuple[str, str]]:
        """(path, variable) of every secret the file reads from the environment."""
        needed = [
            (f"providers[{i}].keys[{j}].from_env", key.from_env)
            for i, provider in enumerate(self.providers)
            for j, key in enumerate(provider.keys)
        ]
        needed += [
            (f"providers[{i}].headers_from_env.{header}", var)
            for i, provider in enumerate(self.providers)
            for header, var in provider.headers_from_env.items()
        ]
        for i, server in enumerate(self.mcp_servers):
            for place in ("auth_from_env", "headers_from_env", "stdio_env_from_env"):
                needed += [(f"mcp_servers[{i}].{place}.{n}", v) for n, v in getattr(server, place).items()]
        needed += [
            (f"api_keys[{i}].secret_from_env", key.secret_from_env)
            for i, key in enumerate(self.api_keys)
            if key.secret_from_env
        ]
        return needed

    def secrets_from(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The secrets the file names, by variable; every missing or empty one is reported at once."""
        missing = [
            f"{path}: environment variable {var} is not set"
            for path, var in self.environment_variables()
            if not environ.get(var, "").strip()
        ]
        if missing:
            raise DeclarationError("\n".join(missing))
        return {var: environ[var].strip() for _path, var in self.environment_variables()}


def parse_declarations(data: Mapping[str, Any], source: str = "config") -> Declarations:
    """Validate a parsed config mapping; raise :class:`DeclarationError` naming each bad path."""
    try:
        declared = Declarations.model_validate(dict(data))
    except ValidationError as exc:
        lines = [f"{source}: {_located(err)}" for err in exc.errors()]
        raise DeclarationError("\n".join(lines)) from exc
    problems = _duplicates(declared)
    if problems:
        raise DeclarationError("\n".join(f"{source}: {p}" for p in problems))
    return declared


def read_declarations(path: Path) -> Declarations:
    """Read and validate the resources declared in a config file."""
    try:
        data = read_config_file(path)
    except SettingsError as exc:
        raise DeclarationError(str(exc)) from exc
    return parse_declarations(data, str(path))


def _duplicates(declared: Declarations) -> list[str]:
    problems: list[str] = []

    def check(kind: str, keys: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        seen: dict[tuple[str, ...], str] = {}
        for path, key in keys:
            if key in seen:
                problems.append(f"{path}: {kind} '{'/'.join(key)}' is already declared at {seen[key]}")
            else:
                seen[key] = path

    orgs = declared.organisations
    check("organisation", ((f"organisations[{i}]", (o.name,)) for i, o in enumerate(orgs)))
    for i, org in enumerate(orgs):
        check(
            "team", ((f"organisations[{i}].teams[{j}]", (org.name, t.name)) for j, t in enumerate(org.teams))
        )
    check(
        "user",
        (
            (f"organisations[{i}].users[{j}]", (u.email,))
            for i, o in enumerate(orgs)
            for j, u in enumerate(o.users)
        ),
    )
    check("provider", ((f"providers[{i}]", (p.org, p.name)) for i, p in enumerate(declared.providers)))
    for i, provider in enumerate(declared.providers):
        check(
            "provider key",
            (
                (f"providers[{i}].keys[{j}]", (provider.org, provider.name, k.name))
                for j, k in enumerate(provider.keys)
            ),
        )
    check("model", ((f"models[{i}]", (m.org, m.name)) for i, m in enumerate(declared.models)))
    check(
        "MCP server",
        ((f"mcp_servers[{i}]", (m.org, m.wanted_slug)) for i, m in enumerate(declared.mcp_servers)),
    )
    check("API key", ((f"api_keys[{i}]", (k.org, k.name)) for i, k in enumerate(declared.api_keys)))
    check("budget", ((f"budgets[{i}]", (b.org, b.name)) for i, b in enumerate(declared.budgets)))
    check("quota", ((f"quotas[{i}]", (q.org, q.name)) for i, q in enumerate(declared.quotas)))
    return problems


def _as_value_error(rule: Callable[..., object], *args: Any) -> None:
    # pydantic reports ValueError at the field's path; the shared rules raise UnprocessableEntity.
    try:
        rule(*args)
    except UnprocessableEntity as exc:
        raise ValueError(exc.message) from exc


def _located(err: ErrorDetails) -> str:
    """``path: message``; a policy error's path goes on into the envelope, to the bad field."""
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, PolicyFieldError):
        parts = cause.field.split(".") if cause.field else []
        inner = tuple(int(part) if part.isdigit() else part for part in parts)
        return f"{_path((*err['loc'], *inner))}: {cause.message}"
    return f"{_path(err['loc'])}: {err['msg']}"


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def pricing_per_million(input_usd: float, output_usd: float) -> Json:
    """Stored pricing (USD per 1K tokens, spec §3.7) from the USD-per-1M figures people quote."""
    # Decimal keeps 0.15 / 1000 at 0.00015 instead of a binary-float neighbour.
    per_1k = {
        "input": {"text_cost_per_1k_tokens": float(Decimal(str(input_usd)) / 1000)},
        "output": {"text_cost_per_1k_tokens": float(Decimal(str(output_usd)) / 1000)},
    }
    return Pricing.model_validate(per_1k).model_dump()
