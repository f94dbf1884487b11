"""MCP servers through the API: CRUD, validation, secrets, the STDIO allowlist, key and tool grants, RBAC."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from odock.keys.directory import load_mcp_grants
from odock.mcp.resolved import McpGrant
from odock.mcp.tables import McpServer
from odock.providers.crypto import EnvelopeDecrypter
from odock.tenancy.tables import Role, TeamMemberRole
from tests.integration.api.conftest import ModuleGatewayFactory
from tests.support.api import Caller, ControlPlaneUnderTest

ALLOWED = "odock-test-mcp"  # on the settings' allowlist of this module's gateway
TOKEN = "bearer-" + "f00d" * 8


@pytest.fixture(scope="module")
def mcp_plane(module_gateway_factory: ModuleGatewayFactory) -> Iterator[ControlPlaneUnderTest]:
    """One gateway for the module, whose settings allow one STDIO command."""
    cp = ControlPlaneUnderTest(module_gateway_factory(mcp_stdio_allowed_commands=[ALLOWED]))
    yield cp
    cp.close()


def _create(caller: Caller, org: str, expect: int = 201, **body: Any) -> dict[str, Any]:
    response = caller.post(f"/api/organisations/{org}/mcp-servers", json=body)
    assert response.status_code == expect, response.text
    created: dict[str, Any] = response.json()
    return created


def _http(caller: Caller, org: str, **extra: Any) -> dict[str, Any]:
    body = {"name": f"Files {secrets.token_hex(3)}", "transport": "STREAMABLE_HTTP"}
    body["endpoint_url"] = "https://mcp.example.test/mcp"
    return _create(caller, org, **(body | extra))


def _stored(cp: ControlPlaneUnderTest, server_id: str) -> McpServer:
    async def load() -> McpServer:
        async with cp.gateway.runtime.sessions() as session:
            row = await session.get(McpServer, server_id)
            assert row is not None
            return row

    return cp.gateway.run(load())  # type: ignore[no-any-return]


def _decrypter(cp: ControlPlaneUnderTest) -> EnvelopeDecrypter:
    decrypter = cp.gateway.runtime.vault.decrypter
    assert decrypter is not None
    return decrypter  # type: ignore[no-any-return]


def _key(caller: Caller, org: str, **body: Any) -> dict[str, Any]:
    response = caller.post(f"/api/organisations/{org}/apikeys", json={"name": "k"} | body)
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


def _error(response: Any, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    if param is not None:
        assert error["param"] == param, error
    return error


def test_create_get_list_update_delete(mcp_plane: ControlPlaneUnderTest) -> None:
    """A server is created with a slug from its name, read, listed with filters, changed and deleted."""
    org = mcp_plane.organisation()
    admin = mcp_plane.caller(Role.ORG_ADMIN, org)
    server = _create(
        admin,
        org,
        name="GitHub Tools",
        transport="STREAMABLE_HTTP",
        endpoint_url="https://mcp.example.test/github",
        allowed_tools=["search", "search", "read"],
        pricing={"call_nanos_usd": 1000, "input_usd_per_1m_bytes": "0.05"},
        policies={"ratelimit": {"requests": {"per_minute": 300}}},
        semantic_filter={"blockedKeywords": ["rm -rf"]},
    )
    assert server["slug"] == "github-tools"
    assert server["path"] == "/v1/mcp/github-tools"
    assert server["allowed_tools"] == ["search", "read"]
    assert server["pricing"] == {
        "call_nanos_usd": 1000,
        "input_byte_nanos_usd": 50,
        "output_byte_nanos_usd": 0,
    }
    assert server["semantic_filter"] == {"blocked_keywords": ["rm -rf"]}
    assert server["policies"]["ratelimit"]["requests"]["per_minute"] == 300
    path = f"/api/organisations/{org}/mcp-servers"
    assert admin.get(f"{path}/{server['id']}").json() == server
    stdio = _create(admin, org, name="Local", slug="local", transport="STDIO", stdio_command=ALLOWED)
    listed = admin.get(path, params={"transport": "STDIO"}).json()["items"]
    assert [s["id"] for s in listed] == [stdio["id"]]
    assert [s["id"] for s in admin.get(path, params={"q": "github"}).json()["items"]] == [server["id"]]
    assert {s["id"] for s in admin.get(path, params={"sort": "slug", "order": "asc"}).json()["items"]} == {
        server["id"],
        stdio["id"],
    }
    changed = admin.patch(f"{path}/{server['id']}", json={"enabled": False, "description": "d"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["enabled"], changed.json()["description"]) == (False, "d")
    assert admin.get(path, params={"enabled": "false"}).json()["items"][0]["id"] == server["id"]
    assert admin.delete(f"{path}/{server['id']}").status_code == 204
    assert admin.get(f"{path}/{server['id']}").status_code == 404
    everywhere = mcp_plane.admin.get("/api/admin/mcp-servers", params={"organisation_id": org}).json()
    assert [s["id"] for s in everywhere["items"]] == [stdio["id"]]


def test_validation_refuses_incomplete_servers(mcp_plane: ControlPlaneUnderTest) -> None:
    """A server without its endpoint or command, with a bad slug, auth shape or pricing, is never saved."""
    org = mcp_plane.organisation()
    admin = mcp_plane.caller(Role.ORG_ADMIN, org)
    base = {"name": "x"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"transport": "STREAMABLE_HTTP"}, "endpoint_url"),
        ({"transport": "SSE", "endpoint_url": "ftp://x.test/"}, "endpoint_url"),
        ({"transport": "STDIO"}, "stdio_command"),
        ({"transport": "STDIO", "stdio_command": "bash"}, "stdio_command"),
        ({"transport": "STDIO", "stdio_command": f"/usr/bin/{ALLOWED}"}, "stdio_command"),
        ({"transport": "SSE", "endpoint_url": "https://x.test/", "auth_type": "BEARER"}, "auth_config"),
        (
            {"transport": "SSE", "endpoint_url": "https://x.test/", "auth_type": "BASIC",
             "auth_config": {"username": "u", "token": "t"}},
            "auth_config",
        ),
        ({"transport": "SSE", "endpoint_url": "https://x.test/", "pricing": {"call_nanos_usd": -1}},
         "pricing"),
        ({"transport": "SSE", "endpoint_url": "https://x.test/", "policies": {"ratelimit": {"x": 1}}}, None),
        ({"transport": "SSE", "endpoint_url": "https://x.test/", "team_id": "nope"}, "team_id"),
    ]  # fmt: skip
    for extra, param in cases:
        response = admin.post(f"/api/organisations/{org}/mcp-servers", json=base | extra)
        assert response.status_code == 422, (extra, response.text)
        if param is not None:
            assert response.json()["error"]["param"] == param, (extra, response.text)
    bad = admin.post(f"/api/organisations/{org}/mcp-servers", json=base | {"transport": "WEBSOCKET"})
    assert bad.status_code == 422
    slug = admin.post(
        f"/api/organisations/{org}/mcp-servers",
        json=base | {"slug": "Bad--Slug", "transport": "SSE", "endpoint_url": "https://x.test/"},
    )
    assert slug.status_code == 422
    assert admin.get(f"/api/organisations/{org}/mcp-servers").json()["items"] == []
    first = _http(admin, org, slug="same")
    _error(admin.post(f"/api/organisations/{org}/mcp-servers", json=base | {
        "slug": "same", "transport": "SSE", "endpoint_url": "https://x.test/"}), 409)  # fmt: skip
    # An update is checked as the row it leaves: switching to STDIO needs an allowed command.
    path = f"/api/organisations/{org}/mcp-servers/{first['id']}"
    _error(admin.patch(path, json={"transport": "STDIO"}), 422, "stdio_command")
    _error(admin.patch(path, json={"endpoint_url": None}), 422, "endpoint_url")
    switched = admin.patch(path, json={"transport": "STDIO", "stdio_command": ALLOWED, "stdio_args": ["-v"]})
    assert switched.status_code == 200, switched.text
    assert (switched.json()["transport"], switched.json()["stdio_args"]) == ("STDIO", ["-v"])


def test_secrets_are_envelopes_never_shown_and_kept_by_stars(mcp_plane: ControlPlaneUnderTest) -> None:
    """Auth secrets, header and env values are stored as envelopes, shown as ***, and *** keeps them."""
    org = mcp_plane.organisation()
    admin = mcp_plane.caller(Role.ORG_ADMIN, org)
    server = _create(
        admin,
        org,
        name="oauth",
        transport="STDIO",
        stdio_command=ALLOWED,
        stdio_env={"API_TOKEN": "env-secret-1"},
        headers={"X-Tenant": "tenant-secret-2"},
        auth_type="OAUTH2",
        auth_config={
            "token_url": "https://idp.test/token",
            "client_id": "cid",
            "client_secret": "cs-secret-3",
        },
    )
    assert server["auth_config"] == {
        "token_url": "https://idp.test/token",
        "client_id": "cid",
        "client_secret": "***",
    }
    assert (server["headers"], server["stdio_env"]) == ({"X-Tenant": "***"}, {"API_TOKEN": "***"})
    row = _stored(mcp_plane, server["id"])
    raw = orjson.dumps([row.auth_config, row.headers, row.stdio_env]).decode()
    for plaintext in ("env-secret-1", "tenant-secret-2", "cs-secret-3"):
        assert plaintext not in raw
    decrypter = _decrypter(mcp_plane)
    assert decrypter.open(row.auth_config["client_secret"]) == "cs-secret-3"
    assert decrypter.open(row.headers["X-Tenant"]) == "tenant-secret-2"
    assert decrypter.open(row.stdio_env["API_TOKEN"]) == "env-secret-1"
    path = f"/api/organisations/{org}/mcp-servers/{server['id']}"
    kept = admin.patch(
        path,
        json={
            "auth_config": {"token_url": "https://idp.test/t2", "client_id": "cid", "client_secret": "***"},
            "headers": {"X-Tenant": "***", "X-New": "new-secret-4"},
        },
    )
    assert kept.status_code == 200, kept.text
    after = _stored(mcp_plane, server["id"])
    assert after.auth_config["client_secret"] == row.auth_config["client_secret"]
    assert after.auth_config["token_url"] == "https://idp.test/t2"
    assert after.headers["X-Tenant"] == row.headers["X-Tenant"]
    assert decrypter.open(after.headers["X-New"]) == "new-secret-4"
    assert after.stdio_env == row.stdio_env  # not sent: unchanged
    _error(admin.patch(path, json={"headers": {"X-Unknown": "***"}}), 422, "headers")
    # Switching to BEARER needs its own config; NONE drops the secrets.
    _error(admin.patch(path, json={"auth_type": "BEARER"}), 422, "auth_config")
    cleared = admin.patch(path, json={"auth_type": "NONE"})
    assert cleared.json()["auth_config"] == {}
    # The audit log never holds a secret.
    events = admin.get(
        f"/api/organisations/{org}/audit", params={"resource_type": "mcp_servers", "limit": 50}
    )
    assert events.status_code == 200, events.text
    text = events.text
    assert len(events.json()["items"]) >= 3
    for plaintext in ("env-secret-1", "tenant-secret-2", "cs-secret-3", "new-secret-4", "ciphertext"):
        assert plaintext not in text
    assert '"X-Tenant":"***"' in text.replace(" ", "")


def test_stdio_allowlist_is_super_admin_only(mcp_plane: ControlPlaneUnderTest) -> None:
    """The allowlist lists settings and database entries; only a super admin adds or removes one."""
    org = mcp_plane.organisation()
    admin = mcp_plane.caller(Role.ORG_ADMIN, org)
    command = f"odock-extra-{secrets.token_hex(3)}"
    assert admin.get("/api/admin/mcp-stdio-commands").status_code == 403
    assert admin.post("/api/admin/mcp-stdio-commands", json={"command": command}).status_code == 403
    _error(admin.post(f"/api/organisations/{org}/mcp-servers", json={
        "name": "x", "transport": "STDIO", "stdio_command": command}), 422, "stdio_command")  # fmt: skip
    sa = mcp_plane.admin
    added = sa.post("/api/admin/mcp-stdio-commands", json={"command": command, "note": "for tests"})
    assert added.status_code == 201, added.text
    assert added.json()["origin"] == "database"
    assert sa.post("/api/admin/mcp-stdio-commands", json={"command": command}).status_code == 409
    assert sa.post("/api/admin/mcp-stdio-commands", json={"command": ALLOWED}).status_code == 409
    assert sa.post("/api/admin/mcp-stdio-commands", json={"command": "npx -y"}).status_code == 422
    listed = {(e["command"], e["origin"]) for e in sa.get("/api/admin/mcp-stdio-commands").json()["items"]}
    assert {(ALLOWED, "settings"), (command, "database")} <= listed
    server = _create(admin, org, name="x", transport="STDIO", stdio_command=command)
    assert sa.delete(f"/api/admin/mcp-stdio-commands/{added.json()['id']}").status_code == 204
    # Saved servers stay editable; a new server (or a changed command) cannot use the removed entry.
    edit = admin.patch(f"/api/organisations/{org}/mcp-servers/{server['id']}", json={"description": "still"})
    assert edit.status_code == 200, edit.text
    _error(admin.post(f"/api/organisations/{org}/mcp-servers", json={
        "name": "y", "transport": "STDIO", "stdio_command": command}), 422, "stdio_command")  # fmt: skip
    events = sa.get("/api/admin/audit", params={"resource_type": "mcp_stdio_commands", "limit": 50}).json()
    assert {(e["action"], e["resource_id"]) for e in events["items"]} >= {
        ("create", added.json()["id"]),
        ("delete", added.json()["id"]),
    }


def test_key_grants_and_tool_grants(mcp_plane: ControlPlaneUnderTest) -> None:
    """Keys get server grants, optionally limited to tools, from the key or the server; principals follow."""
    org = mcp_plane.organisation()
    admin = mcp_plane.caller(Role.ORG_ADMIN, org)
    one, two = _http(admin, org, slug="one"), _http(admin, org, slug="two")
    key, other = _key(admin, org), _key(admin, org)
    access = f"/api/organisations/{org}/apikeys/{key['id']}/mcp-access"
    assert admin.get(access).json() == {"items": []}
    given = admin.put(
        access, json={"grants": [{"server": "one", "tools": ["read", "read2"]}, {"server": two["id"]}]}
    )
    assert given.status_code == 200, given.text
    items = {g["slug"]: g for g in given.json()["items"]}
    assert (items["one"]["tools"], items["two"]["tools"]) == (["read", "read2"], None)
    assert set(_grants_of(mcp_plane, key["id"])) == {
        McpGrant(one["id"], frozenset({"read", "read2"})),
        McpGrant(two["id"], None),
    }
    # POST adds and replaces the named server's tool grants; PUT replaces everything.
    added = admin.post(access, json={"grants": [{"server": "one"}]})
    assert {g["slug"]: g["tools"] for g in added.json()["items"]} == {"one": None, "two": None}
    replaced = admin.put(access, json={"grants": [{"server": "two", "tools": ["t"]}]})
    assert {g["slug"]: g["tools"] for g in replaced.json()["items"]} == {"two": ["t"]}
    _error(admin.post(access, json={"grants": [{"server": "nope"}]}), 422, "servers")
    assert admin.delete(f"{access}/two").status_code == 204
    assert admin.delete(f"{access}/two").status_code == 404
    assert admin.delete(f"{access}/bad%00slug").status_code in (404, 422)  # never a 500
    assert admin.delete(f"/api/organisations/{org}/mcp-servers/{two['id']}/keys/k%00").status_code == 404
    assert _grants_of(mcp_plane, key["id"]) == ()
    # From the server's side: batch add, list with tool grants, remove.
    keys_path = f"/api/organisations/{org}/mcp-servers/{one['id']}/keys"
    assert admin.post(keys_path, json={"api_key_ids": [key["id"], other["id"]]}).status_code == 204
    admin.post(access, json={"grants": [{"server": "one", "tools": ["x"]}]})
    listed = {k["api_key_id"]: k["tools"] for k in admin.get(keys_path).json()["items"]}
    assert listed == {key["id"]: ["x"], other["id"]: None}
    assert admin.delete(f"{keys_path}/{key['id']}").status_code == 204
    assert [k["api_key_id"] for k in admin.get(keys_path).json()["items"]] == [other["id"]]
    assert _grants_of(mcp_plane, key["id"]) == ()
    # Deleting the server takes its grants with it.
    assert admin.delete(f"/api/organisations/{org}/mcp-servers/{one['id']}").status_code == 204
    assert _grants_of(mcp_plane, other["id"]) == ()


def test_grants_respect_organisation_and_scope(mcp_plane: ControlPlaneUnderTest) -> None:
    """Another organisation's server or key is unknown; a scoped server takes only keys of its scope."""
    org, elsewhere = mcp_plane.organisation(), mcp_plane.organisation()
    admin = mcp_plane.caller(Role.ORG_ADMIN, org)
    theirs = _http(mcp_plane.admin, elsewhere, slug="theirs")
    key = _key(admin, org)
    foreign_key = _key(mcp_plane.admin, elsewhere)
    access = f"/api/organisations/{org}/apikeys/{key['id']}/mcp-access"
    _error(admin.post(access, json={"grants": [{"server": theirs["id"]}]}), 422, "servers")
    mine = _http(admin, org, slug="mine")
    keys_path = f"/api/organisations/{org}/mcp-servers/{mine['id']}/keys"
    _error(admin.post(keys_path, json={"api_key_ids": [foreign_key["id"]]}), 422, "api_key_ids")
    assert admin.get(f"/api/organisations/{elsewhere}/mcp-servers/{theirs['id']}").status_code == 403
    assert admin.get(f"/api/organisations/{org}/mcp-servers/{theirs['id']}").status_code == 404
    team = admin.post(f"/api/organisations/{org}/teams", json={"name": "t"}).json()
    _error(admin.patch(f"/api/organisations/{org}/mcp-servers/{mine['id']}", json={
        "api_key_id": foreign_key["id"]}), 422, "api_key_id")  # fmt: skip
    scoped = _http(admin, org, slug="scoped", team_id=team["id"])
    _error(admin.post(access, json={"grants": [{"server": "scoped"}]}), 422, "servers")
    team_key = _key(admin, org, type="TEAM", team_id=team["id"])
    team_access = f"/api/organisations/{org}/apikeys/{team_key['id']}/mcp-access"
    assert admin.post(team_access, json={"grants": [{"server": scoped["id"]}]}).status_code == 200


