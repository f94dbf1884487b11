"""Declared resources in the config file: applied at gateway startup and by ``odock apply``."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from odock.admin.declarative import DeclarationError
from odock.admin.reconcile import exclusive_apply
from odock.app import create_app
from tests.conftest import GatewayFactory, SettingsFactory
from tests.integration.test_cli import INVALIDATION_SECRET, Cli, chat, error_code, eventually, odock_env
from tests.support import services


def pinned_secret() -> str:
    """A pinned key secret unique to the test (the production database is shared by the run)."""
    return "sk_pinned_" + secrets.token_hex(20)


def write_config(path: Path, org: str, *, model_enabled: bool = True, price_in: float = 0.5) -> Path:
    """A config file declaring an organisation, a mock provider, a model and a pinned key."""
    path.write_text(
        f"""
settings:
  log_level: warning
organisations:
  - name: {org}
    contact: ops@example.com
    teams: [platform]
providers:
  - {{org: {org}, name: mock, type: mock, config: {{completion_tokens: 3}}}}
models:
  - org: {org}
    name: declared-model
    provider: mock
    enabled: {str(model_enabled).lower()}
    pricing_per_million: {{input: {price_in}, output: 1.5}}
api_keys:
  - {{org: {org}, name: app, team: platform, models: [declared-model], secret_from_env: DECLARED_KEY}}
  - {{org: {org}, name: unpinned, models: [declared-model]}}
"""
    )
    return path


def test_gateway_startup_applies_declarations(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    make_settings: SettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gateway started with a declaring config serves the declared model to the pinned key; no demo."""
    pinned = pinned_secret()
    monkeypatch.setenv("DECLARED_KEY", pinned)
    org = "decl-" + secrets.token_hex(4)
    config = write_config(tmp_path / "odock.yaml", org)
    gateway = gateway_factory(make_settings(config=config, demo=True))

    assert chat(gateway, pinned, "declared-model").status_code == 200
    names = [o.name for o in gateway.run(gateway.runtime.control.tenancy.list_organisations())]
    assert org in names
    assert "demo" not in names


