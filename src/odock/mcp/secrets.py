"""The secrets of an MCP server as stored, shown and opened.

Three columns of :class:`~odock.mcp.tables.McpServer` hold secrets, treated like provider keys
(:mod:`odock.providers.crypto` envelopes, the gateway's provider-key pair)::

    auth_config   the secret fields of its shape (token, password, client_secret)
    headers       every value
    stdio_env     every value

    write  given text  ──► encrypt (an envelope, stored as a JSON object)
           "***"       ──► keep the stored envelope (422 when nothing is stored to keep)
    read   API / audit log ──► shown as "***"
           the directory   ──► opened once per row version, kept in process memory only

This module has no database or cache dependency: the audit recorder uses the ``shown_*`` views.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odock.errors import UnprocessableEntity
from odock.mcp.link import AuthType
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError

HIDDEN = "***"

# Per auth type: (required fields, optional fields); the secret ones are SECRET_AUTH_FIELDS.
AUTH_SHAPES: Mapping[AuthType, tuple[frozenset[str], frozenset[str]]] = {
    AuthType.NONE: (frozenset(), frozenset()),
    AuthType.BEARER: (frozenset({"token"}), frozenset()),
    AuthType.BASIC: (frozenset({"username", "password"}), frozenset()),
    AuthType.OAUTH2: (
        frozenset({"token_url", "client_id", "client_secret"}),
        frozenset({"scope", "audience"}),
    ),
}
SECRET_AUTH_FIELDS = frozenset({"token", "password", "client_secret"})


def shown_auth(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``auth_config`` with every secret field replaced by :data:`HIDDEN`."""
    return {k: HIDDEN if k in SECRET_AUTH_FIELDS else v for k, v in (config or {}).items()}


def shown_values(values: Mapping[str, Any] | None) -> dict[str, str]:
    """``headers`` or ``stdio_env`` with every value replaced by :data:`HIDDEN`."""
    return dict.fromkeys(values or {}, HIDDEN)


def check_auth(auth_type: AuthType, config: Mapping[str, Any]) -> None:
    """Refuse (422) an ``auth_config`` that is not the shape of ``auth_type``."""
    required, optional = AUTH_SHAPES[auth_type]
    unknown = set(config) - required - optional
    if unknown:
        raise UnprocessableEntity(
            f"auth_config of {auth_type.value} has unknown fields: {', '.join(sorted(unknown))}",
            param="auth_config",
        )
    missing = required - set(config)
    if missing:
        raise UnprocessableEntity(
            f"auth_config of {auth_type.value} needs {', '.join(sorted(missing))}", param="auth_config"
        )
    for name, value in config.items():
        if name in SECRET_AUTH_FIELDS and isinstance(value, Mapping):
            continue  # an envelope kept from the stored config
        if not isinstance(value, str) or not value or "\x00" in value:
            raise UnprocessableEntity(f"auth_config.{name} must be a non-empty string", param="auth_config")
    if auth_type is AuthType.OAUTH2:
        url = str(config["token_url"])
        if not url.startswith(("https://", "http://")):
            raise UnprocessableEntity("auth_config.token_url must be an http(s) URL", param="auth_config")


def sealed_auth(
    given: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    encrypter: EnvelopeDecrypter | None,
) -> dict[str, Any]:
    """The ``auth_config`` to store: secret fields encrypted, :data:`HIDDEN` keeping the stored one."""
    known = stored or {}
    sealed: dict[str, Any] = {}
    for name, value in given.items():
        if name not in SECRET_AUTH_FIELDS:
            sealed[name] = value
        elif value == HIDDEN:
            if not isinstance(known.get(name), Mapping):
                raise _nothing_kept(f"auth_config.{name}", "auth_config")
            sealed[name] = known[name]
        elif isinstance(value, str) and value:
            sealed[name] = _seal(value, encrypter, "auth_config")
        else:
            raise UnprocessableEntity(f"auth_config.{name} must be a non-empty string", param="auth_config")
    return sealed


def sealed_values(
    given: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    encrypter: EnvelopeDecrypter | None,
    param: str,
) -> dict[str, Any]:
    """``headers`` / ``stdio_env`` to store: every value encrypted, :data:`HIDDEN` keeping the stored one."""
    known = stored or {}
    sealed: dict[str, Any] = {}
    for name, value in given.items():
        if not isinstance(name, str) or not name or "\x00" in name:
            raise UnprocessableEntity(f"{param} names must be non-empty strings", param=param)
        if value == HIDDEN:
            if not isinstance(known.get(name), Mapping):
                raise _nothing_kept(f"{param}.{name}", param)
            sealed[name] = known[name]
        elif isinstance(value, str) and "\x00" not in value:
            sealed[name] = _seal(value, encrypter, param)
        else:
            raise UnprocessableEntity(f"{param}.{name} must be a string", param=param)
    return sealed


def open_auth(config: Mapping[str, Any], decrypter: EnvelopeDecrypter | None) -> dict[str, str]:
    """``auth_config`` with its secret fields opened (:class:`EnvelopeError` when one cannot be)."""
    return {
        name: _open(value, decrypter) if name in SECRET_AUTH_FIELDS else str(value)
        for name, value in config.items()
    }


def open_values(values: Mapping[str, Any], decrypter: EnvelopeDecrypter | None) -> dict[str, str]:
    """``headers`` / ``stdio_env`` with every value opened (:class:`EnvelopeError` when one cannot be)."""
    return {name: _open(value, decrypter) for name, value in values.items()}


def _seal(value: str, encrypter: EnvelopeDecrypter | None, param: str) -> dict[str, Any]:
    if encrypter is None:
        raise UnprocessableEntity(
            "no provider-key encryption pair is configured; MCP server secrets are never stored in plaintext",
            param=param,
        )
    return encrypter.seal(value)


def _open(value: object, decrypter: EnvelopeDecrypter | None) -> str:
    if not isinstance(value, Mapping):
        raise EnvelopeError("a secret is not stored as an envelope")
    if decrypter is None:
        raise EnvelopeError("no private key is configured")
    try:
        return decrypter.open(dict(value))
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"envelope cannot be opened: {exc}") from exc


def _nothing_kept(where: str, param: str) -> UnprocessableEntity:
    return UnprocessableEntity(
        f"{where} is '{HIDDEN}' but no value is stored for it: give the value", param=param
    )
