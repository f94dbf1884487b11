"""The ``odock`` CLI as an operator runs it: a separate process managing a running gateway.

Each test runs the real ``odock`` executable in a subprocess with the test backend's settings
passed as ``ODOCK_*`` variables. On the production backend the CLI and the gateway share only
PostgreSQL and Redis, so a refusal right after ``keys revoke`` proves cross-process invalidation.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from odock.providers.crypto import EnvelopeDecrypter, encrypt
from odock.providers.keyring import KEY_ID_FILE, PRIVATE_KEY_FILE, load_decrypter
from odock.providers.tables import ProviderType
from odock.settings import Settings, load_settings
from tests.conftest import Gateway, GatewayFactory, SettingsFactory, Tenant, provision
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.conftest import UPSTREAM_KEY, sdk

ODOCK = str(Path(sys.executable).parent / "odock")
INVALIDATION_SECRET = "cli-test-invalidation-secret"


@dataclass(frozen=True)
class Cli:
    """The ``odock`` executable bound to one gateway's settings."""

    env: dict[str, str]

    def run(self, *args: str, input: str | None = None, extra_env: dict[str, str] | None = None) -> Any:
        """Run ``odock ARGS``; return the completed process (text output)."""
        return subprocess.run(
            [ODOCK, *args],
            env={**self.env, **(extra_env or {})},
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, input: str | None = None, extra_env: dict[str, str] | None = None) -> str:
        """Run ``odock ARGS``, require success, return stdout."""
        done = self.run(*args, input=input, extra_env=extra_env)
        assert done.returncode == 0, f"odock {' '.join(args)} failed ({done.returncode}): {done.stderr}"
        return str(done.stdout)


