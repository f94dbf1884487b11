"""Sign-in with GitHub and any OpenID Connect provider (authorization code + PKCE, Authlib).

Flow::

    GET /api/auth/oauth/{provider}/login[?invite=TOKEN]
        state, nonce, PKCE verifier → shared cache (10 minutes, single use; every replica sees it)
        state → an HttpOnly cookie (the callback must come back to the browser that started)
        302 → the provider's authorize endpoint
    GET /api/auth/oauth/{provider}/callback?code&state
        state must match the cookie and the cache entry (then the entry is deleted)
        code → tokens at the token endpoint (with the PKCE verifier)
        OIDC: the ID token's signature (JWKS, cached: see odock.identity.jwks), issuer,
              audience, expiry and nonce are checked
        GitHub: /user, and the verified primary address from /user/emails
        → the account (see :func:`resolve_account`) → a session

Which user an external account signs in as, in order: the user already linked to it; else,
with an invitation, the invited e-mail (which must be the account's verified address) joins the
organisation; else a new PENDING user without an organisation, for an admin to approve. An
external account is never linked to an existing user by e-mail alone (that would let whoever
controls the address at the provider take over a password account).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import orjson
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from odock.cache.shared import SharedCache
from odock.db.base import utcnow
from odock.errors import (
    AccountNotActive,
    DependencyUnavailable,
    InvitationEmailMismatch,
    NotFound,
    SignInFailed,
)
from odock.identity.accounts import normalise_email
from odock.identity.invitations import accept_into, open_invitation
from odock.identity.jwks import JwksCache
from odock.identity.tables import ExternalIdentity
from odock.ids import new_id
from odock.settings import Settings
from odock.tenancy.tables import Role, User, UserStatus

STATE_TTL_SECONDS = 600.0
METADATA_TTL_SECONDS = 3600.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


@dataclass(frozen=True)
class ExternalAccount:
    """Who the provider says signed in: a stable subject and a verified e-mail address."""

    provider: str
    subject: str
    email: str
    name: str | None = None


@dataclass(frozen=True)
class PendingSignIn:
    """What the login step left for the callback (kept in the shared cache under the state)."""

    provider: str
    nonce: str
    verifier: str
    redirect_uri: str
    invite: str | None = None

    def dump(self) -> bytes:
        """Serialised for the shared cache."""
        return orjson.dumps(self.__dict__)

    @classmethod
    def load(cls, raw: bytes) -> PendingSignIn:
        """Read back from the shared cache."""
        return cls(**orjson.loads(raw))


class SignInProvider(Protocol):
    """One external identity provider."""

    id: str
    display_name: str

    async def authorize_url(self, pending: PendingSignIn, state: str) -> str:
        """Where to send the browser to sign in."""

    async def account(self, code: str, pending: PendingSignIn) -> ExternalAccount:
        """Redeem the authorization code and say who signed in (:class:`SignInFailed` otherwise)."""


async def _json(response: aiohttp.ClientResponse, what: str) -> Any:
    if response.status >= 400:
        raise SignInFailed(f"the provider refused the {what} request ({response.status})")
    try:
        return await response.json(content_type=None)
    except ValueError as exc:
        raise SignInFailed(f"the provider's {what} answer is not JSON") from exc


@dataclass
class OidcProvider:
    """Any OpenID Connect provider, configured by its discovery document."""

    discovery_url: str
    client_id: str
    client_secret: SecretStr | None
    scopes: str
    display_name: str
    id: str = "oidc"
    jwks: JwksCache = field(default_factory=JwksCache, repr=False)
    _metadata: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _fetched_at: float = field(default=0.0, init=False, repr=False)

    async def _discover(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._fetched_at > METADATA_TTL_SECONDS:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http, http.get(self.discovery_url) as r:
                metadata = await _json(r, "discovery")
            for needed in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(metadata.get(needed), str):
                    raise SignInFailed(f"the provider's discovery document has no {needed}")
            self._metadata, self._fetched_at = metadata, time.monotonic()
        return self._metadata

    async def authorize_url(self, pending: PendingSignIn, state: str) -> str:
        """The provider's authorize endpoint with state, nonce and the PKCE challenge."""
        metadata = await self._discover()
        return str(
            prepare_grant_uri(
                metadata["authorization_endpoint"],
                self.client_id,
                "code",
                redirect_uri=pending.redirect_uri,
                scope=self.scopes,
                state=state,
                nonce=pending.nonce,
                code_challenge=create_s256_code_challenge(pending.verifier),
                code_challenge_method="S256",
            )
        )

    async def account(self, code: str, pending: PendingSignIn) -> ExternalAccount:
        """Redeem the code; verify the ID token (JWKS signature, issuer, audience, expiry, nonce)."""
        metadata = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.verifier,
            "client_id": self.client_id,
        }
        headers = _client_auth(self.client_id, self.client_secret)
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
            async with http.post(metadata["token_endpoint"], data=form, headers=headers) as r:
                tokens = await _json(r, "token")
            id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
            if not isinstance(id_token, str):
                raise SignInFailed("the provider returned no ID token")

            async def fetch_jwks(uri: str) -> Any:
                async with http.get(uri) as r:
                    return await _json(r, "JWKS")

            keys = await self.jwks.keys_for(id_token, metadata["jwks_uri"], fetch_jwks)
        claims = _verified_claims(
            id_token, keys, issuer=metadata["issuer"], audience=self.client_id, nonce=pending.nonce
        )
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is False:
            raise SignInFailed("the provider did not give a verified e-mail address")
        name = claims.get("name")
        return ExternalAccount(
            self.id, str(claims["sub"]), normalise_email(email), name if isinstance(name, str) else None
        )


