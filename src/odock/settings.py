"""Settings, parsed once at startup from ``ODOCK_*`` environment variables and a YAML file.

Precedence, highest first: explicit overrides (CLI flags) → environment → the ``settings:``
section of the YAML file → defaults. Nothing else in Odock reads the environment.

The YAML file may also declare resources (organisations, providers, models, API keys); those
are parsed by :mod:`odock.admin.declarative`, not here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "ODOCK_"


class SettingsError(Exception):
    """Settings are invalid; the message names the offending field."""


class Settings(BaseSettings):
    """Every setting of the gateway (see docs/configuration.md for the reference)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # --- server -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    components: Literal["all", "gateway", "control-plane"] = Field(
        "all", description="What this process serves: the gateway (/v1), the control plane (/api) or both"
    )
    config: Path | None = Field(None, description="YAML file with settings and declared resources")
    data_dir: Path = Path(".odock")
    shutdown_grace_seconds: float = Field(30.0, gt=0)
    max_request_bytes: int = Field(8 * 1024 * 1024, gt=0)
    max_request_header_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request line + headers (431 beyond)"
    )
    max_request_headers: int = Field(100, ge=1, description="Most header fields in one request (431 beyond)")
    request_header_timeout_seconds: float = Field(
        30.0, gt=0, description="Time a client may take to send a request's headers (408 beyond)"
    )
    request_body_timeout_seconds: float = Field(
        120.0, gt=0, description="Time a client may take to send a request's body once its headers arrived"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console", "text"] = Field(
        "auto", description="json, console (text: the same), or auto: console on a terminal, else json"
    )
    log_requests: Literal["errors", "all", "off"] = Field(
        "errors", description="The request log: failed model calls (errors), every call (all), or none (off)"
    )
    log_prompts: bool = Field(
        False, description="Log prompts and unary answers at INFO (privacy risk; never keys)"
    )
    metrics_enabled: bool = Field(True, description="Serve GET /metrics (Prometheus text format)")
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token a scrape of /metrics must present; unset = open"
    )

    # --- storage ------------------------------------------------------------------------
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in data_dir")
    database_pool_size: int = Field(10, ge=1)
    redis_url: str | None = Field(None, description="Redis URL; unset = in-process state (embedded)")
    redis_prefix: str = "odock:"
    redis_pool_size: int = Field(200, ge=1, description="Redis connections per process")
    redis_timeout_seconds: float = Field(2.0, gt=0, description="Redis socket and connect timeout")
    migrate_on_start: bool | None = Field(None, description="default: true on SQLite, false otherwise")

    # --- hot-path caches ----------------------------------------------------------------
    auth_cache_ttl_seconds: float = Field(300.0, gt=0)
    auth_negative_cache_ttl_seconds: float = Field(30.0, gt=0)
    model_cache_ttl_seconds: float = Field(300.0, gt=0)
    local_cache_max_entries: int = Field(100_000, ge=100)
    cache_invalidation_secret: SecretStr | None = None
    cache_invalidation_channel: str = "odock:cache-invalidation"

    # --- provider keys ------------------------------------------------------------------
    provider_key_encryption_key_id: str | None = None
    provider_key_encryption_private_key: SecretStr | None = None
    provider_key_decrypt_cache_ttl_seconds: float = Field(300.0, gt=0)

    # --- MCP gateway -------------------------------------------------------------------------
    # STDIO servers run commands on the gateway host: only these executables (names looked up on
    # PATH, or absolute paths) may be configured; SUPER_ADMIN may add to the list through the API
    # (stored in the database, see docs/mcp.md#stdio-security).
    mcp_stdio_allowed_commands: list[str] = Field(default_factory=list)
    mcp_stdio_max_processes: int = Field(32, ge=1)  # every STDIO server process of this replica
    mcp_stdio_processes_per_server: int = Field(4, ge=1)
    mcp_stdio_requests_per_process: int = Field(16, ge=1)  # in flight on one process before another starts
    mcp_stdio_idle_seconds: float = Field(300.0, gt=0)  # an idle process is stopped after this
    mcp_upstream_timeout_seconds: float = Field(120.0, gt=0)  # longest wait for one upstream answer
    mcp_session_ttl_seconds: float = Field(3600.0, gt=0)  # a session unused this long is forgotten
    mcp_cache_ttl_seconds: float = Field(300.0, gt=0)  # MCP servers in the in-process tier
    # Answer bytes a budget reserves per MCP exchange at the server's output price (settled to the
    # actual bytes; see docs/mcp.md#pricing).
    mcp_output_bytes_reserved: int = Field(65_536, ge=0)

    # --- routing (docs/routing.md) -------------------------------------------------------
    # A deployment's circuit opens after this many failures in a row (each within the window of
    # the one before), for the cooldown or the upstream's Retry-After (at most the maximum).
    routing_breaker_failures: int = Field(5, ge=1, le=1000)
    routing_breaker_window_seconds: float = Field(60.0, gt=0)
    # Or when this share of a replica's calls to it failed within the window (1: off), counted
    # once it has made at least the minimum of calls there.
    routing_breaker_error_rate: float = Field(0.5, gt=0, le=1)
    routing_breaker_min_calls: int = Field(20, ge=1)
    routing_breaker_cooldown_seconds: float = Field(30.0, gt=0)
    routing_breaker_max_cooldown_seconds: float = Field(300.0, gt=0)
    # How stale a replica's view of the shared circuit state may be (0: read it on every choice).
    routing_breaker_refresh_seconds: float = Field(1.0, ge=0)
    # How long a half-open circuit's single probe is given before another replica may probe.
    routing_breaker_probe_seconds: float = Field(10.0, gt=0)

    # --- upstream -----------------------------------------------------------------------
    upstream_connect_timeout_seconds: float = Field(10.0, gt=0)
    upstream_default_timeout_seconds: float = Field(600.0, gt=0)  # the default total of an exchange
    upstream_first_byte_timeout_seconds: float = Field(300.0, gt=0)
    upstream_idle_timeout_seconds: float = Field(120.0, gt=0)  # between the pieces of a stream
    upstream_max_connections: int = Field(1000, ge=1)
    # The proxy variables every HTTP client honours, read under their usual names too (ODOCK_ first).
    https_proxy: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("odock_https_proxy", "https_proxy"),
        description="HTTP proxy for HTTPS upstreams (CONNECT tunnel); also read from HTTPS_PROXY",
    )
    http_proxy: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("odock_http_proxy", "http_proxy"),
        description="HTTP proxy for plain-HTTP upstreams; also read from HTTP_PROXY",
    )
    no_proxy: str | None = Field(
        None,
        validation_alias=AliasChoices("odock_no_proxy", "no_proxy"),
        description="Upstream hosts, domains, IP blocks reached directly; also read from NO_PROXY",
    )

    # --- usage --------------------------------------------------------------------------
    usage_flush_interval_seconds: float = Field(
        0.05, gt=0, description="How often queued usage records are written to the database"
    )
    usage_batch_size: int | None = Field(
        None,
        ge=1,
        description="Usage records per database write (default 64 on SQLite, 16 on PostgreSQL)",
    )
    usage_queue_max: int = Field(
        100_000, ge=100, description="Usage records held in memory while the usage journal cannot be written"
    )
    usage_journal_segment_bytes: int = Field(
        4 * 1024 * 1024,
        ge=4096,
        description="Size at which the usage journal (data_dir/usage-journal) starts a new segment file",
    )
    usage_stream_max_length: int = Field(
        1_000_000,
        ge=1000,
        description="MAXLEN of the Redis usage stream; past 90% of it new records wait in the local journal",
    )
    usage_claim_idle_seconds: float = Field(
        30.0,
        gt=0,
        description="Redis usage entries read but unacknowledged this long are taken over by another replica",
    )
    usage_backlog_max: int = Field(
        1_000_000,
        ge=0,
        description="Usage records waiting to be stored past which requests get 503 usage_backlog (0: none)",
    )
    usage_recovery_interval_seconds: float = Field(
        15.0,
        gt=0,
        description="How often to take over usage left by dead processes (journals, stream entries)",
    )

    # --- governance: rate limits, budgets, quotas ----------------------------------------
    ratelimit_global_policy: dict[str, Any] = Field(
        default_factory=dict,
        description="Policy envelope (JSON) applied to every request before authentication",
    )
    governance_fail_open: bool = Field(
        False,
        description="Admit requests when Redis is unreachable for limits/budgets (default: refuse with 503)",
    )
    trusted_proxy_cidrs: list[str] = Field(
        default_factory=list,
        description="Peers whose X-Forwarded-For / X-Real-IP is trusted for the client IP",
    )
    default_max_output_tokens: int = Field(
        4096,
        ge=1,
        description="Output tokens reserved when a request sets no max_tokens and the model no cap",
    )
    unpriced_reservation_nanos: int | None = Field(
        None,
        ge=0,
        description="Cost reserved for a model without pricing when a budget applies (unset: refuse)",
    )
    budget_reservation_ttl_seconds: float = Field(
        900.0,
        gt=0,
        description="After this long an unsettled reservation is reconciled (settled or released)",
    )
    budget_threshold_webhook_url: str | None = Field(
        None,
        description="Where threshold crossings of budgets and quotas are POSTed as JSON (unset: log only)",
    )
    budget_reconcile_interval_seconds: float = Field(
        10.0, gt=0, description="How often the reconciliation worker looks for stale reservations"
    )

    # --- control-plane identity ----------------------------------------------------------
    public_url: str | None = Field(
        None,
        description="Public base URL of the control plane (invitation links, OAuth redirect URIs); "
        "default: the URL the request came in on",
    )
    session_ttl_seconds: float = Field(7 * 24 * 3600.0, gt=0, description="Lifetime of a sign-in session")
    session_idle_timeout_seconds: float = Field(
        24 * 3600.0, gt=0, description="A session unused this long ends"
    )
    session_cookie_secure: bool | None = Field(
        None, description="Mark session cookies Secure (default: when the request came over https)"
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed sign-ins per e-mail address, and per client IP, before throttling"
    )
    login_failure_window_seconds: float = Field(
        900.0, gt=0, description="How long failed sign-ins are counted (and throttling lasts)"
    )
    password_hash_time_cost: int = Field(3, ge=1, le=20, description="argon2id iterations")
    password_hash_memory_kib: int = Field(65536, ge=1024, le=4 * 1024 * 1024, description="argon2id memory")
    bootstrap_admin_email: str | None = Field(
        None, description="Super admin created on first start (when no super admin exists)"
    )
    bootstrap_admin_password: SecretStr | None = None
    bootstrap_admin_require_password_change: bool | None = Field(
        None, description="Force the bootstrap admin to change the password (default: production mode)"
    )
    invitation_ttl_seconds: float = Field(
        7 * 24 * 3600.0, gt=0, description="How long an invitation link works"
    )
    oidc_discovery_url: str | None = Field(
        None, description="OpenID Connect issuer discovery document (…/.well-known/openid-configuration)"
    )
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    oidc_display_name: str = "OpenID Connect"
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    github_authorize_url: str = "https://github.com/login/oauth/authorize"
    github_token_url: str = "https://github.com/login/oauth/access_token"
    github_api_url: str = "https://api.github.com"

    # --- observability: traces (docs/observability.md#traces) -------------------------------
    # Off by default: with `none` OpenTelemetry is never imported and the request path is unchanged.
    otel_traces_exporter: Literal["none", "otlp_http", "otlp_grpc"] = Field(
        "none", description="Where spans go: nowhere, OTLP over HTTP (protobuf) or OTLP over gRPC"
    )
    otel_endpoint: str | None = Field(
        None,
        description="The collector: default http://localhost:4318 (HTTP; /v1/traces appended) or "
        "localhost:4317 (gRPC)",
    )
    otel_headers: SecretStr | None = Field(
        None, description="Headers sent to the collector, k=v,k2=v2 (authentication: never logged)"
    )
    otel_sample_rate: float = Field(
        0.1, ge=0, le=1, description="Share of traces started here that are kept (a client's decision wins)"
    )
    otel_service_name: str = Field("odock", min_length=1)
    otel_service_instance_id: str | None = Field(
        None, description="service.instance.id (default: the host name, a pod's name in Kubernetes)"
    )
    otel_deployment_environment: str | None = Field(
        None, description="deployment.environment.name (production, staging…)"
    )
    otel_resource_attributes: str | None = Field(
        None, description="More resource attributes, k=v,k2=v2 (k8s.cluster.name=…, service.namespace=…)"
    )
    trace_url_template: str | None = Field(
        None,
        description="Link from a usage record to its trace, e.g. http://localhost:16686/trace/{trace_id}",
    )

    # --- first start --------------------------------------------------------------------
    demo: bool | None = Field(None, description="create a demo org/key on an empty DB; default: on SQLite")

    @field_validator("provider_key_encryption_private_key", mode="before")
    @classmethod
    def _unescape_pem(cls, value: object) -> object:
        # PEM in an environment variable is often written with literal "\n" escapes.
        if isinstance(value, str) and "\\n" in value:
            return value.replace("\\n", "\n")
        return value

    @field_validator("ratelimit_global_policy")
    @classmethod
    def _check_global_policy(cls, value: dict[str, Any]) -> dict[str, Any]:
        from odock.errors import InvalidPolicy
        from odock.limits.policy import parse_policy

        try:
            parse_policy(value)
        except InvalidPolicy as exc:
            raise ValueError(exc.message) from exc
        return value

    @field_validator("https_proxy", "http_proxy", "no_proxy", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        # HTTPS_PROXY= (exported empty) means no proxy, as for every other client.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("https_proxy", "http_proxy")
    @classmethod
    def _check_proxy(cls, value: SecretStr | None) -> SecretStr | None:
        from odock.providers.proxy import Proxy

        if value is not None:
            Proxy.parse(value.get_secret_value())  # its messages never repeat the URL (credentials)
        return value

    @field_validator("no_proxy")
    @classmethod
    def _check_no_proxy(cls, value: str | None) -> str | None:
        from odock.providers.proxy import ProxyRoutes

        ProxyRoutes(no_proxy=value)
        return value

    @field_validator(
        "otel_headers", "otel_resource_attributes", "otel_endpoint", "trace_url_template", mode="before"
    )
    @classmethod
    def _unset_when_blank(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("otel_headers")
    @classmethod
    def _check_otel_headers(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            # The message never repeats the value: it may hold a collector's token.
            parse_pairs(value.get_secret_value())
        return value

    @field_validator("otel_resource_attributes")
    @classmethod
    def _check_resource_attributes(cls, value: str | None) -> str | None:
        if value is not None:
            parse_pairs(value)
        return value

    @field_validator("trace_url_template")
    @classmethod
    def _check_trace_url_template(cls, value: str | None) -> str | None:
        if value is not None and "{trace_id}" not in value:
            raise ValueError("must contain {trace_id}, where the trace's id goes")
        return value

    @field_validator("trusted_proxy_cidrs")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr.strip(), strict=False)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> Settings:
        has_id = bool(self.provider_key_encryption_key_id)
        has_key = self.provider_key_encryption_private_key is not None
        if has_id != has_key:
            raise ValueError(
                "provider_key_encryption_key_id and provider_key_encryption_private_key "
                "must be set together (both or neither)"
            )
        if (self.bootstrap_admin_email is None) != (self.bootstrap_admin_password is None):
            raise ValueError("bootstrap_admin_email and bootstrap_admin_password must be set together")
        if (
            self.bootstrap_admin_password is not None
            and len(self.bootstrap_admin_password.get_secret_value()) < 12
        ):
            raise ValueError("bootstrap_admin_password must be at least 12 characters")
        if self.workers > 1 and not self.redis_url:
            raise ValueError("workers > 1 needs redis_url: in-process state cannot be shared")
        return self

    # --- derived ------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'odock.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        """True when the database is SQLite (the embedded default)."""
        return self.resolved_database_url.startswith("sqlite")

    @property
    def is_embedded(self) -> bool:
        """True when no external state service is configured."""
        return self.redis_url is None

    @property
    def resolved_usage_batch_size(self) -> int:
        """Usage records per write: set, or the backend's default.

        On PostgreSQL each batch is a transaction whose work on the database server competes for
        a core with the Redis and upstream replies a request waits for; measured at concurrency 1,
        batches of 16 spread that work finely enough to keep it out of the latency tail (p99 3.1-3.6
        ms added with 64, 1.5-1.7 ms with 16) and cost nothing in throughput. SQLite writes on the
        event loop's thread, where each commit has a cost of its own: batches of 64 do better there.
        """
        if self.usage_batch_size is not None:
            return self.usage_batch_size
        return 64 if self.is_sqlite else 16

    @property
    def should_migrate_on_start(self) -> bool:
        """Whether startup applies pending migrations."""
        return self.is_sqlite if self.migrate_on_start is None else self.migrate_on_start

    @property
    def bootstrap_admin_must_change_password(self) -> bool:
        """Whether the bootstrap admin must change the password first (default: in production mode)."""
        if self.bootstrap_admin_require_password_change is not None:
            return self.bootstrap_admin_require_password_change
        return not (self.is_embedded and self.is_sqlite)

    @property
    def should_seed_demo(self) -> bool:
        """Whether startup creates the demo organisation on an empty database."""
        return self.is_sqlite if self.demo is None else self.demo

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides, then the environment (the YAML layer is added by ``load_settings``)."""
        return (init_settings, env_settings)


def parse_pairs(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (values percent-decoded, as OTEL_EXPORTER_OTLP_HEADERS) as a mapping.

    A malformed entry is named by its position, never by its text: the pairs may be secret.
    """
    pairs: dict[str, str] = {}
    for position, entry in enumerate(text.split(","), start=1):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"entry {position} is not of the form name=value")
        pairs[name.strip()] = unquote(value.strip())
    return pairs


class _MappingSource(PydanticBaseSettingsSource):
    """A settings source that serves values from an already-parsed mapping (the YAML file)."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = dict(values)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if v is not None}


def read_config_file(path: Path) -> dict[str, Any]:
    """Read the YAML configuration file into a mapping (empty file → empty mapping)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Parse settings once; raise :class:`SettingsError` naming the field on any problem."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        path = config_file or _config_path_from_env(overrides)
        file_values: dict[str, Any] = {}
        if path is not None:
            section = read_config_file(path).get("settings") or {}
            if not isinstance(section, dict):
                raise SettingsError(f"config file {path}: 'settings' must be a mapping")
            file_values = {**section, "config": path}

        class _FileBackedSettings(Settings):
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return (init_settings, env_settings, _MappingSource(settings_cls, file_values))

        return _FileBackedSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from exc


def _config_path_from_env(overrides: Mapping[str, Any]) -> Path | None:
    if overrides.get("config"):
        return Path(overrides["config"])
    # Read the one setting that locates the others through the normal env source.
    probe = Settings()
    return probe.config


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        # A setting also read under a standard name (HTTPS_PROXY…) is reported under its ODOCK_ name.
        loc = ".".join(str(p) for p in err["loc"]).removeprefix("odock_") or "settings"
        env = f" ({ENV_PREFIX}{loc.upper()})" if err["loc"] else ""
        lines.append(f"invalid setting '{loc}'{env}: {err['msg']}")
    return "\n".join(lines)
