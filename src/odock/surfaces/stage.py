"""The surface's stages: the request body checked by the surface it came in on (DecodeRequest),
and its token estimate, computed once for every stage that reserves on it (EstimateTokens)."""

from __future__ import annotations

from odock.pipeline.exchange import Exchange, TokenEstimate
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


class EstimateTokens:
    """Sets ``ex.tokens``: the prompt's estimated tokens (by its surface) and the output allowance.

    Runs once the model is known (its ``max_output_tokens`` caps the allowance); the rate limits,
    the budgets and the usage intent all read this one estimate.
    """

    name = "estimate_tokens"

    def __init__(self, default_max_output_tokens: int) -> None:
        self._default_output = default_max_output_tokens

    async def before(self, ex: Exchange) -> None:
        """Estimate the request's tokens."""
        estimate(ex, self._default_output)

    async def after(self, ex: Exchange) -> None:
        """Nothing to undo."""


def estimate(ex: Exchange, default_max_output_tokens: int) -> TokenEstimate:
    """Estimate ``ex``'s tokens and keep the estimate on it."""
    ex.tokens = TokenEstimate(
        ex.surface.estimate_input(ex.payload), ex.output_allowance(default_max_output_tokens)
    )
    return ex.tokens
