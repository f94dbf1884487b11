"""A provider's ``config`` as stored and as shown: the values of its extra headers are secrets.

``config.headers`` holds headers the gateway adds to every upstream call of the provider (an
organisation id, a proxy's credential, a custom gateway's key): values that can be secrets, so
they are treated like provider keys::

    write  given value ──► text? ──► encrypt (spec §3.6 envelope, stored as a JSON object)
           "***"       ──► keep the stored value (an envelope; legacy plaintext is encrypted now)
    read   API / audit log ──► every value shown as :data:`HIDDEN`
           upstream call   ──► opened once per provider version by the vault (never per request)

A stored header value that is a JSON object is an envelope; a string is legacy plaintext (a row
written before values were encrypted), still sent as is until the provider is saved again or the
gateway starts with an encryption pair (:func:`holds_plaintext` finds those rows).

``config.connect_timeout_ms``, ``first_byte_timeout_ms`` and ``idle_timeout_ms`` override the
gateway's upstream timeouts for the provider (docs/providers.md#timeouts): whole milliseconds,
1 to :data:`MAX_TIMEOUT_MS`, checked when stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from odock.errors import UnprocessableEntity
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError

HEADERS = "headers"
HIDDEN = "***"
CONNECT_TIMEOUT_MS = "connect_timeout_ms"
FIRST_BYTE_TIMEOUT_MS = "first_byte_timeout_ms"
IDLE_TIMEOUT_MS = "idle_timeout_ms"
TIMEOUT_KEYS = (CONNECT_TIMEOUT_MS, FIRST_BYTE_TIMEOUT_MS, IDLE_TIMEOUT_MS)
MAX_TIMEOUT_MS = 3_600_000  # an hour, as the provider's timeout_ms


def shown_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config`` with every header value replaced by :data:`HIDDEN`."""
    shown = dict(config or {})
    headers = shown.get(HEADERS)
    if isinstance(headers, Mapping):
        shown[HEADERS] = dict.fromkeys(headers, HIDDEN)
    return shown


def merged_config(given: Mapping[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config to store for an update: header values given as :data:`HIDDEN` keep the stored ones.

    Raises 422 when a hidden value names a header that has no stored value to keep.
    """
    merged = dict(given)
    headers = merged.get(HEADERS)
    if not isinstance(headers, Mapping):
        return merged
    known = (stored or {}).get(HEADERS)
    known = known if isinstance(known, Mapping) else {}
    kept = {}
    for name, value in headers.items():
        if value == HIDDEN:
            if name not in known:
                raise UnprocessableEntity(
                    f"config.headers.{name} is '{HIDDEN}' but no value is stored for it: give the value",
                    param="config",
                )
            value = known[name]
        kept[name] = value
    merged[HEADERS] = kept
    return merged


def stored_config(
    given: Mapping[str, Any], stored: Mapping[str, Any] | None, encrypter: EnvelopeDecrypter | None
) -> dict[str, Any]:
    """The config to store for a create (``stored`` None) or an update: header values encrypted.

    Raises 422 when a header value is not text (or a number), when :data:`HIDDEN` has nothing to
    keep, when a value must be encrypted and this gateway has no encryption pair, or when a
    timeout override is not a whole number of milliseconds from 1 to :data:`MAX_TIMEOUT_MS`.
    """
    for key in TIMEOUT_KEYS:
        if given.get(key) is not None and not _is_timeout_ms(given[key]):
            raise UnprocessableEntity(
                f"config.{key} must be a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}",
                param="config",
            )
    headers = given.get(HEADERS)
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise UnprocessableEntity(
                "config.headers must be an object of header names to values", param="config"
            )
        for name, value in headers.items():
            if not _is_text(value):
                raise UnprocessableEntity(f"config.headers.{name} must be a string", param="config")
    return sealed_config(merged_config(given, stored), encrypter)


def timeout_override(config: Mapping[str, Any], key: str) -> float | None:
    """The provider's own value of timeout ``key``, in seconds (None when it sets none)."""
    value = config.get(key)
    return value / 1000 if _is_timeout_ms(value) else None


def _is_timeout_ms(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_TIMEOUT_MS


def sealed_config(config: Mapping[str, Any], encrypter: EnvelopeDecrypter | None) -> dict[str, Any]:
    """``config`` with every header value that is not yet an envelope encrypted (envelopes kept)."""
    sealed = dict(config)
    headers = sealed.get(HEADERS)
    if not isinstance(headers, Mapping) or not holds_plaintext(sealed):
        return sealed
    if encrypter is None:
        raise UnprocessableEntity(
            "no provider-key encryption pair is configured; "
            "provider header values are never stored in plaintext",
            param="config",
        )
    sealed[HEADERS] = {
        name: value if is_sealed(value) else encrypter.seal(str(value)) for name, value in headers.items()
    }
    return sealed


def holds_plaintext(config: Mapping[str, Any] | None) -> bool:
    """True when some header value of ``config`` is stored in plaintext (not an envelope)."""
    headers = (config or {}).get(HEADERS)
    return isinstance(headers, Mapping) and not all(is_sealed(v) for v in headers.values())


def is_sealed(value: object) -> bool:
    """True when a stored header value is an envelope (a JSON object), not legacy plaintext."""
    return isinstance(value, Mapping)


def open_header(value: object, decrypter: EnvelopeDecrypter) -> str:
    """The plaintext of a stored header value that is an envelope; :class:`EnvelopeError` if it fails."""
    try:
        return decrypter.open(value)
    except UnicodeDecodeError as exc:  # bytes that are not text
        raise EnvelopeError(f"envelope cannot be opened: {exc}") from exc


def config_holds(
    stored: Mapping[str, Any] | None, wanted: Mapping[str, Any], decrypter: EnvelopeDecrypter | None
) -> bool:
    """True when ``stored`` is ``wanted``, its header values being envelopes of the wanted values.

    Legacy plaintext values, and envelopes this gateway cannot open, do not hold (so saving the
    wanted config again encrypts them afresh).
    """
    stored = stored or {}
    rest = {k: v for k, v in stored.items() if k != HEADERS}
    if rest != {k: v for k, v in wanted.items() if k != HEADERS}:
        return False
    mine, theirs = stored.get(HEADERS), wanted.get(HEADERS)
    if not isinstance(mine, Mapping) or not isinstance(theirs, Mapping):
        return mine == theirs
    if set(mine) != set(theirs):
        return False
    if not mine:
        return True
    if decrypter is None:
        return False
    try:
        return all(
            is_sealed(mine[name]) and _is_text(value) and open_header(mine[name], decrypter) == str(value)
            for name, value in theirs.items()
        )
    except EnvelopeError:
        return False


def _is_text(value: object) -> bool:
    # Numbers are accepted as their text (YAML reads `x-version: 2` as an integer); not booleans.
    return isinstance(value, str | int | float) and not isinstance(value, bool)
