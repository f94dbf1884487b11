"""The ``odock budgets|quotas|policies`` commands on an embedded database, run in-process.

These prove parsing and rendering (exact money, owners, errors naming the field); that the
changes reach a running gateway is proved by ``tests/integration/test_cli.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from odock.cli import main

Odock = Callable[..., Result]


@pytest.fixture
def odock(tmp_path: Path) -> Odock:
    """Run ``odock ARGS`` in-process against an embedded database of the test's own."""
    runner = CliRunner()
    env: dict[str, str | None] = {"ODOCK_DATA_DIR": str(tmp_path / "data"), "ODOCK_DEMO": "false"}
    for inherited in (
        "ODOCK_CONFIG",
        "ODOCK_DATABASE_URL",
        "ODOCK_REDIS_URL",
        "ODOCK_RATELIMIT_GLOBAL_POLICY",
    ):
        env[inherited] = None

    def run(*args: str, input: str | None = None, extra_env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, list(args), env={**env, **(extra_env or {})}, input=input)

    return run


def ok(result: Result) -> str:
    """The stdout of a command that must have succeeded."""
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return result.stdout


def as_json(result: Result) -> Any:
    """The parsed JSON stdout of a successful command."""
    return orjson.loads(ok(result))


@pytest.fixture
def acme(odock: Odock) -> str:
    """An organisation ``acme`` with team ``platform`` and user ``ann@acme.io``."""
    ok(odock("orgs", "create", "acme"))
    ok(odock("teams", "create", "--org", "acme", "platform"))
    ok(odock("users", "create", "--org", "acme", "ann@acme.io"))
    return "acme"


@pytest.mark.parametrize(
    ("usd", "nanos"), [("12.50", 12_500_000_000), ("0.000000001", 1), ("7", 7_000_000_000)]
)
def test_usd_amount_is_stored_as_exact_nanos(odock: Odock, acme: str, usd: str, nanos: int) -> None:
    """--amount-usd becomes the exact integer of nanos (1 USD = 1e9)."""
    created = as_json(odock("budgets", "create", "--org", acme, "--amount-usd", usd, "--json", "b"))
    assert created["amount_nanos_usd"] == nanos
    assert created["limit"] == nanos
    assert created["used"] == 0


def test_inexact_usd_is_refused_before_anything_is_written(odock: Odock, acme: str) -> None:
    """An amount with 10 decimals exits 2 naming --amount-usd, and no budget is created."""
    refused = odock("budgets", "create", "--org", acme, "--amount-usd", "1e-10", "b")
    assert refused.exit_code == 2
    assert "--amount-usd" in refused.stderr
    assert "more than 9 decimals" in refused.stderr
    assert as_json(odock("budgets", "list", "--org", acme, "--json")) == []


@pytest.mark.parametrize("amounts", [(), ("--amount-usd", "1", "--amount-nanos", "5")])
def test_exactly_one_amount_is_required(odock: Odock, acme: str, amounts: tuple[str, ...]) -> None:
    """Neither or both of --amount-usd and --amount-nanos is a usage error."""
    refused = odock("budgets", "create", "--org", acme, *amounts, "b")
    assert refused.exit_code == 2
    assert "give exactly one of --amount-usd or --amount-nanos" in refused.stderr


def test_owner_option_names_team_user_or_key(odock: Odock, acme: str) -> None:
    """--owner resolves team names, user e-mails and key ids of the organisation; others are refused."""
    key_id = as_json(odock("keys", "create", "--org", acme, "--json", "app"))["id"]
    ok(odock("orgs", "create", "other"))
    foreign = as_json(odock("keys", "create", "--org", "other", "--json", "theirs"))["id"]
    for owner in ("team:platform", "user:Ann@acme.io", f"key:{key_id}"):
        ok(
            odock(
                "quotas",
                "create",
                "--org",
                acme,
                "--metric",
                "tokens",
                "--limit",
                "10",
                "--owner",
                owner,
                owner,
            )
        )
    listed = as_json(odock("quotas", "list", "--org", acme, "--json"))
    assert [row["owner"] for row in listed] == ["team:platform", "user:ann@acme.io", f"key:{key_id}"]
    assert {row["metric"] for row in listed} == {"TOKENS"}

    other_org = odock(
        "budgets", "create", "--org", acme, "--amount-nanos", "1", "--owner", f"key:{foreign}", "x"
    )
    assert other_org.exit_code == 1
    assert f"{foreign} is not in this organisation" in other_org.stderr
    malformed = odock("budgets", "create", "--org", acme, "--amount-nanos", "1", "--owner", "boss", "x")
    assert malformed.exit_code == 2
    assert "is not one of org|team:NAME|user:EMAIL|key:ID" in malformed.stderr


