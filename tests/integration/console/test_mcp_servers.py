"""The MCP server pages in a real browser: list and filters, add by hand, the server's page, key access.

Every change is made through the page (the REST API from the browser) and checked through the
API; secrets typed into a form never come back to any page, only ``***``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from odock.tenancy.tables import Role
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.console_keys import accept_confirm, fits_phone, unlabelled_fields
from tests.support.identity import Account, password_account
from tests.support.usage_records import seed, usage_row

HTTP = {"transport": "STREAMABLE_HTTP", "endpoint_url": "https://mcp.example.test/mcp"}


def api_server(console: ControlPlaneUnderTest, org: str, name: str, **fields: object) -> dict[str, object]:
    """An MCP server made over the API (as a super admin)."""
    answer = console.admin.post(
        f"/api/organisations/{org}/mcp-servers", json={"name": name, **HTTP, **fields}
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def api_key(console: ControlPlaneUnderTest, org: str, name: str) -> str:
    """An organisation API key's id."""
    answer = console.admin.post(
        f"/api/organisations/{org}/apikeys", json={"name": name, "type": "ORGANISATION"}
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_list_search_and_filters(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The list shows each server's columns; search, transport and status filters narrow it."""
    org, admin = org_admin
    sign_in(admin).open(f"/o/{org}/mcp-servers")
    page.wait_text("No MCP server yet", "[data-testid=empty]")
    api_server(console, org, "Docs search", auth_type="BEARER", auth_config={"token": "t0ken"})
    api_server(console, org, "Files", transport="SSE", endpoint_url="https://files.test/sse", enabled=False)
    page.open(f"/o/{org}/mcp-servers")
    table = page.find("[data-testid=mcp-servers]").text
    assert "Docs search" in table
    assert "docs-search" in table
    assert "BEARER" in table
    assert "Files" in table
    assert "Disabled" in table
    assert "t0ken" not in page.driver.page_source
    assert "MCP servers" in page.find("nav").text

    page.fill({"q": "docs"}, "form[role=search]").click_text("Filter", "button")
    page.wait_path(lambda p: "q=docs" in p)
    table = page.find("[data-testid=mcp-servers]").text
    assert "Docs search" in table
    assert "Files" not in table
    page.fill({"q": "", "transport": "SSE"}, "form[role=search]").click_text("Filter", "button")
    page.wait_path(lambda p: "transport=SSE" in p)
    table = page.find("[data-testid=mcp-servers]").text
    assert "Files" in table
    assert "Docs search" not in table
    page.fill({"transport": "", "enabled": "true"}, "form[role=search]").click_text("Filter", "button")
    page.wait_path(lambda p: "enabled=true" in p)
    table = page.find("[data-testid=mcp-servers]").text
    assert "Docs search" in table
    assert "Files" not in table
    page.fill({"enabled": "", "q": "nothing-like-it"}, "form[role=search]").click_text("Filter", "button")
    page.wait_text("No MCP server matches these filters", "[data-testid=empty]")


def test_list_pages_with_a_cursor(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A long list is paged by the API's keyset cursor, keeping the filters."""
    org, admin = org_admin
    for i in range(3):
        api_server(console, org, f"paged-{i}")
    sign_in(admin).open(f"/o/{org}/mcp-servers?q=paged&limit=2")
    first = page.find("[data-testid=mcp-servers]").text
    page.click_text("Next page →", "a")
    page.wait_path(lambda p: "cursor=" in p)
    second = page.find("[data-testid=mcp-servers]").text
    assert "q=paged" in page.path
    names = {n for n in ("paged-0", "paged-1", "paged-2") if n in first} | {
        n for n in ("paged-0", "paged-1", "paged-2") if n in second
    }
    assert names == {"paged-0", "paged-1", "paged-2"}
    assert not any(n in second for n in ("paged-0", "paged-1", "paged-2") if n in first)


def test_manual_add_refuses_an_unlisted_command_then_adds_a_remote_server(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """STDIO off the allowlist shows the field error; Streamable HTTP is created and shown masked."""
    org, admin = org_admin
    sign_in(admin).open(f"/o/{org}/mcp-servers")
    page.click_text("Add manual MCP server", "a")
    page.wait_text("Add manual MCP server", "h1")
    assert unlabelled_fields(page) == []
    form = "#mcp-server-form"
    page.fill({"name": "Search tools", "description": "Internal search"}, form)
    page.click(f'{form} input[name="transport"][value="STDIO"]')
    page.fill({"stdio_command": "not-on-the-list", "stdio_args": "--fast"}, form)
    page.submit(form)
    assert "not on the STDIO allowlist" in page.error_for("stdio_command")

    page.click(f'{form} input[name="transport"][value="STREAMABLE_HTTP"]')
    page.fill(
        {"endpoint_url": "https://search.example.test/mcp", "headers_lines": "X-Team=blue-header-secret"},
        form,
    )
    page.fill({"auth_type": "BEARER"}, form)
    page.fill({"auth_config.token": "bearer-token-secret"}, form)
    page.fill({"allowed_tools": "search\nfetch", "blocked_tools": "delete"}, form)
    page.fill({"semantic_filter.blocked_keywords": "password", "metadata": '{"owner": "search-team"}'}, form)
    page.fill({"pricing.call_usd_per_1m": "2.5", "pricing.output_usd_per_1m_bytes": "0.001"}, form)
    page.fill({"policies.ratelimit.requests.per_minute": "60"}, form)
    page.submit(form)
    page.wait_path(lambda p: p.startswith(f"/o/{org}/mcp-servers/") and not p.endswith("/new"))
    page.wait_text("Search tools", "h1")
    server_id = page.path.rsplit("/", 1)[1]

    source = page.driver.page_source
    assert "bearer-token-secret" not in source
    assert "blue-header-secret" not in source
    security = page.find("[data-testid=security]").text
    assert "BEARER" in security
    assert "***" in security
    assert "X-Team = ***" in page.find("[data-testid=transport]").text
    governance = page.find("[data-testid=governance]").text
    assert "search" in governance
    assert "delete" in governance
    assert "password" in governance
    assert page.find("[data-price=call_usd_per_1m]").text == "$2.50"
    assert page.find("[data-price=output_usd_per_1m_bytes]").text == "$0.001"
    assert "per minute" in page.find("[data-testid=policies]").text

    stored = console.admin.get(f"/api/organisations/{org}/mcp-servers/{server_id}").json()
    assert stored["slug"] == "search-tools"
    assert stored["auth_config"] == {"token": "***"}
    assert stored["headers"] == {"X-Team": "***"}
    assert stored["pricing"] == {
        "call_nanos_usd": 2500,
        "input_byte_nanos_usd": 0,
        "output_byte_nanos_usd": 1,
    }
    assert stored["allowed_tools"] == ["search", "fetch"]
    assert stored["semantic_filter"] == {"blocked_keywords": ["password"]}
    assert stored["metadata"] == {"owner": "search-team"}
    assert stored["policies"]["ratelimit"]["requests"]["per_minute"] == 60
    assert stored["stdio_command"] is None


def test_edit_keeps_secrets_switch_and_delete(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The edit form keeps a stored secret it shows as ***; the switch disables; delete removes it."""
    org, admin = org_admin
    server = api_server(console, org, "Edited", auth_type="BEARER", auth_config={"token": "kept-token-value"})
    sign_in(admin).open(f"/o/{org}/mcp-servers/{server['id']}")
    page.click_text("Edit", "a")
    page.wait_text("Edit Edited", "h1")
    assert unlabelled_fields(page) == []
    assert "kept-token-value" not in page.driver.page_source
    assert page.field("auth_config.token").get_attribute("value") == "***"
    page.fill({"description": "now described", "pricing.call_usd_per_1m": "1"}, "#mcp-server-form")
    page.submit("#mcp-server-form")
    page.wait_path(lambda p: p.endswith(f"/mcp-servers/{server['id']}"))
    page.wait_text("now described", "main")

    async def token() -> object:
        from odock.mcp.tables import McpServer

        async with console.gateway.runtime.sessions() as session:
            row = await session.get(McpServer, server["id"])
            return dict(row.auth_config)

    sealed = console.gateway.run(token())
    assert sealed != {"token": "***"}  # the stored (encrypted) value, not the mask
    assert sealed == console.gateway.run(token())
    stored = console.admin.get(f"/api/organisations/{org}/mcp-servers/{server['id']}").json()
    assert stored["pricing"]["call_nanos_usd"] == 1000
    assert stored["description"] == "now described"

    page.click_text("Disable", "button")
    page.wait_text("Disabled", "[data-testid=status]")
    assert (
        console.admin.get(f"/api/organisations/{org}/mcp-servers/{server['id']}").json()["enabled"] is False
    )
    page.click_text("Delete MCP server", "button")
    accept_confirm(page)
    page.wait_path(lambda p: p == f"/o/{org}/mcp-servers")
    assert console.admin.get(f"/api/organisations/{org}/mcp-servers/{server['id']}").status_code == 404


def test_key_access_add_tools_and_remove(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """Keys are added in a batch, limited to some tools, and removed, from the server's page."""
    org, admin = org_admin
    server = api_server(console, org, "Granted")
    first, second = api_key(console, org, "first-key"), api_key(console, org, "second-key")
    sign_in(admin).open(f"/o/{org}/mcp-servers/{server['id']}")
    page.wait_text("No API key may use this server yet", "main")
    page.click(f'#add-keys-form input[value="{first}"]')
    page.click(f'#add-keys-form input[value="{second}"]')
    page.submit("#add-keys-form")
    page.wait_text("second-key", "[data-testid=access]")
    assert unlabelled_fields(page) == []
    keys_url = f"/api/organisations/{org}/mcp-servers/{server['id']}/keys"
    assert {a["api_key_id"] for a in console.admin.get(keys_url).json()["items"]} == {first, second}

    row = f'[data-testid=access] tr[data-key="{first}"]'
    page.fill({"tools": "echo, add"}, row)
    page.submit(f"{row} form")
    page.until(
        lambda _: (
            {a["api_key_id"]: a["tools"] for a in console.admin.get(keys_url).json()["items"]}[first]
            == ["add", "echo"]
        ),
        "the tool grant stored",
    )
    page.until(lambda _: "echo" in page.field("tools", row).get_attribute("value"), "the tools shown")

    page.click(f'[data-testid=access] tr[data-key="{second}"] button[data-api-button]')
    accept_confirm(page)
    page.until(lambda _: len(console.admin.get(keys_url).json()["items"]) == 1, "the key removed")
    page.until(lambda _: not page.all(f'[data-testid=access] tr[data-key="{second}"]'), "the row gone")


def test_mcp_usage_card_lists_the_servers_records(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The MCP Usage card lists the server's own records: method, tool, status, bytes and cost."""
    org, admin = org_admin
    server = api_server(console, org, "Metered")
    other = api_server(console, org, "Unrelated")
    key = api_key(console, org, "metered-key")
    console.admin.post(
        f"/api/organisations/{org}/mcp-servers/{server['id']}/keys", json={"api_key_ids": [key]}
    )
    mcp = {"provider": "mcp", "model": None, "model_id": None, "provider_id": None, "endpoint": "/v1/mcp"}
    metered = usage_row(org, api_key_id=key, mcp_server_id=server["id"], mcp_server="metered", **mcp)
    metered.update(mcp_method="tools/call", mcp_tool="lookup", mcp_tool_calls=1, bytes_in=321, bytes_out=4567)
    metered.update(total_cost_nanos_usd=2_500_000, timestamp=datetime(2026, 3, 1, 12, tzinfo=UTC))
    unrelated = usage_row(org, api_key_id=key, mcp_server_id=other["id"], mcp_server="unrelated", **mcp)
    unrelated.update(mcp_method="tools/call", mcp_tool="not-this-one", mcp_tool_calls=1)
    seed(console.gateway, [metered, unrelated])
    sign_in(admin).open(f"/o/{org}/mcp-servers/{server['id']}")
    usage = page.find("[data-testid=mcp-usage]").text
    assert "tools/call" in usage
    assert "lookup" in usage
    assert "metered-key" in usage
    assert "321 / 4,567" in usage
    assert "$0.0025" in usage
    assert "not-this-one" not in usage
    fits_phone(page)


def test_key_page_mcp_access_grant_and_revoke(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The key's MCP access card grants a server with tools and revokes it."""
    org, admin = org_admin
    server = api_server(console, org, "Key side")
    key = api_key(console, org, "mcp-key")
    sign_in(admin).open(f"/o/{org}/keys/{key}")
    card = "[data-testid=key-mcp-access]"
    page.wait_text("This key may use no MCP server yet", card)
    assert unlabelled_fields(page) == []
    page.fill({"server": server["id"], "tools": "echo"}, "#mcp-grant-form").submit("#mcp-grant-form")
    page.wait_text("key-side", "[data-testid=mcp-grants]")
    access = f"/api/organisations/{org}/apikeys/{key}/mcp-access"
    assert [(g["slug"], g["tools"]) for g in console.admin.get(access).json()["items"]] == [
        ("key-side", ["echo"])
    ]
    assert "echo" in page.find("[data-testid=mcp-grants]").text
    page.click(f"{card} [data-testid=mcp-grants] button")
    accept_confirm(page)
    page.wait_text("This key may use no MCP server yet", card)
    assert console.admin.get(access).json()["items"] == []


@pytest.mark.parametrize("role", [Role.USER, Role.MANAGER])
def test_read_only_roles_see_servers_but_no_admin_action(
    role: Role, page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A USER or MANAGER may read the list and a server (masked), but no add, edit, switch or delete."""
    org, _admin = org_admin
    server = api_server(
        console, org, "Visible", auth_type="BEARER", auth_config={"token": "hidden-from-users"}
    )
    member = password_account(console, role, org)
    sign_in(member).open(f"/o/{org}/mcp-servers")
    assert "Visible" in page.find("[data-testid=mcp-servers]").text
    assert not page.all("a[href$='/mcp-servers/new']")
    page.open(f"/o/{org}/mcp-servers/{server['id']}")
    page.wait_text("Visible", "h1")
    assert "hidden-from-users" not in page.driver.page_source
    assert not page.all("a[href$='/edit']")
    assert not page.all("#add-keys-form")
    assert "Delete MCP server" not in page.body_text()
    for path in (f"/o/{org}/mcp-servers/new", f"/o/{org}/mcp-servers/{server['id']}/edit"):
        page.open(path)
        assert page.find("[data-testid=error-message]").text
        assert not page.all("#mcp-server-form")


def test_add_from_the_catalogue(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """Trusted entries are found by filters, configured with their secret, and created together."""
    org, admin = org_admin
    sign_in(admin).open(f"/o/{org}/mcp-servers")
    page.click_text("Add from catalogue", "a")
    page.wait_text("Add from catalogue", "h1")
    page.fill({"category": "developer-tools", "transport": "STREAMABLE_HTTP"}, "form[role=search]")
    page.click_text("Filter", "button")
    page.wait_path(lambda p: "category=developer-tools" in p)
    shown = page.find("[data-testid=catalogue]").text
    assert "GitHub" in shown
    assert "Git\n" not in shown  # the STDIO git server is filtered out
    page.fill({"category": "", "transport": "", "q": "deepwiki"}, "form[role=search]")
    page.click_text("Filter", "button")
    page.wait_path(lambda p: "q=deepwiki" in p)
    assert [e.get_attribute("data-entry") for e in page.all("[data-entry]")] == ["deepwiki"]

    page.open(f"/o/{org}/mcp-servers/catalogue?pick=github&pick=deepwiki&pick=time")
    assert unlabelled_fields(page) == []
    page.fill({"auth_config.token": "ghp-catalogue-secret"}, 'form[data-entry="github"]')
    page.click("#create-picked")
    page.wait_text("Created", 'form[data-entry="github"] [data-result]')
    page.wait_text("Created", 'form[data-entry="deepwiki"] [data-result]')
    page.wait_text("not on the STDIO allowlist", 'form[data-entry="time"]')
    listed = console.admin.get(f"/api/organisations/{org}/mcp-servers").json()["items"]
    by_slug = {s["slug"]: s for s in listed}
    assert set(by_slug) == {"github", "deepwiki"}
    assert by_slug["github"]["auth_type"] == "BEARER"
    assert by_slug["github"]["auth_config"] == {"token": "***"}
    assert by_slug["github"]["metadata"] == {"catalogue": "github"}
    assert by_slug["deepwiki"]["endpoint_url"].startswith("https://")

    page.click("#create-picked")  # only the refused one is sent again, and refused again
    page.wait_text("not on the STDIO allowlist", 'form[data-entry="time"]')
    assert len(console.admin.get(f"/api/organisations/{org}/mcp-servers").json()["items"]) == 2
    page.click('form[data-entry="github"] [data-result] a')
    page.wait_text("GitHub", "h1")
    assert "ghp-catalogue-secret" not in page.driver.page_source