def odock_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a subprocess exactly these settings (no inherited ODOCK_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODOCK_")}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None or value == field.default:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"ODOCK_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env.update(extra)
    return env


def cli_for(gateway: Gateway) -> Cli:
    """A CLI sharing the gateway's settings, pointed at its real port (embedded notifications)."""
    return Cli(odock_env(gateway.app.settings, ODOCK_HOST="127.0.0.1", ODOCK_PORT=str(gateway.server.port)))


@dataclass(frozen=True)
class CliTenant:
    """What the CLI created: an organisation with a mock model and a key that may call it."""

    org: str
    model: str
    key_id: str
    secret: str


def cli_tenant(cli: Cli) -> CliTenant:
    """org → MOCK provider → model → key, every step through the CLI."""
    org = "cli-" + secrets.token_hex(4)
    cli.ok("orgs", "create", org)
    cli.ok(
        "providers", "create", "--org", org, "--type", "MOCK", "--config", '{"completion_tokens": 7}', "mock"
    )
    cli.ok(
        "models",
        "create",
        "--org",
        org,
        "--provider",
        "mock",
        "--input-per-million",
        "0.5",
        "--output-per-million",
        "1.5",
        "chat-model",
    )
    issued = orjson.loads(cli.ok("keys", "create", "--org", org, "--model", "chat-model", "--json", "app"))
    return CliTenant(org=org, model="chat-model", key_id=issued["id"], secret=issued["secret"])


def chat(gateway: Gateway, secret: str, model: str) -> httpx.Response:
    """One chat completion through the gateway with ``secret``."""
    return httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {secret}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def eventually(
    probe: Callable[[], httpx.Response], accept: Callable[[httpx.Response], bool]
) -> httpx.Response:
    """Poll ``probe`` until ``accept`` holds (5 s deadline); return the last response."""
    deadline = time.monotonic() + 5
    while True:
        response = probe()
        if accept(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def error_code(response: httpx.Response) -> str | None:
    """The Odock error code of a response, if it is an error."""
    return str(response.json()["error"]["code"]) if response.status_code >= 400 else None


@pytest.fixture
def live(gateway_factory: GatewayFactory, make_settings: SettingsFactory) -> Gateway:
    """A running gateway that accepts cache invalidations from the CLI (used when embedded)."""
    return gateway_factory(make_settings(cache_invalidation_secret=INVALIDATION_SECRET))


def test_cli_built_tenant_serves_a_chat_call(live: Gateway) -> None:
    """A key issued through the CLI calls a model created through the CLI on a running gateway."""
    tenant = cli_tenant(cli_for(live))
    reply = sdk(live, tenant.secret).chat.completions.create(
        model=tenant.model, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 7


def org_name(gateway: Gateway, tenant: Tenant) -> str:
    """The name of a provisioned tenant's organisation (the CLI refers to it by name)."""
    org = gateway.run(gateway.runtime.control.tenancy.organisation(tenant.organisation_id))
    return str(org.name)


def test_key_list_shows_previews_never_secrets(live: Gateway) -> None:
    """keys list and keys show print the masked preview and never the secret."""
    cli = cli_for(live)
    tenant = provision(live)
    org = org_name(live, tenant)
    listing = cli.ok("keys", "list", "--org", org)
    shown = cli.ok("keys", "show", tenant.key_id)
    as_json = orjson.loads(cli.ok("keys", "list", "--org", org, "--json"))
    assert tenant.secret not in listing + shown + str(as_json)
    preview = f"{tenant.secret[:7]}…{tenant.secret[-4:]}"
    assert preview in listing
    assert preview in shown
    assert [row["id"] for row in as_json] == [tenant.key_id]
    assert tenant.model in shown


def test_orgs_create_sets_strict_provider_family_only_when_asked(live: Gateway) -> None:
    """`orgs create --strict-provider-family` turns it on, no flag leaves it off; `orgs list` shows it."""
    cli = cli_for(live)
    strict, lenient = f"strict-{secrets.token_hex(4)}", f"lenient-{secrets.token_hex(4)}"
    cli.ok("orgs", "create", strict, "--strict-provider-family")
    cli.ok("orgs", "create", lenient)
    listed = {row["name"]: row for row in orjson.loads(cli.ok("orgs", "list", "--json"))}
    assert listed[strict]["strict_provider_family"] is True
    assert listed[lenient]["strict_provider_family"] is False


def test_cli_revoke_makes_a_running_gateway_refuse_the_key(live: Gateway) -> None:
    """After `keys revoke` the running gateway answers 401 api_key_revoked; `unrevoke` restores it."""
    cli = cli_for(live)
    tenant = provision(live)
    assert chat(live, tenant.secret, tenant.model).status_code == 200  # the key is now cached

    cli.ok("keys", "revoke", tenant.key_id)
    refused = eventually(lambda: chat(live, tenant.secret, tenant.model), lambda r: r.status_code == 401)
    assert (refused.status_code, error_code(refused)) == (401, "api_key_revoked")

    cli.ok("keys", "unrevoke", tenant.key_id)
    restored = eventually(lambda: chat(live, tenant.secret, tenant.model), lambda r: r.status_code == 200)
    assert restored.status_code == 200


def test_cli_rotate_retires_the_old_secret(live: Gateway) -> None:
    """After `keys rotate` the old secret is refused and the newly printed one works."""
    cli = cli_for(live)
    tenant = provision(live)
    assert chat(live, tenant.secret, tenant.model).status_code == 200

    rotated = orjson.loads(cli.ok("keys", "rotate", tenant.key_id, "--json"))
    assert rotated["id"] == tenant.key_id
    assert rotated["secret"] != tenant.secret
    old = eventually(lambda: chat(live, tenant.secret, tenant.model), lambda r: r.status_code == 401)
    assert old.status_code == 401
    assert chat(live, rotated["secret"], tenant.model).status_code == 200
    assert "cli:" in cli.ok("keys", "show", tenant.key_id)


def test_cli_provider_switch_reaches_a_running_gateway(live: Gateway) -> None:
    """`providers disable` makes the running gateway refuse the provider's models with 403."""
    cli = cli_for(live)
    tenant = provision(live)
    assert chat(live, tenant.secret, tenant.model).status_code == 200
    cli.ok("providers", "disable", "--org", org_name(live, tenant), "provider")
    refused = eventually(lambda: chat(live, tenant.secret, tenant.model), lambda r: r.status_code == 403)
    assert (refused.status_code, error_code(refused)) == (403, "provider_disabled")


def test_provider_key_from_stdin_is_used_upstream(
    gateway_factory: GatewayFactory, keyed_settings: SettingsFactory, fake_openai: FakeOpenAI
) -> None:
    """A provider secret piped to `providers add-key` is stored encrypted and sent upstream by the gateway."""
    gateway = gateway_factory(keyed_settings(cache_invalidation_secret=INVALIDATION_SECRET))
    cli = cli_for(gateway)
    control = gateway.runtime.control
    org = gateway.run(control.tenancy.create_organisation("up-" + secrets.token_hex(4)))
    provider = gateway.run(
        control.providers.create(org.id, "openai", ProviderType.OPENAI, base_url=fake_openai.base_url + "/v1")
    )
    stored = cli.ok(
        "providers",
        "add-key",
        "--org",
        org.name,
        "--provider",
        "openai",
        "primary",
        input=UPSTREAM_KEY + "\n",
    )
    listing = cli.ok("providers", "list", "--org", org.name)
    key = gateway.run(control.provider_keys.named(provider.id, "primary"))
    gateway.run(control.models.create(org.id, "gpt", provider_id=provider.id, provider_key_id=key.id))
    issued = gateway.run(control.keys.create(org.id, "app", models=["gpt"]))

    assert UPSTREAM_KEY not in stored + listing + key.key
    assert chat(gateway, issued.secret, "gpt").status_code == 200
    assert fake_openai.last_request().headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_provider_key_from_env_and_missing_secret(
    gateway_factory: GatewayFactory, keyed_settings: SettingsFactory
) -> None:
    """--from-env reads the named variable; an empty stdin or unset variable is refused with a message."""
    gateway = gateway_factory(keyed_settings())
    cli = cli_for(gateway)
    org = org_name(gateway, provision(gateway))
    cli.ok(
        "providers",
        "add-key",
        "--org",
        org,
        "--provider",
        "provider",
        "--from-env",
        "UPSTREAM",
        "a",
        extra_env={"UPSTREAM": "sk-from-env-123456"},
    )
    empty = cli.run("providers", "add-key", "--org", org, "--provider", "provider", "b", input="")
    unset = cli.run("providers", "add-key", "--org", org, "--provider", "provider", "--from-env", "NOPE", "c")
    assert empty.returncode == 1
    assert "no provider secret on standard input" in empty.stderr
    assert unset.returncode == 1
    assert "NOPE is not set" in unset.stderr
    assert "a=sk-from…3456" in cli.ok("providers", "list", "--org", org)


def test_errors_are_one_line_without_traceback(live: Gateway) -> None:
    """Conflicts, unknown names and bad input end with one stderr line and a non-zero exit."""
    cli = cli_for(live)
    org = org_name(live, provision(live))
    cases = [
        (("orgs", "create", org), f"odock: organisation '{org}' already exists"),
        (("keys", "revoke", "no-such-key"), "odock: API key 'no-such-key' does not exist"),
        (
            ("models", "create", "--org", org, "--provider", "ghost", "m"),
            "odock: provider 'ghost' does not exist",
        ),
        (
            ("keys", "create", "--org", org, "--type", "TEAM", "k"),
            "odock: a TEAM key needs a team and no user",
        ),
    ]
    for args, message in cases:
        done = cli.run(*args)
        assert done.returncode == 1, args
        assert done.stderr.strip() == message
    malformed = cli.run("keys", "create", "--org", org, "--expires", "new year's eve", "k")
    assert malformed.returncode == 2
    assert "is not an ISO 8601 timestamp" in malformed.stderr
    assert "Traceback" not in malformed.stderr


def test_a_key_expiry_without_an_offset_is_read_in_the_keys_zone(live: Gateway) -> None:
    """keys create and keys rotate read an expiry without an offset in the key's --timezone (spec §3.3)."""
    cli = cli_for(live)
    org = org_name(live, provision(live))
    expiry = ("--expires", "2030-01-01T00:00:00", "--timezone", "Europe/Paris")
    created = orjson.loads(cli.ok("keys", "create", "--org", org, *expiry, "--json", "k"))
    assert datetime.fromisoformat(created["expires_at"]) == datetime(2029, 12, 31, 23, tzinfo=UTC)
    rotated = orjson.loads(
        cli.ok("keys", "rotate", "--expires", "2031-07-01T12:00:00", "--json", created["id"])
    )
    assert datetime.fromisoformat(rotated["expires_at"]) == datetime(2031, 7, 1, 10, tzinfo=UTC)


def test_a_model_type_must_be_one_the_gateway_knows() -> None:
    """models create refuses a type no endpoint serves by that name (e.g. "embedding"), before connecting."""
    done = Cli(dict(os.environ)).run("models", "create", "--org", "o", "--type", "embedding", "m")
    assert done.returncode == 2
    assert "'embedding' is not one of" in done.stderr


def test_encryption_pair_output_round_trips(make_settings: SettingsFactory) -> None:
    """The printed env lines load as settings, and what the public key encrypts the private key opens."""
    out = Cli(dict(os.environ)).ok("keys", "encryption-pair", "--key-id", "pair-test")
    lines = dict(line.split("=", 1) for line in out.splitlines() if line and not line.startswith("#"))
    assert lines["ODOCK_PROVIDER_KEY_ENCRYPTION_KEY_ID"] == "pair-test"
    private_escaped = lines["ODOCK_PROVIDER_KEY_ENCRYPTION_PRIVATE_KEY"].strip('"')
    public_pem = lines["NEXT_PUBLIC_PROVIDER_KEY_ENCRYPTION_PUBLIC_KEY"].strip('"').replace("\\n", "\n")
    assert "\n" not in private_escaped
    assert "\\n" in private_escaped

    settings = make_settings(
        provider_key_encryption_key_id="pair-test", provider_key_encryption_private_key=private_escaped
    )
    decrypter = load_decrypter(settings)
    assert decrypter is not None
    envelope = encrypt("sk-browser-encrypted", public_pem=public_pem, key_id="pair-test")
    assert decrypter.decrypt(envelope) == "sk-browser-encrypted"


def test_encryption_pair_files_are_private(tmp_path: Path) -> None:
    """--out-dir writes the pair with secret files at mode 0600, readable as the embedded keyring."""
    out_dir = tmp_path / "pair"
    Cli(dict(os.environ)).ok("keys", "encryption-pair", "--key-id", "file-pair", "--out-dir", str(out_dir))
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out_dir.iterdir()}
    assert modes[PRIVATE_KEY_FILE] == 0o600
    assert modes["provider-key.env"] == 0o600
    assert modes["provider-key.pub.pem"] == 0o644
    decrypter = EnvelopeDecrypter(
        (out_dir / KEY_ID_FILE).read_text().strip(), (out_dir / PRIVATE_KEY_FILE).read_text()
    )
    public = (out_dir / "provider-key.pub.pem").read_text()
    assert decrypter.decrypt(encrypt("x", public_pem=public, key_id="file-pair")) == "x"
    again = Cli(dict(os.environ)).run("keys", "encryption-pair", "--out-dir", str(out_dir))
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr


def test_config_check_names_the_bad_field(tmp_path: Path, make_settings: SettingsFactory) -> None:
    """`config check` on a file with a bad model price exits 2 and names the field's path."""
    config = tmp_path / "odock.yaml"
    config.write_text(
        "models:\n"
        "  - {org: acme, name: ok}\n"
        "  - {org: acme, name: bad, pricing: {input: {text_cost_per_1k_tokens: -1}}}\n"
    )
    cli = Cli(odock_env(make_settings()))
    done = cli.run("--config", str(config), "config", "check")
    assert done.returncode == 2
    assert "models[1].pricing.input.text_cost_per_1k_tokens" in done.stderr

    config.write_text("organisations: [{name: acme}]\nmodels: [{org: acme, name: ok}]\n")
    assert "1 organisation" in cli.ok("--config", str(config), "config", "check")


@pytest.mark.parametrize(
    "half",
    [
        {"ODOCK_PROVIDER_KEY_ENCRYPTION_KEY_ID": "only-the-id"},
        {"ODOCK_PROVIDER_KEY_ENCRYPTION_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\\nAAAA\\n"},
    ],
)
def test_half_an_encryption_pair_refuses_to_start(tmp_path: Path, half: dict[str, str]) -> None:
    """`odock serve` with only one of the pair's two settings exits with a message naming both."""
    settings = load_settings(data_dir=tmp_path, port=0)
    done = Cli(odock_env(settings, **half)).run("serve")
    assert done.returncode == 2
    assert "provider_key_encryption_key_id" in done.stderr
    assert "provider_key_encryption_private_key" in done.stderr


# --- budgets, quotas and policies from the CLI -------------------------------------------------

NANOS_PER_INPUT_TOKEN, NANOS_PER_OUTPUT_TOKEN = 500, 1500  # cli_tenant's $0.50 / $1.50 per 1M tokens


def bounded_chat(gateway: Gateway, secret: str, model: str) -> httpx.Response:
    """One chat completion asking for at most the 7 output tokens the mock returns (a small reservation)."""
    return httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {secret}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7},
        timeout=30,
    )