def test_schedule_options_are_stored(odock: Odock, acme: str) -> None:
    """Period, start with offset, time zone, rollover and thresholds are stored as given."""
    created = as_json(
        odock(
            "budgets", "create", "--org", acme, "--amount-usd", "5", "--period", "weekly",
            "--start", "2026-01-05T00:00:00+01:00", "--timezone", "Europe/Paris", "--rollover",
            "--threshold", "80", "--threshold", "50", "--json", "weekly",
        )
    )  # fmt: skip
    assert (created["period"], created["timezone"], created["rollover"]) == ("WEEKLY", "Europe/Paris", True)
    assert datetime.fromisoformat(created["start_at"]) == datetime(2026, 1, 4, 23, tzinfo=UTC)
    assert created["thresholds"] == [50, 80]
    naive = odock("budgets", "create", "--org", acme, "--amount-usd", "5", "--start", "2026-01-05T00:00", "x")
    assert naive.exit_code == 2
    assert "has no UTC offset" in naive.stderr


def test_limits_and_switches_change_the_right_kind(odock: Odock, acme: str) -> None:
    """set-limit, disable and enable change a budget or quota by id; the other kind's id is refused."""
    budget = as_json(odock("budgets", "create", "--org", acme, "--amount-usd", "1", "--json", "b"))["id"]
    quota = as_json(
        odock("quotas", "create", "--org", acme, "--metric", "requests", "--limit", "5", "--json", "q")
    )
    assert "20 USD per window" in ok(odock("budgets", "set-limit", budget, "--amount-usd", "20"))
    ok(odock("budgets", "disable", budget))
    assert "7 REQUESTS per window" in ok(odock("quotas", "set-limit", quota["id"], "--limit", "7"))
    [stored_budget] = as_json(odock("budgets", "list", "--org", acme, "--json"))
    [stored_quota] = as_json(odock("quotas", "list", "--org", acme, "--json"))
    assert (stored_budget["limit_usd"], stored_budget["version"], stored_budget["active"]) == ("20", 2, False)
    assert (stored_quota["limit"], stored_quota["version"], stored_quota["active"]) == (7, 2, True)
    ok(odock("budgets", "enable", budget))
    assert as_json(odock("budgets", "list", "--org", acme, "--json"))[0]["active"] is True

    wrong = odock("budgets", "disable", quota["id"])
    assert wrong.exit_code == 1
    assert wrong.stderr.strip() == f"odock: budget '{quota['id']}' does not exist"
    assert as_json(odock("quotas", "list", "--org", acme, "--json"))[0]["active"] is True


def test_invalid_policy_is_refused_naming_the_field(odock: Odock, acme: str) -> None:
    """policies set with a misspelt limit exits 1 naming the field; the stored policy is unchanged."""
    refused = odock(
        "policies", "set", "--org", acme, "--json", '{"ratelimit": {"requests": {"per_minutes": 5}}}'
    )
    assert refused.exit_code == 1
    assert refused.stderr.strip() == "odock: ratelimit.requests.per_minutes: Extra inputs are not permitted"
    assert as_json(odock("policies", "show", "--org", acme)) == {}


def test_policy_from_a_file_is_stored_normalised(odock: Odock, acme: str, tmp_path: Path) -> None:
    """A nested envelope read from a file is stored bare and parsed; show prints what is stored."""
    policy = tmp_path / "policy.json"
    policy.write_text(
        '{"policies": {"ratelimit": {"requests": {"per_minute": 60, "burst": 0}}, "routing": {"a": 1}}}'
    )
    ok(odock("policies", "set", "--org", acme, "--team", "platform", "--file", str(policy)))
    expected = {"ratelimit": {"requests": {"per_minute": 60}}, "routing": {"a": 1}}
    assert as_json(odock("policies", "show", "--org", acme, "--team", "platform")) == expected
    assert as_json(odock("policies", "show", "--org", acme)) == {}

    ok(odock("policies", "set", "--org", acme, "--file", "-", input='{"shadow": true}'))
    assert as_json(odock("policies", "show", "--org", acme)) == {"shadow": True}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--team", "platform", "--model", "m", "--json", "{}"),
            "give at most one of --team, --key and --model",
        ),
        ((), "give exactly one of --file or --json"),
        (("--json", "[1]"), "must be a JSON object"),
    ],
)
def test_policy_usage_errors(odock: Odock, acme: str, args: tuple[str, ...], message: str) -> None:
    """Ambiguous targets, a missing envelope and non-objects are usage errors (exit 2)."""
    refused = odock("policies", "set", "--org", acme, *args)
    assert refused.exit_code == 2
    assert message in refused.stderr


def test_config_check_names_the_bad_global_policy_field(odock: Odock) -> None:
    """config check exits 2 naming the bad field of ODOCK_RATELIMIT_GLOBAL_POLICY; a valid one passes."""
    bad = odock(
        "config", "check",
        extra_env={"ODOCK_RATELIMIT_GLOBAL_POLICY": '{"ratelimit": {"requests": {"per_minutes": 5}}}'},
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "'ratelimit_global_policy' (ODOCK_RATELIMIT_GLOBAL_POLICY)" in bad.stderr
    assert "ratelimit.requests.per_minutes: Extra inputs are not permitted" in bad.stderr
    good = odock("config", "check", extra_env={"ODOCK_RATELIMIT_GLOBAL_POLICY": '{"shadow": true}'})
    assert "settings OK" in ok(good)
