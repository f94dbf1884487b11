"""A fake OpenID Connect provider and a fake GitHub, served over real HTTP for sign-in tests.

OpenID Connect: ``GET /.well-known/openid-configuration``, ``GET /authorize`` (approves at once
as :attr:`FakeIdentityProvider.user` and redirects back with a code), ``POST /token`` (checks the
client secret and the PKCE verifier; issues an RS256 ID token carrying the nonce), ``GET /jwks``,
``GET /userinfo``. GitHub (under ``/github``): ``GET /login/oauth/authorize``,
``POST /login/oauth/access_token``, ``GET /api/user``, ``GET /api/user/emails``.

``tamper`` makes the next ID tokens wrong in one way (``nonce``, ``audience``, ``issuer``,
``expired``, ``signature``, ``unknown_kid``) so tests can prove the gateway rejects them.
:meth:`FakeIdentityProvider.rotate_key` replaces the signing key (a new ``kid``, the only one
published), and ``jwks_fetches`` counts the requests for ``/jwks``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.server import ThreadedServer

CLIENT_ID = "odock-test-client"
CLIENT_SECRET = "fake-client-secret"
GITHUB_CLIENT_ID = "odock-github-client"
GITHUB_CLIENT_SECRET = "fake-github-secret"


@dataclass
class FakeUser:
    """Who the fake provider signs in."""

    subject: str
    email: str
    name: str = "Test Person"
    email_verified: bool = True


@dataclass
class _Grant:
    redirect_uri: str
    challenge: str | None
    nonce: str | None
    user: FakeUser


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class FakeIdentityProvider:
    """The fake provider's state: keys, the user to sign in, issued codes and tokens."""

    # Unique per fake: the production test database is shared by the whole run.
    user: FakeUser = field(
        default_factory=lambda: FakeUser(
            f"oidc-{secrets.token_hex(4)}", f"person-{secrets.token_hex(4)}@example.test"
        )
    )
    github_user: FakeUser = field(
        default_factory=lambda: FakeUser(
            str(secrets.randbelow(10**9)), f"octo-{secrets.token_hex(4)}@example.test", "Octo Cat"
        )
    )
    tamper: str | None = None
    base_url: str = ""
    jwks_fetches: int = 0
    _key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "fake-1"}))
    _codes: dict[str, _Grant] = field(default_factory=dict)
    _access: dict[str, FakeUser] = field(default_factory=dict)

    @property
    def discovery_url(self) -> str:
        """The OpenID Connect discovery document."""
        return f"{self.base_url}/.well-known/openid-configuration"

    def settings(self) -> dict[str, Any]:
        """Odock settings that point OpenID Connect and GitHub sign-in at this fake."""
        return {
            "oidc_discovery_url": self.discovery_url,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_display_name": "Fake IdP",
            "github_client_id": GITHUB_CLIENT_ID,
            "github_client_secret": GITHUB_CLIENT_SECRET,
            "github_authorize_url": f"{self.base_url}/github/login/oauth/authorize",
            "github_token_url": f"{self.base_url}/github/login/oauth/access_token",
            "github_api_url": f"{self.base_url}/github/api",
        }

    # --- OpenID Connect -------------------------------------------------------------------------
    async def discovery(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.base_url,
                "authorization_endpoint": f"{self.base_url}/authorize",
                "token_endpoint": f"{self.base_url}/token",
                "jwks_uri": f"{self.base_url}/jwks",
                "userinfo_endpoint": f"{self.base_url}/userinfo",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    def _authorize(self, request: Request, client_id: str, user: FakeUser) -> Response:
        query = request.query_params
        if query.get("client_id") != client_id or query.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self._codes[code] = _Grant(
            query["redirect_uri"], query.get("code_challenge"), query.get("nonce"), user
        )
        back = {"code": code, "state": query.get("state", "")}
        return RedirectResponse(f"{query['redirect_uri']}?{urlencode(back)}", status_code=302)

    async def authorize(self, request: Request) -> Response:
        return self._authorize(request, CLIENT_ID, self.user)

    async def _redeem(self, request: Request) -> tuple[_Grant | None, dict[str, Any]]:
        form = dict(await request.form())
        grant = self._codes.pop(str(form.get("code", "")), None)
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            return None, form
        if grant.challenge is not None and _s256(str(form.get("code_verifier", ""))) != grant.challenge:
            return None, form
        return grant, form

    async def token(self, request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant, _form = await self._redeem(request)
        if grant is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access = secrets.token_urlsafe(16)
        self._access[access] = grant.user
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "id_token": self._id_token(grant),
                "expires_in": 300,
            }
        )

    def _id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.base_url,
            "sub": grant.user.subject,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "email": grant.user.email,
            "email_verified": grant.user.email_verified,
            "name": grant.user.name,
        }
        key = self._key
        if self.tamper == "nonce":
            claims["nonce"] = "not-the-nonce"
        elif self.tamper == "audience":
            claims["aud"] = "another-client"
        elif self.tamper == "issuer":
            claims["iss"] = "https://evil.example"
        elif self.tamper == "expired":
            claims["iat"], claims["exp"] = now - 3600, now - 1800
        elif self.tamper == "signature":
            key = RSAKey.generate_key(2048, parameters={"kid": key.kid})
        elif self.tamper == "unknown_kid":
            key = RSAKey.generate_key(2048, parameters={"kid": f"rogue-{secrets.token_hex(4)}"})
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    def rotate_key(self) -> str:
        """Sign with a new key under a new ``kid`` (the old one is no longer published); the new kid."""
        self._key = RSAKey.generate_key(2048, parameters={"kid": f"fake-{secrets.token_hex(4)}"})
        return str(self._key.kid)

    async def jwks(self, _request: Request) -> Response:
        self.jwks_fetches += 1
        return JSONResponse({"keys": [self._key.as_dict(private=False)]})

    def _bearer_user(self, request: Request) -> FakeUser | None:
        header = request.headers.get("authorization", "")
        return self._access.get(header.removeprefix("Bearer ").removeprefix("token "))

    async def userinfo(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"sub": user.subject, "email": user.email, "name": user.name})

    # --- GitHub ---------------------------------------------------------------------------------
    async def github_authorize(self, request: Request) -> Response:
        return self._authorize(request, GITHUB_CLIENT_ID, self.github_user)

    async def github_token(self, request: Request) -> Response:
        grant, form = await self._redeem(request)
        if form.get("client_id") != GITHUB_CLIENT_ID or form.get("client_secret") != GITHUB_CLIENT_SECRET:
            return JSONResponse({"error": "incorrect_client_credentials"})
        if grant is None:
            return JSONResponse({"error": "bad_verification_code"})  # GitHub answers 200 with an error
        access = secrets.token_urlsafe(16)
        self._access[access] = grant.user
        return JSONResponse({"access_token": access, "token_type": "bearer", "scope": "read:user,user:email"})

    async def github_user_profile(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"id": int(user.subject), "login": "octocat", "name": user.name})

    async def github_emails(self, request: Request) -> Response:
        user = self._bearer_user(request)
        if user is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse(
            [
                {"email": "old@example.test", "primary": False, "verified": True},
                {"email": user.email, "primary": True, "verified": user.email_verified},
            ]
        )

    def app(self) -> Starlette:
        """The ASGI application serving both fakes."""
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
                Route("/userinfo", self.userinfo),
                Route("/github/login/oauth/authorize", self.github_authorize),
                Route("/github/login/oauth/access_token", self.github_token, methods=["POST"]),
                Route("/github/api/user", self.github_user_profile),
                Route("/github/api/user/emails", self.github_emails),
            ]
        )


@contextmanager
def running_fake_identity_provider() -> Iterator[FakeIdentityProvider]:
    """A :class:`FakeIdentityProvider` served on a free local port, stopped on exit."""
    fake = FakeIdentityProvider()
    server = ThreadedServer(fake.app())
    fake.base_url = server.base_url
    server.start()
    try:
        yield fake
    finally:
        server.stop()