def standing(gateway: Gateway, secret: str) -> httpx.Response:
    """``GET /v1/keys/self``: the budgets, quotas and policies the gateway currently applies to the key."""
    return httpx.get(
        gateway.base_url + "/v1/keys/self", headers={"authorization": f"Bearer {secret}"}, timeout=30
    )


def applies(kind: str, meter_id: str, **expected: object) -> Callable[[httpx.Response], bool]:
    """Accepts a standing in which the budget or quota ``meter_id`` applies (with the ``expected`` fields)."""

    def accept(response: httpx.Response) -> bool:
        entries = [e for e in response.json()[kind] if e["id"] == meter_id]
        return bool(entries) and all(entries[0].get(k) == v for k, v in expected.items())

    return accept


def ledger_used(gateway: Gateway, org: str, meter_id: str, expected: int) -> int:
    """The ledger's settled use of a meter's current window, once it reaches ``expected`` (10 s deadline)."""
    budgets = gateway.runtime.budgets
    organisation = gateway.run(gateway.runtime.control.tenancy.organisation_by_name(org))
    deadline = time.monotonic() + 10
    while True:
        gateway.flush_usage()
        meters = [m for m in gateway.run(budgets.list(organisation.id)) if m.id == meter_id]
        window = gateway.run(budgets.current_windows(meters))[meter_id]
        used = window.used if window else -1
        if used == expected or time.monotonic() > deadline:
            return used
        time.sleep(0.02)