def test_roles(mcp_plane: ControlPlaneUnderTest) -> None:
    """Org admins manage servers; managers and users read them; a manager grants servers to team keys."""
    org = mcp_plane.organisation()
    admin = mcp_plane.caller(Role.ORG_ADMIN, org)
    team = admin.post(f"/api/organisations/{org}/teams", json={"name": "t"}).json()
    manager = mcp_plane.caller(Role.MANAGER, org, teams={team["id"]: TeamMemberRole.MANAGER})
    user = mcp_plane.caller(Role.USER, org)
    server = _http(admin, org, slug="shared", auth_type="BEARER", auth_config={"token": TOKEN})
    path = f"/api/organisations/{org}/mcp-servers"
    for caller in (manager, user):
        assert caller.get(f"{path}/{server['id']}").json()["auth_config"] == {"token": "***"}
        assert (
            caller.post(
                path, json={"name": "x", "transport": "SSE", "endpoint_url": "https://x.test/"}
            ).status_code
            == 403
        )
        assert caller.patch(f"{path}/{server['id']}", json={"enabled": False}).status_code == 403
        assert caller.delete(f"{path}/{server['id']}").status_code == 403
    team_key = _key(admin, org, type="TEAM", team_id=team["id"])
    org_key = _key(admin, org)
    grant = {"grants": [{"server": "shared"}]}
    assert (
        manager.post(f"/api/organisations/{org}/apikeys/{team_key['id']}/mcp-access", json=grant).status_code
        == 200
    )
    assert (
        manager.post(f"/api/organisations/{org}/apikeys/{org_key['id']}/mcp-access", json=grant).status_code
        == 403
    )
    assert TOKEN not in admin.get(f"{path}/{server['id']}").text


def _grants_of(cp: ControlPlaneUnderTest, key_id: str) -> tuple[McpGrant, ...]:
    async def load() -> tuple[McpGrant, ...]:
        async with cp.gateway.runtime.sessions() as session:
            return await load_mcp_grants(session, key_id)

    return cp.gateway.run(load())  # type: ignore[no-any-return]
