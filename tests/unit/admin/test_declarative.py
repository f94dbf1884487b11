"""Parsing declared resources: valid files parse, and every error names its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from odock.admin.declarative import DeclarationError, parse_declarations, read_declarations
from odock.budgets.tables import OwnerType, QuotaMetric
from odock.budgets.windows import Period
from odock.keys.tables import ApiKeyType
from odock.providers.tables import ProviderType


def valid() -> dict[str, Any]:
    """A small, valid declaration that tests copy and break."""
    return {
        "settings": {"log_level": "warning"},
        "organisations": [{"name": "acme", "teams": ["platform"], "users": [{"email": "Ann@Acme.io"}]}],
        "providers": [
            {"org": "acme", "name": "openai", "type": "openai", "keys": [{"name": "p", "from_env": "K"}]}
        ],
        "models": [
            {"org": "acme", "name": "a", "provider": "openai"},
            {
                "org": "acme",
                "name": "b",
                "provider": "openai",
                "pricing_per_million": {"input": 1, "output": 2},
            },
            {
                "org": "acme",
                "name": "c",
                "provider": "openai",
                "pricing": {"input": {"text_cost_per_1k_tokens": 1}},
            },
        ],
        "api_keys": [{"org": "acme", "name": "ci", "team": "platform", "models": ["a"]}],
        "budgets": [{"org": "acme", "name": "monthly", "amount_usd": "12.50", "owner": {"team": "platform"}}],
        "quotas": [{"org": "acme", "name": "daily", "metric": "requests", "limit": 1000, "period": "daily"}],
    }


def error_of(data: dict[str, Any]) -> str:
    """The message of the DeclarationError that parsing ``data`` raises."""
    with pytest.raises(DeclarationError) as caught:
        parse_declarations(data)
    return str(caught.value)


def test_valid_declarations_parse_with_normalised_values() -> None:
    """Types are case-insensitive, e-mails lower-cased, bare team names expanded, key type inferred."""
    declared = parse_declarations(valid())
    assert declared.providers[0].type is ProviderType.OPENAI
    assert declared.organisations[0].users[0].email == "ann@acme.io"
    assert declared.organisations[0].teams[0].name == "platform"
    assert declared.api_keys[0].owner_type is ApiKeyType.TEAM
    assert declared.summary() == (
        "1 organisation, 1 team, 1 user, 1 provider, 1 provider key, 3 models, 1 API key, 1 budget, 1 quota"
    )


def test_pricing_error_names_the_nested_field_path() -> None:
    """A negative rate is reported at models[2].pricing.input.text_cost_per_1k_tokens."""
    data = valid()
    data["models"][2]["pricing"]["input"]["text_cost_per_1k_tokens"] = -1
    assert "models[2].pricing.input.text_cost_per_1k_tokens" in error_of(data)


def test_unknown_field_is_named_with_its_path() -> None:
    """A misspelt field inside a provider key is rejected at providers[0].keys[0].from_enviroment."""
    data = valid()
    data["providers"][0]["keys"][0]["from_enviroment"] = "X"
    assert "providers[0].keys[0].from_enviroment: Extra inputs are not permitted" in error_of(data)


def test_strict_provider_family_is_a_boolean_off_by_default() -> None:
    """Left out it is off; true is kept; a value that is no boolean is named at its path."""
    assert parse_declarations(valid()).organisations[0].strict_provider_family is False
    data = valid()
    data["organisations"][0]["strict_provider_family"] = True
    assert parse_declarations(data).organisations[0].strict_provider_family is True
    data["organisations"][0]["strict_provider_family"] = "sometimes"
    assert "organisations[0].strict_provider_family" in error_of(data)


def test_unknown_top_level_section_is_rejected() -> None:
    """A section that is neither settings nor a resource kind is named."""
    data = valid()
    data["model"] = []
    assert "config: model: Extra inputs are not permitted" in error_of(data)


def test_expiry_without_offset_is_rejected() -> None:
    """An expiry must carry a UTC offset, so its instant is unambiguous."""
    data = valid()
    data["api_keys"][0]["expires_at"] = "2030-01-01T00:00:00"
    assert "api_keys[0].expires_at: Input should have timezone info" in error_of(data)


@pytest.mark.parametrize(
    ("owner", "message"),
    [
        ({"type": "ORGANISATION", "team": "platform"}, "an ORGANISATION key has no team or user"),
        ({"type": "TEAM"}, "a TEAM key needs a team and no user"),
        ({"type": "USER", "user": "ann@acme.io", "team": "platform"}, "a USER key needs a user and no team"),
    ],
)
def test_key_ownership_rules_are_enforced(owner: dict[str, str], message: str) -> None:
    """The ownership rules of spec §3.3 are checked while parsing, at the key's path."""
    data = valid()
    key = {"org": "acme", "name": "k", **owner}
    data["api_keys"] = [key]
    assert f"api_keys[0]: Value error, {message}" in error_of(data)