def until_refused(
    gateway: Gateway, tenant: CliTenant, most: int
) -> tuple[list[httpx.Response], httpx.Response]:
    """Send bounded chats until one is refused (at most ``most``); return the admitted and the refusal."""
    admitted = []
    for _ in range(most):
        response = bounded_chat(gateway, tenant.secret, tenant.model)
        if response.status_code != 200:
            return admitted, response
        admitted.append(response)
    pytest.fail(f"{most} requests were all admitted")


def test_cli_budget_is_enforced_by_a_running_gateway(live: Gateway) -> None:
    """A budget from `budgets create --amount-usd` makes a running gateway answer 402 once it is spent."""
    cli = cli_for(live)
    tenant = cli_tenant(cli)
    assert bounded_chat(live, tenant.secret, tenant.model).status_code == 200  # the key is now cached

    budget = orjson.loads(
        cli.ok(
            "budgets",
            "create",
            "--org",
            tenant.org,
            "--amount-usd",
            "0.00005",
            "--period",
            "DAILY",
            "--json",
            "daily",
        )
    )
    assert budget["amount_nanos_usd"] == 50_000
    # The cached key has no budget; well inside the 300 s cache TTL, the CLI's invalidation must bring it.
    seen = eventually(lambda: standing(live, tenant.secret), applies("budgets", budget["id"], limit=50_000))
    assert applies("budgets", budget["id"])(seen)

    admitted, refused = until_refused(live, tenant, most=20)
    assert (refused.status_code, error_code(refused)) == (402, "budget_exceeded")
    assert refused.json()["error"]["budget_id"] == budget["id"]
    assert len(admitted) >= 1
    usages = [r.json()["usage"] for r in admitted]
    spent = sum(
        u["prompt_tokens"] * NANOS_PER_INPUT_TOKEN + u["completion_tokens"] * NANOS_PER_OUTPUT_TOKEN
        for u in usages
    )
    assert 0 < spent <= 50_000
    assert ledger_used(live, tenant.org, budget["id"], spent) == spent

    [listed] = orjson.loads(cli.ok("budgets", "list", "--org", tenant.org, "--json"))
    assert (listed["id"], listed["used"], listed["limit"], listed["limit_usd"]) == (
        budget["id"],
        spent,
        50_000,
        "0.00005",
    )
    assert listed["window_start"] <= listed["window_end"]
    table = cli.ok("budgets", "list", "--org", tenant.org)
    assert "daily" in table
    assert "0.00005" in table