def _client_auth(client_id: str, secret: SecretStr | None) -> dict[str, str]:
    """``client_secret_basic`` (RFC 6749 §2.3.1: each part form-encoded, then Base64)."""
    if secret is None:
        return {}
    pair = f"{quote(client_id, safe='')}:{quote(secret.get_secret_value(), safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def _verified_claims(
    id_token: str, keys: KeySet, *, issuer: str, audience: str, nonce: str
) -> dict[str, Any]:
    try:
        token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
            leeway=60,
        ).validate(token.claims)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SignInFailed("the ID token is not valid") from exc
    return dict(token.claims)


@dataclass
class GitHubProvider:
    """GitHub OAuth apps: the numeric user id is the subject, the verified primary address the e-mail."""

    client_id: str
    client_secret: SecretStr | None
    authorize_endpoint: str
    token_endpoint: str
    api_url: str
    id: str = "github"
    display_name: str = "GitHub"

    async def authorize_url(self, pending: PendingSignIn, state: str) -> str:
        """GitHub's authorize page with state and the PKCE challenge."""
        return str(
            prepare_grant_uri(
                self.authorize_endpoint,
                self.client_id,
                "code",
                redirect_uri=pending.redirect_uri,
                scope="read:user user:email",
                state=state,
                code_challenge=create_s256_code_challenge(pending.verifier),
                code_challenge_method="S256",
            )
        )

    async def account(self, code: str, pending: PendingSignIn) -> ExternalAccount:
        """Redeem the code, then read /user and the verified primary address from /user/emails."""
        form = {
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value() if self.client_secret else "",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.verifier,
        }
        api = self.api_url.rstrip("/")
        async with aiohttp.ClientSession(
            timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"}
        ) as http:
            async with http.post(self.token_endpoint, data=form) as r:
                tokens = await _json(r, "token")
            access = tokens.get("access_token") if isinstance(tokens, dict) else None
            if not isinstance(access, str):
                raise SignInFailed("GitHub returned no access token")
            headers = {"Authorization": f"Bearer {access}", "Accept": "application/vnd.github+json"}
            async with http.get(f"{api}/user", headers=headers) as r:
                profile = await _json(r, "user")
            async with http.get(f"{api}/user/emails", headers=headers) as r:
                emails = await _json(r, "e-mail")
        listed = emails if isinstance(emails, list) else []
        primary = [e for e in listed if isinstance(e, dict) and e.get("primary") and e.get("verified")]
        if not isinstance(profile, dict) or "id" not in profile or not primary:
            raise SignInFailed("GitHub did not give a verified primary e-mail address")
        name = profile.get("name") or profile.get("login")
        return ExternalAccount(
            self.id,
            str(profile["id"]),
            normalise_email(str(primary[0]["email"])),
            name if isinstance(name, str) else None,
        )