def test_both_pricing_forms_are_rejected() -> None:
    """pricing and pricing_per_million are alternatives, not a combination."""
    data = valid()
    data["models"][1]["pricing"] = {}
    assert "models[1]: Value error, give pricing or pricing_per_million, not both" in error_of(data)


def test_duplicate_declaration_names_both_places() -> None:
    """Declaring the same model twice in one organisation names both paths."""
    data = valid()
    data["models"].append({"org": "acme", "name": "a"})
    assert "models[3]: model 'acme/a' is already declared at models[0]" in error_of(data)


def test_pricing_per_million_is_stored_per_thousand_exactly() -> None:
    """$0.15 and $0.60 per 1M tokens become exactly 0.00015 and 0.0006 per 1K tokens."""
    data = valid()
    data["models"][1]["pricing_per_million"] = {"input": 0.15, "output": 0.6}
    pricing = parse_declarations(data).models[1].stored_pricing()
    assert pricing["input"]["text_cost_per_1k_tokens"] == 0.00015
    assert pricing["output"]["text_cost_per_1k_tokens"] == 0.0006


def test_missing_environment_variables_are_all_named() -> None:
    """Every secret variable the file names but the environment lacks is reported with its path."""
    data = valid()
    data["api_keys"][0]["secret_from_env"] = "CI_KEY"
    declared = parse_declarations(data)
    with pytest.raises(DeclarationError) as caught:
        declared.secrets_from({"K": "  "})
    message = str(caught.value)
    assert "providers[0].keys[0].from_env: environment variable K is not set" in message
    assert "api_keys[0].secret_from_env: environment variable CI_KEY is not set" in message


def test_read_declarations_reports_yaml_errors(tmp_path: Path) -> None:
    """A file that is not YAML is reported as a DeclarationError naming the file."""
    path = tmp_path / "odock.yaml"
    path.write_text("organisations: [unclosed\n")
    with pytest.raises(DeclarationError, match="is not valid YAML"):
        read_declarations(path)


def test_settings_only_file_declares_nothing(tmp_path: Path) -> None:
    """A file with only a settings section declares no resources."""
    path = tmp_path / "odock.yaml"
    path.write_text("settings:\n  port: 9000\n")
    assert read_declarations(path).is_empty


BAD_POLICY = {"ratelimit": {"requests": {"per_minutes": 5}}}


def declare_bad_policy(data: dict[str, Any], path: str) -> None:
    """Put BAD_POLICY at ``organisations``, ``teams``, ``models`` or ``api_keys`` of ``data``."""
    if path == "teams":
        data["organisations"][0]["teams"] = [{"name": "platform", "policies": BAD_POLICY}]
    else:
        data[path][0 if path != "models" else 1]["policies"] = BAD_POLICY


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ("organisations", "organisations[0].policies"),
        ("teams", "organisations[0].teams[0].policies"),
        ("models", "models[1].policies"),
        ("api_keys", "api_keys[0].policies"),
    ],
)
def test_policy_error_names_the_field_inside_the_envelope(section: str, path: str) -> None:
    """A misspelt limit in any declared policy is reported at its full path, down to the field."""
    data = valid()
    declare_bad_policy(data, section)
    assert f"config: {path}.ratelimit.requests.per_minutes: Extra inputs are not permitted" in error_of(data)


