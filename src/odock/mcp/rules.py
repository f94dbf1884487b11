"""The rules of an MCP server's configuration, checked on the whole row before anything is written.

Shared by create and update (an update is checked as the row it would leave), so the API, the CLI
and the declarative file refuse the same things with the same 422 naming the field::

    slug            lowercase letters, digits and single hyphens, at most 100 (unique per org: 409)
    transport       STREAMABLE_HTTP / SSE need endpoint_url (http or https);
                    STDIO needs stdio_command, which must be on the allowlist
    auth_config     the shape of auth_type (odock.mcp.secrets.AUTH_SHAPES)
    tools           allowed_tools / blocked_tools: lists of tool names
    semantic_filter {"blocked_keywords": [...]}
    pricing         integer nanos-USD ≥ 0 per call and per byte in and out, or USD per million
                    (checked by odock.mcp.service.check_pricing, which uses the shared USD rules)
    policies        the policy envelope (odock.rules.validate_policies)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from odock.errors import UnprocessableEntity
from odock.mcp.link import AuthType, Transport

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG = 100
MAX_TOOL = 200
MAX_LIST = 1000

PRICES = ("call_nanos_usd", "input_byte_nanos_usd", "output_byte_nanos_usd")
# The API's USD-per-million form (the console's "USD per 1M calls / bytes"): 1 USD per 1M = 1,000 nanos each.
PRICES_PER_MILLION = {
    "call_usd_per_1m": "call_nanos_usd",
    "input_usd_per_1m_bytes": "input_byte_nanos_usd",
    "output_usd_per_1m_bytes": "output_byte_nanos_usd",
}


def slug_of(name: str) -> str:
    """A slug made from a name (``My Files!`` → ``my-files``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:MAX_SLUG].strip("-")
    return slug or "mcp"


def check_slug(slug: object) -> str:
    """A valid slug, or 422."""
    if not isinstance(slug, str) or len(slug) > MAX_SLUG or not SLUG.fullmatch(slug):
        raise UnprocessableEntity(
            "slug must be lowercase letters, digits and single hyphens (at most 100)", param="slug"
        )
    return slug


def transport_of(value: object) -> Transport:
    """The transport named, or 422 (spec §10.2: ``invalid_transport``)."""
    try:
        return Transport(str(value))
    except ValueError:
        raise UnprocessableEntity(
            f"transport must be one of {', '.join(t.value for t in Transport)} (invalid_transport)",
            param="transport",
        ) from None


def auth_type_of(value: object) -> AuthType:
    """The auth type named, or 422."""
    try:
        return AuthType(str(value))
    except ValueError:
        raise UnprocessableEntity(
            f"auth_type must be one of {', '.join(a.value for a in AuthType)}", param="auth_type"
        ) from None


def check_endpoint(transport: Transport, url: object) -> None:
    """An HTTP transport needs an http(s) endpoint (spec §10.2: ``mcp_missing_endpoint``)."""
    if transport is Transport.STDIO and url is None:
        return
    if url is None or url == "":
        raise UnprocessableEntity(
            f"a {transport.value} server needs its endpoint_url (mcp_missing_endpoint)", param="endpoint_url"
        )
    if not isinstance(url, str) or len(url) > 2000:
        raise UnprocessableEntity("endpoint_url must be an http(s) URL", param="endpoint_url")
    parts = urlsplit(url)
    printable = all(c.isprintable() and not c.isspace() for c in url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not printable:
        raise UnprocessableEntity("endpoint_url must be an http(s) URL", param="endpoint_url")


def check_command(transport: Transport, command: object, allowed: Collection[str]) -> None:
    """A STDIO server needs a command on the allowlist (spec §10.2: ``mcp_missing_stdio_command``)."""
    if transport is not Transport.STDIO:
        if command is not None and not isinstance(command, str):
            raise UnprocessableEntity("stdio_command must be a string", param="stdio_command")
        return
    if not command:
        raise UnprocessableEntity(
            "a STDIO server needs its stdio_command (mcp_missing_stdio_command)", param="stdio_command"
        )
    if not isinstance(command, str) or len(command) > 500 or "\x00" in command:
        raise UnprocessableEntity("stdio_command must be an executable name or path", param="stdio_command")
    if command not in allowed:
        raise UnprocessableEntity(
            f"stdio_command '{command}' is not on the STDIO allowlist: "
            "a super admin must add it (mcp_stdio_commands or ODOCK_MCP_STDIO_ALLOWED_COMMANDS)",
            param="stdio_command",
        )


def check_args(args: object) -> list[str]:
    """``stdio_args``: a list of strings."""
    if not isinstance(args, list) or len(args) > MAX_LIST:
        raise UnprocessableEntity("stdio_args must be a list of strings", param="stdio_args")
    for arg in args:
        if not isinstance(arg, str) or "\x00" in arg:
            raise UnprocessableEntity("stdio_args must be a list of strings", param="stdio_args")
    return list(args)


def check_object(value: object, param: str) -> Mapping[str, Any]:
    """A JSON object (``headers``, ``stdio_env``, ``auth_config``, ``metadata``)."""
    if not isinstance(value, Mapping):
        raise UnprocessableEntity(f"{param} must be an object", param=param)
    return value


def check_tools(tools: object, param: str) -> list[str]:
    """A list of distinct tool names."""
    if not isinstance(tools, list) or len(tools) > MAX_LIST:
        raise UnprocessableEntity(f"{param} must be a list of tool names", param=param)
    for tool in tools:
        if not isinstance(tool, str) or not tool or len(tool) > MAX_TOOL or "\x00" in tool:
            raise UnprocessableEntity(f"{param} must be a list of tool names (1-200 characters)", param=param)
    return list(dict.fromkeys(tools))


def check_semantic_filter(value: object) -> dict[str, Any]:
    """``{"blocked_keywords": [...]}`` (``blockedKeywords`` accepted), or empty."""
    raw = check_object(value, "semantic_filter")
    if not raw:
        return {}
    unknown = set(raw) - {"blocked_keywords", "blockedKeywords"}
    if unknown:
        raise UnprocessableEntity(
            f"semantic_filter has unknown fields: {', '.join(sorted(unknown))}", param="semantic_filter"
        )
    keywords = raw.get("blocked_keywords", raw.get("blockedKeywords", []))
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise UnprocessableEntity(
            "semantic_filter.blocked_keywords must be a list of non-empty strings", param="semantic_filter"
        )
    return {"blocked_keywords": list(dict.fromkeys(keywords))}