def test_cli_quota_limit_and_switch_reach_a_running_gateway(live: Gateway) -> None:
    """A REQUESTS quota admits exactly its limit; set-limit keeps the spend; disable lifts it."""
    cli = cli_for(live)
    tenant = cli_tenant(cli)
    assert bounded_chat(live, tenant.secret, tenant.model).status_code == 200

    quota = orjson.loads(
        cli.ok("quotas", "create", "--org", tenant.org, "--metric", "REQUESTS", "--limit", "2", "--json", "q")
    )
    eventually(lambda: standing(live, tenant.secret), applies("quotas", quota["id"]))
    admitted, refused = until_refused(live, tenant, most=5)
    assert len(admitted) == 2
    assert (refused.status_code, error_code(refused)) == (429, "quota_exceeded")

    # Raising the limit by one admits exactly one more: the two already made still count.
    assert ledger_used(live, tenant.org, quota["id"], 2) == 2
    cli.ok("quotas", "set-limit", quota["id"], "--limit", "3")
    eventually(lambda: standing(live, tenant.secret), applies("quotas", quota["id"], limit=3, used=2))
    admitted, refused = until_refused(live, tenant, most=5)
    assert len(admitted) == 1
    assert error_code(refused) == "quota_exceeded"

    cli.ok("quotas", "disable", quota["id"])
    eventually(lambda: standing(live, tenant.secret), lambda r: r.json()["quotas"] == [])
    assert bounded_chat(live, tenant.secret, tenant.model).status_code == 200
    [listed] = orjson.loads(cli.ok("quotas", "list", "--org", tenant.org, "--json"))
    assert (listed["active"], listed["version"], listed["limit"]) == (False, 2, 3)


