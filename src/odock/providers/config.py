"""A provider's ``config`` as the API shows it: the values of its extra headers are write-only.

``config.headers`` holds headers the gateway adds to every upstream call of the provider (an
organisation id, a proxy's credential, a custom gateway's key): values that can be secrets.
Responses and the audit log show each header's name with the value :data:`HIDDEN`; an update
that sends :data:`HIDDEN` back as a header's value (a client that read the config, changed
another field and wrote it back) keeps the value stored for that header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odock.errors import UnprocessableEntity

HEADERS = "headers"
HIDDEN = "***"


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
