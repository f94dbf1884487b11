"""The shipped trusted MCP server catalogue: every entry is valid, and broken documents are refused."""

from __future__ import annotations

import importlib.util
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from odock.mcp.catalogue import CatalogueError, parse_catalogue, trusted_catalogue
from odock.mcp.link import AuthType, Transport

STDIO_ENTRY: dict[str, Any] = {
    "slug": "time",
    "name": "Time",
    "description": "the time",
    "category": "utilities",
    "transport": "STDIO",
    "command": "uvx",
    "args": ["mcp-server-time"],
}
REMOTE_ENTRY: dict[str, Any] = {
    "slug": "hf",
    "name": "Hugging Face",
    "description": "the hub",
    "category": "ai",
    "transport": "STREAMABLE_HTTP",
    "endpoint_url": "https://huggingface.co/mcp",
    "auth_type": "BEARER",
}


def _document(*entries: dict[str, Any]) -> bytes:
    return orjson.dumps({"about": "test", "updated": "2026-12-01", "servers": list(entries)})


def test_every_shipped_entry_is_valid() -> None:
    """15-30 entries, unique slugs, known transports and auth types, commands or https URLs."""
    raw = resources.files("odock.mcp").joinpath("trusted_catalogue.json").read_bytes()
    document = orjson.loads(raw)
    catalogue = trusted_catalogue()
    assert 15 <= len(catalogue.servers) <= 30
    assert len(document["servers"]) == len(catalogue.servers)
    slugs = [s.slug for s in catalogue.servers]
    assert len(set(slugs)) == len(slugs)
    for server in catalogue.servers:
        assert server.transport in set(Transport)
        assert server.auth_type in set(AuthType)
        assert server.suggested_pricing.call_nanos_usd >= 0
        if server.transport is Transport.STDIO:
            assert server.command, server.slug
            assert server.endpoint_url is None, server.slug
        else:
            url = urlsplit(server.endpoint_url or "")
            assert (url.scheme, bool(url.hostname)) == ("https", True), server.slug
            assert server.command is None, server.slug
            assert not server.env, server.slug
    transports = {s.transport for s in catalogue.servers}
    assert transports == set(Transport)
    assert any(s.official for s in catalogue.servers)
    hugging_face = catalogue.find("huggingface")
    assert hugging_face is not None
    assert (hugging_face.transport, hugging_face.endpoint_url) == (
        Transport.STREAMABLE_HTTP,
        "https://huggingface.co/mcp",
    )


def test_environment_holds_names_only() -> None:
    """The catalogue never carries a secret value: env entries are variable names, no "=" anywhere."""
    for server in trusted_catalogue().servers:
        for name in server.env:
            assert "=" not in name
            assert name.upper() == name
        assert not any("=" in arg and "key" in arg.lower() for arg in server.args), server.slug


def test_the_python_entry_names_an_importable_module() -> None:
    """``python -m mcp_server_time`` names the module the mcp-server-time package installs."""
    entry = trusted_catalogue().find("time-python")
    assert entry is not None
    assert entry.command == "python"
    assert entry.args[0] == "-m"
    assert importlib.util.find_spec(entry.args[1]) is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"command": None}, "needs a command"),
        ({"command": "uvx mcp-server-time"}, "one word"),
        ({"endpoint_url": "https://x.example/mcp"}, "no endpoint URL"),
        ({"auth_type": "BEARER"}, "environment"),
        ({"transport": "CARRIER_PIGEON"}, "transport"),
        ({"slug": "Not A Slug"}, "slug"),
        ({"env": ["API_KEY=secret"]}, "env"),
        ({"env": ["A", "A"]}, "duplicate"),
        ({"suggested_pricing": {"call_nanos_usd": -1}}, "call_nanos_usd"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_stdio_entries_are_refused(change: dict[str, Any], message: str) -> None:
    """A STDIO entry without a (single-word) command, with a URL, auth or a bad field is refused."""
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(_document({**STDIO_ENTRY, **change}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endpoint_url": "http://huggingface.co/mcp"}, "https"),
        ({"endpoint_url": None}, "https"),
        ({"endpoint_url": "https://user:pw@huggingface.co/mcp"}, "https"),
        ({"command": "npx"}, "no command"),
        ({"auth_type": "KERBEROS"}, "auth_type"),
    ],
)
def test_bad_remote_entries_are_refused(change: dict[str, Any], message: str) -> None:
    """A remote entry needs an https URL without credentials, and no command."""
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(_document({**REMOTE_ENTRY, **change}))


def test_duplicate_slugs_and_bad_json_are_refused() -> None:
    """Two entries with one slug, or a document that is not JSON, fail loudly."""
    with pytest.raises(CatalogueError, match="listed twice"):
        parse_catalogue(_document(STDIO_ENTRY, {**REMOTE_ENTRY, "slug": "time"}))
    with pytest.raises(CatalogueError):
        parse_catalogue(b"{not json")
    assert len(parse_catalogue(_document(STDIO_ENTRY, REMOTE_ENTRY)).servers) == 2


def test_filters() -> None:
    """q matches name, slug, description or tag; transport and category narrow exactly."""
    catalogue = trusted_catalogue()
    time = catalogue.find("time")
    assert time is not None
    assert time.matches("TIMEZONE", None, None)
    assert time.matches(None, Transport.STDIO, "utilities")
    assert not time.matches(None, Transport.SSE, None)
    assert not time.matches(None, None, "search")
    assert not time.matches("no-such-text", None, None)