def test_policy_list_index_is_named_like_other_paths() -> None:
    """A bad address in an allowlist is reported at ...ip.allowlist[1]."""
    data = valid()
    data["organisations"][0]["policies"] = {"ip": {"allowlist": ["10.0.0.0/8", "not-an-ip"]}}
    assert "config: organisations[0].policies.ip.allowlist[1]: " in error_of(data)


def test_declared_policies_are_parsed_as_stored() -> None:
    """Declared envelopes take the control plane's stored form, so a re-apply compares equal."""
    data = valid()
    data["api_keys"][0]["policies"] = {"policies": {"ratelimit": {"requests": {"per_minute": 5, "burst": 0}}}}
    assert parse_declarations(data).api_keys[0].policies == {"ratelimit": {"requests": {"per_minute": 5}}}


def test_budgets_and_quotas_parse_with_normalised_values() -> None:
    """USD becomes exact nanos, owners are inferred from what they name, enum values ignore case."""
    declared = parse_declarations(valid())
    budget, quota = declared.budgets[0], declared.quotas[0]
    assert budget.nanos == 12_500_000_000
    assert (budget.owner.kind, budget.owner.reference) == (OwnerType.TEAM, "platform")
    assert budget.period is Period.MONTHLY
    assert (quota.metric, quota.limit, quota.period) == (QuotaMetric.REQUESTS, 1000, Period.DAILY)
    assert quota.owner.kind is OwnerType.ORG


@pytest.mark.parametrize(
    ("amount", "nanos"), [("0.000000001", 1), (12.5, 12_500_000_000), (0.1, 100_000_000)]
)
def test_budget_usd_amount_is_exact(amount: object, nanos: int) -> None:
    """A USD amount, quoted or a YAML number, is stored as the exact integer of nanos."""
    data = valid()
    data["budgets"][0]["amount_usd"] = amount
    assert parse_declarations(data).budgets[0].nanos == nanos


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount_usd": "1e-10"}, "budgets[0].amount_usd: Value error, '1E-10' has more than 9 decimals"),
        ({"amount_nanos": 5}, "budgets[0]: Value error, give exactly one of amount_usd or amount_nanos"),
        ({"amount_usd": "-1"}, "budgets[0].amount_usd: Value error, a USD amount must be a number ≥ 0"),
        (
            {"owner": {"type": "team"}},
            "budgets[0].owner: Value error, a TEAM owner needs team and nothing else",
        ),
        (
            {"owner": {"type": "org", "key": "ci"}},
            "budgets[0].owner: Value error, an ORG owner names no team",
        ),
        ({"owner": {"team": "platform", "user": "a@b.c"}}, "a TEAM owner needs team and nothing else"),
        (
            {"period": "yearly"},
            "budgets[0].period: Input should be 'DAILY', 'WEEKLY', 'MONTHLY' or 'QUARTERLY'",
        ),
        ({"timezone": "Mars/Olympus"}, "budgets[0].timezone: Value error, unknown timezone 'Mars/Olympus'"),
        ({"start_at": "2026-01-01T00:00:00"}, "budgets[0].start_at: Input should have timezone info"),
        (
            {"start_at": "2026-02-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"},
            "end_at must be after start_at",
        ),
        ({"thresholds": [50, 1001]}, "budgets[0].thresholds[1]: Input should be less than or equal to 1000"),
    ],
)
def test_budget_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    """Each invalid budget field is reported with its path."""
    data = valid()
    data["budgets"][0].update(change)
    assert message in error_of(data)


def test_quota_errors_name_the_field() -> None:
    """An unknown metric and a negative limit are each reported at the quota's field."""
    data = valid()
    data["quotas"][0].update(metric="tokenz", limit=-1)
    message = error_of(data)
    assert "quotas[0].metric: Input should be 'REQUESTS'" in message
    assert "quotas[0].limit: Input should be greater than or equal to 0" in message


def test_duplicate_budget_names_both_places() -> None:
    """Two budgets with one name in one organisation are refused; a quota may share the name."""
    data = valid()
    data["budgets"].append({"org": "acme", "name": "monthly", "amount_nanos": 1})
    data["quotas"].append({"org": "acme", "name": "monthly", "metric": "tokens", "limit": 1})
    message = error_of(data)
    assert "budgets[1]: budget 'acme/monthly' is already declared at budgets[0]" in message
    assert "quota" not in message
