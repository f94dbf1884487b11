"""The authentication stage: find the caller's API key and refuse bad ones."""

from __future__ import annotations

from datetime import UTC, datetime

from odock.errors import ApiKeyExpired, ApiKeyRevoked, OrganisationDisabled, Unauthorized
from odock.keys.directory import KeyDirectory
from odock.keys.principal import KeyPrincipal
from odock.keys.secrets import hash_secret
from odock.pipeline.exchange import Exchange

# Where SDKs put the key besides ``Authorization: Bearer``: Anthropic's and Google's headers (the
# gateway also moves Gemini's ``?key=`` query parameter into the latter).
KEY_HEADERS = ("x-api-key", "x-goog-api-key")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None for any other."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def presented_secret(headers: dict[str, str]) -> str | None:
    """The API key from ``Authorization: Bearer``, ``X-API-Key`` or ``X-Goog-Api-Key``."""
    token = bearer_token(headers.get("authorization"))
    if token is not None:
        return token
    for name in KEY_HEADERS:
        key = headers.get(name)
        if key and key.strip():
            return key.strip()
    return None


async def authenticate(
    directory: KeyDirectory, headers: dict[str, str], acting_key_hash: str | None = None
) -> KeyPrincipal:
    """Resolve the presented key to a usable principal or raise a 401.

    ``acting_key_hash`` names the key without its secret: set only by the control plane's
    playground, which has already authorised its caller to use that key (see
    :data:`odock.web.asgi.ACTING_KEY_HASH`). The key is checked like any presented one.
    """
    if acting_key_hash is not None:
        key_hash = acting_key_hash
    else:
        secret = presented_secret(headers)
        if secret is None:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>', 'X-API-Key' or 'X-Goog-Api-Key'"
            )
        key_hash = hash_secret(secret)
    principal = await directory.principal(key_hash)
    if principal is None:
        raise Unauthorized("invalid API key")
    if principal.revoked:
        raise ApiKeyRevoked()
    if principal.is_expired(datetime.now(UTC)):
        raise ApiKeyExpired()
    if not principal.organisation_active:
        raise OrganisationDisabled()
    return principal


class Authenticate:
    """Sets ``ex.principal`` from the presented API key."""

    name = "authenticate"

    def __init__(self, directory: KeyDirectory) -> None:
        self._directory = directory

    async def before(self, ex: Exchange) -> None:
        """Authenticate or raise a 401."""
        ex.principal = await authenticate(self._directory, ex.headers, ex.acting_key_hash)

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo."""
