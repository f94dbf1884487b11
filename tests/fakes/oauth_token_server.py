"""A fake OAuth2 token endpoint (client credentials grant) that issues expiring tokens and counts them.

``POST /token`` with the form ``grant_type=client_credentials``, ``client_id``, ``client_secret``
(and optional ``scope``, ``audience``) answers ``{"access_token", "token_type": "Bearer",
"expires_in"}``; wrong credentials answer 401. ``expires_in`` is what the test sets
(``expires_in``, seconds). :meth:`OAuthTokenServer.valid` tells whether an ``Authorization``
header value carries a token it issued that has not expired (what an MCP test server behind
this OAuth server checks). ``failing = True`` makes the endpoint answer 503.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from tests.fakes.threaded import ThreadedFake


class OAuthTokenServer(ThreadedFake):
    """The token endpoint: ``base_url + "/token"``."""

    vendor = "OAuth"

    def __init__(
        self, *, client_id: str = "odock", client_secret: str = "s3cret", expires_in: float = 3600
    ) -> None:
        super().__init__(api_key=None)
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.failing = False
        self._tokens: dict[str, float] = {}  # token → expiry (monotonic)

    @property
    def token_url(self) -> str:
        """Where the client-credentials grant is POSTed."""
        return f"{self.base_url}/token"

    @property
    def issued(self) -> int:
        """How many tokens were issued so far."""
        with self._lock:
            return len(self._tokens)

    def valid(self, authorization: str) -> bool:
        """True when ``authorization`` is ``Bearer <a token issued here, not expired>``."""
        if not authorization.startswith("Bearer "):
            return False
        with self._lock:
            expiry = self._tokens.get(authorization[len("Bearer ") :])
        return expiry is not None and time.monotonic() < expiry

    def expire_all(self) -> None:
        """Make every token issued so far invalid (as if it had expired)."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)

    async def _token(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.failing:
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.expires_in
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )


__all__ = ["OAuthTokenServer"]