def test_apply_is_idempotent_and_dry_run_writes_nothing(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    """`odock apply` creates once; a second apply changes nothing; --dry-run only reports."""
    pinned = pinned_secret()
    org = "apply-" + secrets.token_hex(4)
    config = write_config(tmp_path / "odock.yaml", org)
    cli = Cli(odock_env(make_settings(config=config), DECLARED_KEY=pinned))

    planned = cli.ok("apply", "--dry-run")
    assert "would be created: organisation " + org in planned
    assert "dry run: would have 6 created, 0 updated, 0 unchanged" in planned
    assert org not in cli.ok("orgs", "list")

    first = cli.ok("apply")
    assert "6 created, 0 updated, 0 unchanged" in first
    assert pinned not in first
    assert first.count("secret, shown once: sk_") == 1  # only the unpinned key
    second = cli.ok("apply")
    assert second.strip() == "0 created, 0 updated, 6 unchanged"

    write_config(config, org, price_in=2)
    third = cli.ok("apply")
    assert f"updated: model {org}/declared-model" in third
    assert "0 created, 1 updated, 5 unchanged" in third
    assert "2 in / 1.5 out" in cli.ok("models", "list", "--org", org)


def test_apply_reaches_a_running_gateway(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    make_settings: SettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Disabling a model in the file and running `odock apply` makes a running gateway refuse it."""
    pinned = pinned_secret()
    monkeypatch.setenv("DECLARED_KEY", pinned)
    org = "live-" + secrets.token_hex(4)
    config = write_config(tmp_path / "odock.yaml", org)
    gateway = gateway_factory(make_settings(config=config, cache_invalidation_secret=INVALIDATION_SECRET))
    assert chat(gateway, pinned, "declared-model").status_code == 200

    write_config(config, org, model_enabled=False)
    env = odock_env(gateway.app.settings, ODOCK_HOST="127.0.0.1", ODOCK_PORT=str(gateway.server.port))
    Cli({**env, "DECLARED_KEY": pinned}).ok("apply")
    refused = eventually(lambda: chat(gateway, pinned, "declared-model"), lambda r: r.status_code == 403)
    assert (refused.status_code, error_code(refused)) == (403, "model_disabled")


def test_startup_with_unresolvable_declarations_fails(tmp_path: Path, make_settings: SettingsFactory) -> None:
    """A declaration that cannot be applied stops startup with its path in the message."""
    config = tmp_path / "odock.yaml"
    config.write_text("models:\n  - {org: nowhere-" + secrets.token_hex(4) + ", name: m}\n")
    app = create_app(make_settings(config=config))
    with pytest.raises(DeclarationError, match=r"models\[0\]: organisation 'nowhere-\w+' does not exist"):
        asyncio.run(app.startup())


def test_apply_without_config_file_is_refused(make_settings: SettingsFactory) -> None:
    """`odock apply` with no config file exits 2 and says how to give one."""
    done = Cli(odock_env(make_settings())).run("apply")
    assert done.returncode == 2
    assert "no config file" in done.stderr


def test_apply_lock_admits_one_process_at_a_time() -> None:
    """While one process holds the apply lock another gives up at its deadline; after release it enters."""
    services.require_services()
    prefix = services.unique_name("odock_lock") + ":"

    async def scenario() -> None:
        redis = Redis.from_url(services.REDIS_URL)
        try:
            async with exclusive_apply(redis, prefix):
                with pytest.raises(DeclarationError, match="another process held the apply lock"):
                    async with exclusive_apply(redis, prefix, wait_seconds=0.3):
                        pytest.fail("entered a held lock")
            async with exclusive_apply(redis, prefix, wait_seconds=0.3):
                assert await redis.exists(prefix + "declarations:lock") == 1
            assert await redis.exists(prefix + "declarations:lock") == 0
        finally:
            await services.delete_redis_prefix(prefix)
            await redis.aclose()

    asyncio.run(scenario())


def write_metered_config(path: Path, org: str, *, amount_usd: str, quota_limit: int) -> Path:
    """A config file declaring an organisation with a team and key, a budget and a quota."""
    path.write_text(
        f"""
organisations:
  - name: {org}
    teams: [platform]
providers:
  - {{org: {org}, name: mock, type: mock}}
models:
  - {{org: {org}, name: m, provider: mock, pricing_per_million: {{input: 0.5, output: 1.5}}}}
api_keys:
  - {{org: {org}, name: app, team: platform, models: [m], secret_from_env: DECLARED_KEY}}
budgets:
  - org: {org}
    name: monthly
    amount_usd: "{amount_usd}"
    owner: {{type: TEAM, team: platform}}
    period: MONTHLY
    start_at: "2026-01-01T00:00:00+01:00"
    timezone: Europe/Paris
    thresholds: [50, 80]
quotas:
  - {{org: {org}, name: app-requests, owner: {{key: app}}, metric: REQUESTS, limit: {quota_limit}}}
"""
    )
    return path


def test_declared_budgets_and_quotas_apply_idempotently(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    """`odock apply` creates declared budgets and quotas once, then only updates a changed limit."""
    pinned = pinned_secret()
    org = "meter-" + secrets.token_hex(4)
    config = write_metered_config(tmp_path / "odock.yaml", org, amount_usd="12.50", quota_limit=100)
    cli = Cli(odock_env(make_settings(config=config), DECLARED_KEY=pinned))

    assert "1 budget, 1 quota" in cli.ok("config", "check")
    assert "7 created, 0 updated, 0 unchanged" in cli.ok("apply")
    assert cli.ok("apply").strip() == "0 created, 0 updated, 7 unchanged"
    [budget] = orjson.loads(cli.ok("budgets", "list", "--org", org, "--json"))
    assert (budget["owner"], budget["amount_nanos_usd"], budget["thresholds"]) == (
        "team:platform",
        12_500_000_000,
        [50, 80],
    )
    assert budget["start_at"] == "2025-12-31T23:00:00+00:00"

    write_metered_config(config, org, amount_usd="20", quota_limit=150)
    changed = cli.ok("apply")
    assert f"updated: budget {org}/monthly" in changed
    assert f"updated: quota {org}/app-requests" in changed
    assert "0 created, 2 updated, 5 unchanged" in changed
    [budget] = orjson.loads(cli.ok("budgets", "list", "--org", org, "--json"))
    [quota] = orjson.loads(cli.ok("quotas", "list", "--org", org, "--json"))
    assert (budget["limit_usd"], budget["version"]) == ("20", 2)
    assert (quota["limit"], quota["version"], quota["owner"].startswith("key:")) == (150, 2, True)


def test_declared_invalid_policy_names_its_field(tmp_path: Path, make_settings: SettingsFactory) -> None:
    """`config check` and `apply` refuse a misspelt policy field, naming its full path, and write nothing."""
    org = "policy-" + secrets.token_hex(4)
    config = tmp_path / "odock.yaml"
    config.write_text(
        f"organisations:\n  - name: {org}\n    policies: {{ratelimit: {{requests: {{per_minutes: 5}}}}}}\n"
    )
    cli = Cli(odock_env(make_settings(config=config)))
    for command, exit_code in ((("config", "check"), 2), (("apply",), 1)):
        done = cli.run(*command)
        assert done.returncode == exit_code
        assert "organisations[0].policies.ratelimit.requests.per_minutes: Extra inputs" in done.stderr
    assert org not in cli.ok("orgs", "list")
