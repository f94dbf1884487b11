"""Upstream credentials: the headers a link sends to an MCP server (never the caller's own).

NONE sends nothing, BEARER ``Authorization: Bearer <token>``, BASIC ``Authorization: Basic …``;
OAUTH2 runs the client-credentials grant against ``token_url`` and caches the token per
(server id, version) until shortly before it expires (:data:`REFRESH_MARGIN_SECONDS` or 10 % of its
lifetime, whichever is smaller); concurrent callers wait on one fetch. A token endpoint that
fails raises :class:`~odock.errors.McpAuthError` naming the server.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson

from odock.errors import McpAuthError
from odock.mcp.link import AuthType, UpstreamTarget

REFRESH_MARGIN_SECONDS = 30.0
DEFAULT_EXPIRES_IN = 300.0  # a token endpoint that names no lifetime


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float  # on the auth's clock


class UpstreamAuth:
    """Auth headers for upstream targets; one per gateway, shared by the HTTP links."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._fetches: dict[tuple[str, str], asyncio.Future[_Token]] = {}

    async def headers(self, target: UpstreamTarget, http: aiohttp.ClientSession) -> dict[str, str]:
        """``target.headers`` plus the target's credentials."""
        headers = dict(target.headers)
        config = target.auth_config
        if target.auth_type is AuthType.BEARER:
            headers["Authorization"] = f"Bearer {config.get('token', '')}"
        elif target.auth_type is AuthType.BASIC:
            pair = f"{config.get('username', '')}:{config.get('password', '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif target.auth_type is AuthType.OAUTH2:
            headers["Authorization"] = f"Bearer {await self.oauth_token(target, http)}"
        return headers

    def forget(self, target: UpstreamTarget) -> None:
        """Drop the cached token (the upstream refused it): the next call fetches a new one."""
        self._tokens.pop((target.server_id, target.version), None)

    async def oauth_token(self, target: UpstreamTarget, http: aiohttp.ClientSession) -> str:
        """A valid access token for ``target`` (cached, or fetched once for all waiting callers)."""
        key = (target.server_id, target.version)
        token = self._tokens.get(key)
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        fetch = self._fetches.get(key)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch(target, http))
            self._fetches[key] = fetch
            fetch.add_done_callback(lambda _: self._fetches.pop(key, None))
        token = await asyncio.shield(fetch)
        self._tokens[key] = token
        return token.value

    async def _fetch(self, target: UpstreamTarget, http: aiohttp.ClientSession) -> _Token:
        config = target.auth_config
        token_url = config.get("token_url")
        if not token_url:
            raise McpAuthError(f"MCP server {target.slug}: OAuth2 auth has no token_url")
        form = {
            "grant_type": "client_credentials",
            "client_id": config.get("client_id", ""),
            "client_secret": config.get("client_secret", ""),
        }
        for optional in ("scope", "audience"):
            if config.get(optional):
                form[optional] = config[optional]
        started = self._clock()
        timeout = aiohttp.ClientTimeout(total=target.timeout_seconds)
        try:
            async with http.post(token_url, data=form, timeout=timeout) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise McpAuthError(
                f"MCP server {target.slug}: the OAuth2 token endpoint could not be reached "
                f"({type(exc).__name__})"
            ) from exc
        if status != 200:
            raise McpAuthError(f"MCP server {target.slug}: the OAuth2 token endpoint answered HTTP {status}")
        try:
            body = orjson.loads(raw)
            value = str(body["access_token"])
            lifetime = body.get("expires_in")
            expires_in = DEFAULT_EXPIRES_IN if lifetime is None else float(lifetime)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise McpAuthError(
                f"MCP server {target.slug}: the OAuth2 token endpoint sent no usable access_token"
            ) from exc
        margin = min(REFRESH_MARGIN_SECONDS, expires_in * 0.1)
        return _Token(value, started + expires_in - margin)