def configured_providers(settings: Settings) -> dict[str, SignInProvider]:
    """The sign-in providers the settings configure, by route name (``oidc``, ``github``)."""
    providers: dict[str, SignInProvider] = {}
    if settings.oidc_discovery_url and settings.oidc_client_id:
        providers["oidc"] = OidcProvider(
            discovery_url=settings.oidc_discovery_url,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            scopes=settings.oidc_scopes,
            display_name=settings.oidc_display_name,
        )
    if settings.github_client_id:
        providers["github"] = GitHubProvider(
            client_id=settings.github_client_id,
            client_secret=settings.github_client_secret,
            authorize_endpoint=settings.github_authorize_url,
            token_endpoint=settings.github_token_url,
            api_url=settings.github_api_url,
        )
    return providers


class SignInFlows:
    """Starts and finishes external sign-ins; the state lives in the shared cache."""

    def __init__(self, providers: dict[str, SignInProvider], shared: SharedCache) -> None:
        self.providers = providers
        self._shared = shared

    def provider(self, name: str) -> SignInProvider:
        """The configured provider ``name`` (404 otherwise)."""
        found = self.providers.get(name)
        if found is None:
            raise NotFound(f"sign-in provider '{name}' is not configured")
        return found

    async def start(self, name: str, redirect_uri: str, invite: str | None) -> tuple[str, str]:
        """``(state, authorize URL)`` for a new sign-in with provider ``name``."""
        provider = self.provider(name)
        state = generate_token(43)
        pending = PendingSignIn(name, generate_token(32), generate_token(64), redirect_uri, invite)
        await self._shared.set(_state_key(state), pending.dump(), STATE_TTL_SECONDS)
        with _provider_calls():
            return state, await provider.authorize_url(pending, state)

    async def finish(
        self, name: str, code: str, state: str, cookie_state: str | None
    ) -> tuple[ExternalAccount, str | None]:
        """The signed-in external account and the invitation token the sign-in started with."""
        if not cookie_state or cookie_state != state:
            raise SignInFailed("the sign-in did not start in this browser (state mismatch)")
        raw = await self._shared.get(_state_key(state))
        await self._shared.delete(_state_key(state))
        if raw is None:
            raise SignInFailed("the sign-in expired or was already used: start again")
        pending = PendingSignIn.load(raw)
        if pending.provider != name:
            raise SignInFailed("the sign-in was started with another provider")
        with _provider_calls():
            return await self.provider(name).account(code, pending), pending.invite


@contextlib.contextmanager
def _provider_calls() -> Iterator[None]:
    """Translate a provider that cannot be reached (or answers garbage) into Odock errors."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DependencyUnavailable("the sign-in provider could not be reached") from exc


def _state_key(state: str) -> str:
    return f"oauth-state:{state}"


async def resolve_account(session: AsyncSession, account: ExternalAccount, invite: str | None) -> User:
    """The user ``account`` signs in as (see the module docstring); changes are left to commit."""
    link = (
        await session.execute(
            select(ExternalIdentity).where(
                ExternalIdentity.provider == account.provider, ExternalIdentity.subject == account.subject
            )
        )
    ).scalar_one_or_none()
    user = await session.get(User, link.user_id) if link is not None else None
    if user is None and invite is None:
        taken = await session.execute(select(User.id).where(User.email == account.email))
        if taken.first() is not None:
            raise SignInFailed(
                "an account with this e-mail address exists but is not linked to this sign-in provider: "
                "sign in with its password, or ask for an invitation"
            )
        user = await _new_user(session, account)
    elif invite is not None:
        invitation = await open_invitation(session, invite)
        if account.email != invitation.email:
            raise InvitationEmailMismatch()
        if user is None:
            user = await _user_by_email(session, invitation.email)
        if user is None:
            user = await _new_user(session, account)
        accept_into(invitation, user, name=user.name or account.name)
    assert user is not None
    if user.status is UserStatus.REVOKED:
        raise AccountNotActive("this account has been revoked")
    if link is None:
        session.add(
            ExternalIdentity(
                id=new_id(),
                user_id=user.id,
                provider=account.provider,
                subject=account.subject,
                email=account.email,
            )
        )
    user.last_login_at = utcnow()
    return user


async def _new_user(session: AsyncSession, account: ExternalAccount) -> User:
    # PENDING until an invitation is accepted or an admin approves (accept_into activates it).
    user = User(
        id=new_id(), email=account.email, name=account.name, role=Role.USER, status=UserStatus.PENDING
    )
    session.add(user)
    await session.flush()  # inserted now: the invitation and the external link reference it
    return user


async def _user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
