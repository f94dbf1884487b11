"""Declared MCP servers and keys' MCP grants: applied idempotently, secrets from the environment."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from odock.admin.declarative import DeclarationError, parse_declarations
from odock.admin.reconcile import ApplyReport, apply_declarations
from odock.runtime import Runtime, open_runtime
from odock.settings import Settings
from tests.conftest import SettingsFactory

ALLOWED = "odock-declared-mcp"


@pytest.fixture
def settings(make_backend_settings: SettingsFactory) -> Settings:
    """Settings of the backend under test, allowing one STDIO command."""
    return make_backend_settings(mcp_stdio_allowed_commands=[ALLOWED])


def declared(org: str, *, tools: list[str] | None = None, description: str = "files") -> dict[str, Any]:
    """An organisation with a team, two MCP servers and a key granted both."""
    return {
        "organisations": [{"name": org, "teams": [{"name": "platform"}]}],
        "mcp_servers": [
            {
                "org": org,
                "name": "Files",
                "description": description,
                "transport": "streamable_http",
                "endpoint_url": "https://mcp.example.test/files",
                "auth_type": "oauth2",
                "auth_config": {"token_url": "https://idp.test/token", "client_id": "odock"},
                "auth_from_env": {"client_secret": "MCP_CLIENT_SECRET"},
                "headers_from_env": {"X-Tenant": "MCP_TENANT"},
                "pricing": {"call_nanos_usd": 1000},
                "policies": {"ratelimit": {"requests": {"per_minute": 60}}},
            },
            {
                "org": org,
                "name": "Local tool",
                "slug": "local",
                "transport": "STDIO",
                "stdio_command": ALLOWED,
                "stdio_args": ["--quiet"],
                "stdio_env_from_env": {"TOKEN": "MCP_LOCAL_TOKEN"},
                "team": "platform",
                "blocked_tools": ["delete"],
            },
        ],
        "api_keys": [
            {
                "org": org,
                "name": "app",
                "team": "platform",
                "mcp_servers": [
                    "files",
                    {"server": "local", "tools": tools if tools is not None else ["read"]},
                ],
            }
        ],
    }


async def apply(
    runtime: Runtime, data: dict[str, Any], environ: dict[str, str], *, dry: bool = False
) -> ApplyReport:
    return await apply_declarations(runtime.control, parse_declarations(data), environ=environ, dry_run=dry)


def actions(report: ApplyReport, kind: str) -> list[str]:
    return [c.action for c in report.changes if c.kind == kind]


async def test_declared_mcp_servers_and_grants_apply_idempotently(settings: Settings) -> None:
    """Created once with secrets from the environment; unchanged on re-apply; a changed secret updates."""
    org = "decl-mcp-" + secrets.token_hex(4)
    environ = {"MCP_CLIENT_SECRET": "client-secret-1", "MCP_TENANT": "tenant-2", "MCP_LOCAL_TOKEN": "token-3"}
    async with open_runtime(settings) as runtime:
        planned = await apply(runtime, declared(org), environ, dry=True)
        assert actions(planned, "MCP server") == ["created", "created"]
        first = await apply(runtime, declared(org), environ)
        assert actions(first, "MCP server") == ["created", "created"]
        org_id = (await runtime.control.tenancy.organisation_by_name(org)).id
        files = await runtime.mcp_servers.resolve(org_id, "files")
        local = await runtime.mcp_servers.resolve(org_id, "local")
        assert files is not None
        assert local is not None
        assert files.target.auth_config == {
            "token_url": "https://idp.test/token",
            "client_id": "odock",
            "client_secret": "client-secret-1",
        }
        assert files.target.headers == {"X-Tenant": "tenant-2"}
        assert files.pricing.call_nanos_usd == 1000
        assert (local.target.command, local.target.args, local.target.env) == (
            ALLOWED,
            ("--quiet",),
            {"TOKEN": "token-3"},
        )
        team = await runtime.control.tenancy.team_by_name(org_id, "platform")
        assert local.team_id == team.id
        assert not local.tool_permitted("delete")
        [key] = await runtime.control.keys.named(org_id, "app")
        grants = {g.server.slug: g.tools for g in await runtime.control.mcp_grants.of_key(key.id)}
        assert grants == {"files": None, "local": ("read",)}

        again = await apply(runtime, declared(org), environ)
        assert set(actions(again, "MCP server")) == {"unchanged"}
        assert actions(again, "API key") == ["unchanged"]
        assert {c.action for c in again.changes} == {"unchanged"}

        rotated = environ | {"MCP_CLIENT_SECRET": "client-secret-rotated"}
        dry = await apply(runtime, declared(org, tools=["read", "write"]), rotated, dry=True)
        assert actions(dry, "MCP server") == ["updated", "unchanged"]
        assert actions(dry, "API key") == ["updated"]
        unchanged = await runtime.mcp_servers.resolve(org_id, "files")
        assert unchanged is not None
        assert unchanged.target.auth_config["client_secret"] == "client-secret-1"
        assert {g.server.slug: g.tools for g in await runtime.control.mcp_grants.of_key(key.id)} == grants

        changed = await apply(runtime, declared(org, tools=["read", "write"]), rotated)
        assert actions(changed, "MCP server") == ["updated", "unchanged"]
        after = await runtime.mcp_servers.resolve(org_id, "files")
        assert after is not None
        assert after.target.auth_config["client_secret"] == "client-secret-rotated"
        regranted = {g.server.slug: g.tools for g in await runtime.control.mcp_grants.of_key(key.id)}
        assert regranted == {"files": None, "local": ("read", "write")}


def test_declared_secrets_must_come_from_the_environment() -> None:
    """An inline auth secret, an unknown secret field or a duplicate slug is refused, naming the path."""
    base = declared("acme")
    inline = {**base, "mcp_servers": [{**base["mcp_servers"][0], "auth_config": {"client_secret": "x"}}]}
    with pytest.raises(DeclarationError, match=r"mcp_servers\[0\].*auth_from_env"):
        parse_declarations(inline)
    unknown = {**base, "mcp_servers": [{**base["mcp_servers"][0], "auth_from_env": {"client_id": "X"}}]}
    with pytest.raises(DeclarationError, match=r"mcp_servers\[0\]"):
        parse_declarations(unknown)
    twice = {**base, "mcp_servers": [base["mcp_servers"][0], {**base["mcp_servers"][0], "name": "files"}]}
    with pytest.raises(DeclarationError, match=r"mcp_servers\[1\].*already declared"):
        parse_declarations(twice)
    with pytest.raises(DeclarationError, match="MCP_TENANT"):
        parse_declarations(base).secrets_from({"MCP_CLIENT_SECRET": "a", "MCP_LOCAL_TOKEN": "b"})


async def test_a_stdio_command_off_the_allowlist_is_refused(settings: Settings) -> None:
    """A declared STDIO server needs an allowed command: the apply fails naming the server."""
    org = "decl-mcp-" + secrets.token_hex(4)
    data = declared(org)
    data["mcp_servers"][1]["stdio_command"] = "bash"
    environ = {"MCP_CLIENT_SECRET": "a", "MCP_TENANT": "b", "MCP_LOCAL_TOKEN": "c"}
    async with open_runtime(settings) as runtime:
        with pytest.raises(DeclarationError, match=r"mcp_servers\[1\].*allowlist"):
            await apply(runtime, data, environ)
