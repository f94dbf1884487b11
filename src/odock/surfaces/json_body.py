"""The JSON object every surface's request body must be."""

from __future__ import annotations

from typing import Any

import orjson

from odock.errors import InvalidRequestBody


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object body; 400 on anything else (including invalid UTF-8)."""
    if not body.strip():
        raise InvalidRequestBody("request body is empty; a JSON object is required")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestBody(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequestBody("request body must be a JSON object")
    return data
