"""The decode stage: the request body, checked by the surface the request came in on."""

from __future__ import annotations

from odock.pipeline import Exchange
from odock.surfaces.json_body import parse_json_object


def decode(ex: Exchange) -> None:
    """Parse the JSON body and let the exchange's surface check it (400 naming the field)."""
    decoded = ex.surface.decode(parse_json_object(ex.body), ex.params)
    ex.payload = decoded.payload
    ex.stream = decoded.stream
    ex.include_usage = decoded.include_usage
    ex.extra_fields = decoded.extra_fields


class DecodeRequest:
    """The decode stage."""

    name = "decode_request"

    async def before(self, ex: Exchange) -> None:
        """Decode and type-check the body."""
        decode(ex)

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo."""
