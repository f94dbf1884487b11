"""``odock mcp`` as an operator runs it: a separate process managing the MCP servers of a running gateway.

Secrets come from environment variables named on the command line and never appear in any output;
the running gateway's directory (``runtime.mcp_servers``) sees every change at once (embedded: the
CLI notifies it; production: the Redis bus).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
import pytest

from odock.mcp.resolved import ResolvedMcpServer
from tests.conftest import Gateway, GatewayFactory, SettingsFactory
from tests.integration.test_cli import INVALIDATION_SECRET, cli_for

TOKEN = "mcp-token-" + secrets.token_hex(8)


@pytest.fixture
def live(gateway_factory: GatewayFactory, make_settings: SettingsFactory) -> Gateway:
    """A running gateway that accepts cache invalidations from the CLI (used when embedded)."""
    return gateway_factory(make_settings(cache_invalidation_secret=INVALIDATION_SECRET))


def _resolve(gateway: Gateway, org_id: str, ident: str) -> ResolvedMcpServer | None:
    return gateway.run(gateway.runtime.mcp_servers.resolve(org_id, ident))  # type: ignore[no-any-return]


def test_cli_manages_servers_grants_and_the_allowlist(live: Gateway) -> None:
    """Add, list, update, grant, revoke, delete through the CLI; the gateway follows; secrets stay hidden."""
    cli = cli_for(live)
    org = "cli-mcp-" + secrets.token_hex(4)
    cli.ok("orgs", "create", org)
    org_id = live.run(live.runtime.control.tenancy.organisation_by_name(org)).id
    key = orjson.loads(cli.ok("keys", "create", "--org", org, "--json", "app"))
    added = cli.ok(
        "mcp", "add", "--org", org, "--transport", "STREAMABLE_HTTP", "--endpoint", "https://mcp.example.test/mcp",
        "--auth-type", "BEARER", "--secret-env", "auth_config.token=MCP_TOKEN", "--allow-tool", "read",
        "--set", '{"pricing": {"call_nanos_usd": 1000}}', "Files",
        extra_env={"MCP_TOKEN": TOKEN},
    )  # fmt: skip
    assert "/v1/mcp/files" in added
    listed = cli.ok("mcp", "list", "--org", org, "--json")
    [row] = orjson.loads(listed)
    assert (row["slug"], row["auth_config"], row["allowed_tools"]) == ("files", {"token": "***"}, ["read"])
    assert TOKEN not in listed + added
    warm = _resolve(live, org_id, "files")
    assert warm is not None
    assert warm.target.auth_config == {"token": TOKEN}
    assert warm.pricing.call_nanos_usd == 1000
    cli.ok("mcp", "update", "--org", org, "--secret-env", "auth_config.token=NEXT", "--disable", "files",
           extra_env={"NEXT": "next-token"})  # fmt: skip
    changed = _resolve(live, org_id, "files")
    assert changed is not None
    assert (changed.enabled, changed.target.auth_config) == (False, {"token": "next-token"})
    for header, value in (("X-A", "a-value"), ("X-B", "b-value")):
        cli.ok(
            "mcp",
            "update",
            "--org",
            org,
            "--secret-env",
            f"headers.{header}=V",
            "files",
            extra_env={"V": value},
        )
    merged = _resolve(live, org_id, "files")
    assert merged is not None
    assert merged.target.headers == {"X-A": "a-value", "X-B": "b-value"}
    assert merged.target.auth_config == {"token": "next-token"}

    # Secrets never come from the command line, and a missing variable is named.
    refused = cli.run("mcp", "update", "--org", org, "--set", '{"headers": {"X": "plain"}}', "files")
    assert refused.returncode == 2
    assert "secret-env" in refused.stderr
    unset = cli.run("mcp", "update", "--org", org, "--secret-env", "headers.X=ODOCK_UNSET_VARIABLE", "files")
    assert unset.returncode == 1
    assert "ODOCK_UNSET_VARIABLE" in unset.stderr

    # The STDIO allowlist gates STDIO servers.
    command = "cli-tool-" + secrets.token_hex(3)
    stdio: list[Any] = [
        "mcp",
        "add",
        "--org",
        org,
        "--transport",
        "STDIO",
        "--command",
        command,
        "--arg",
        "-q",
    ]
    off_list = cli.run(*stdio, "local")
    assert off_list.returncode == 1
    assert "allowlist" in off_list.stderr
    cli.ok("mcp", "allowlist", "add", "--note", "test tool", command)
    entries = orjson.loads(cli.ok("mcp", "allowlist", "list", "--json"))
    assert {"command": command, "origin": "database", "note": "test tool"}.items() <= next(
        e for e in entries if e["command"] == command
    ).items()
    cli.ok(*stdio, "--secret-env", "stdio_env.TOKEN=T", "local", extra_env={"T": "env-secret"})
    local = _resolve(live, org_id, "local")
    assert local is not None
    assert (local.target.command, local.target.args, local.target.env) == (
        command,
        ("-q",),
        {"TOKEN": "env-secret"},
    )
    cli.ok("mcp", "allowlist", "remove", command)
    assert command not in cli.ok("mcp", "allowlist", "list")

    # Grants and tool grants reach the key's principal.
    cli.ok("mcp", "grant", "--tool", "read", key["id"], "files", "local")
    grants = {g["slug"]: g["tools"] for g in orjson.loads(cli.ok("mcp", "grants", "--json", key["id"]))}
    assert grants == {"files": ["read"], "local": ["read"]}
    cli.ok("mcp", "revoke", key["id"], "local")
    assert [g["slug"] for g in orjson.loads(cli.ok("mcp", "grants", "--json", key["id"]))] == ["files"]

    cli.ok("mcp", "delete", "--org", org, "files")
    assert _resolve(live, org_id, "files") is None
    assert orjson.loads(cli.ok("mcp", "grants", "--json", key["id"])) == []