def test_cli_policy_reaches_a_running_gateway(live: Gateway) -> None:
    """`policies set --key` with one request per minute makes the running gateway refuse the second."""
    cli = cli_for(live)
    tenant = cli_tenant(cli)
    assert bounded_chat(live, tenant.secret, tenant.model).status_code == 200

    bad = cli.run(
        "policies",
        "set",
        "--org",
        tenant.org,
        "--key",
        tenant.key_id,
        "--json",
        '{"ratelimit": {"requests": {"per_minutes": 1}}}',
    )
    assert bad.returncode == 1
    assert bad.stderr.strip() == "odock: ratelimit.requests.per_minutes: Extra inputs are not permitted"

    cli.ok(
        "policies",
        "set",
        "--org",
        tenant.org,
        "--key",
        tenant.key_id,
        "--json",
        '{"ratelimit": {"requests": {"per_minute": 1}}}',
    )
    eventually(lambda: standing(live, tenant.secret), lambda r: r.json()["policies"]["api_key"] != {})
    assert bounded_chat(live, tenant.secret, tenant.model).status_code == 200
    refused = bounded_chat(live, tenant.secret, tenant.model)
    assert (refused.status_code, error_code(refused)) == (429, "rpm_exceeded")
    shown = orjson.loads(cli.ok("policies", "show", "--org", tenant.org, "--key", tenant.key_id))
    assert shown == {"ratelimit": {"requests": {"per_minute": 1}}}
