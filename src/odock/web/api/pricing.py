"""Model pricing as the API accepts and shows it: the stored per-1K shape and a per-1M shape.

Storage keeps the spec §3.7 shape, USD per 1K tokens. People quote prices per 1M tokens, so the
API also accepts (``"unit": "per_1m_tokens"``) and shows that form::

    {"unit": "per_1m_tokens",
     "input":  {"text": 5, "image": 0, "audio": 0, "video": 0, "reasoning": 0},
     "output": {"text": 15, "image": 0, "audio": 0, "video": 0, "reasoning": 15},
     "cached_input_discount_percent": 50,
     "tools": {"definition": 0, "input": 0, "output": 0},
     "embeddings": 0}

Conversion is exact: rates are decimals (numbers or strings), divided or multiplied by 1000 in
decimal arithmetic. A rate has at most 15 significant digits (so its stored binary float reads
back as the same decimal) and at most 12 decimals per 1M (15 per 1K); negative, NaN and
infinite rates are refused. The discount is a percentage and is not converted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

from odock.rules import validate_pricing

_THOUSAND = Decimal(1000)
MAX_SIGNIFICANT_DIGITS = 15


def _rate_checker(max_decimals: int) -> AfterValidator:
    def check(value: Decimal) -> Decimal:
        normal = value.normalize()
        _sign, digits, exponent = normal.as_tuple()
        assert isinstance(exponent, int)  # finite: allow_inf_nan=False ran first
        if len(digits) > MAX_SIGNIFICANT_DIGITS:
            raise ValueError(f"at most {MAX_SIGNIFICANT_DIGITS} significant digits")
        if normal and -exponent > max_decimals:
            raise ValueError(f"at most {max_decimals} decimals")
        return normal

    return AfterValidator(check)


RatePer1M = Annotated[Decimal, Field(ge=0, le=1_000_000, allow_inf_nan=False), _rate_checker(12)]
RatePer1K = Annotated[Decimal, Field(ge=0, le=1_000, allow_inf_nan=False), _rate_checker(15)]
Percent = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False), _rate_checker(6)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RatesPer1M(_Body):
    """USD per 1M tokens of each modality."""

    text: RatePer1M = Decimal(0)
    image: RatePer1M = Decimal(0)
    audio: RatePer1M = Decimal(0)
    video: RatePer1M = Decimal(0)
    reasoning: RatePer1M = Decimal(0)


class ToolRatesPer1M(_Body):
    """USD per 1M tokens of tool definitions, tool inputs and tool outputs."""

    definition: RatePer1M = Decimal(0)
    input: RatePer1M = Decimal(0)
    output: RatePer1M = Decimal(0)


class PricingPer1M(_Body):
    """Pricing in USD per 1M tokens, as people quote it."""

    unit: Literal["per_1m_tokens"]
    input: RatesPer1M = Field(default_factory=RatesPer1M)
    output: RatesPer1M = Field(default_factory=RatesPer1M)
    cached_input_discount_percent: Percent = Decimal(0)
    tools: ToolRatesPer1M = Field(default_factory=ToolRatesPer1M)
    embeddings: RatePer1M = Decimal(0)


class RatesPer1K(_Body):
    """USD per 1K tokens of each modality (the stored names)."""

    text_cost_per_1k_tokens: RatePer1K = Decimal(0)
    image_cost_per_1k_tokens: RatePer1K = Decimal(0)
    audio_cost_per_1k_tokens: RatePer1K = Decimal(0)
    video_cost_per_1k_tokens: RatePer1K = Decimal(0)
    reasoning_cost_per_1k_tokens: RatePer1K = Decimal(0)


class ToolRatesPer1K(_Body):
    """USD per 1K tokens of tool definitions, inputs and outputs (the stored names)."""

    definition_cost_per_1k_tokens: RatePer1K = Decimal(0)
    input_cost_per_1k_tokens: RatePer1K = Decimal(0)
    output_cost_per_1k_tokens: RatePer1K = Decimal(0)


class PricingPer1K(_Body):
    """Pricing in the stored shape of spec §3.7 (USD per 1K tokens); ``unit`` may be omitted."""

    unit: Literal["per_1k_tokens"] | None = None
    input: RatesPer1K = Field(default_factory=RatesPer1K)
    output: RatesPer1K = Field(default_factory=RatesPer1K)
    cached_input_discount_percent: Percent = Decimal(0)
    tools: ToolRatesPer1K = Field(default_factory=ToolRatesPer1K)
    embeddings_cost_per_1k_tokens: RatePer1K = Decimal(0)


def _unit_of(value: Any) -> str:
    unit = value.get("unit") if isinstance(value, dict) else getattr(value, "unit", None)
    return unit if isinstance(unit, str) else "per_1k_tokens"


PricingBody = Annotated[
    Annotated[PricingPer1M, Tag("per_1m_tokens")] | Annotated[PricingPer1K, Tag("per_1k_tokens")],
    Discriminator(_unit_of),
]
"""Pricing in either shape; ``unit`` tells them apart (absent: the stored per-1K shape)."""


def is_empty(body: PricingPer1M | PricingPer1K) -> bool:
    """True for ``{}``: the body that clears a model's pricing."""
    return not body.model_fields_set


def stored_pricing(body: PricingPer1M | PricingPer1K) -> dict[str, Any]:
    """The stored (per-1K) pricing JSON for a request body, exactly converted."""
    if isinstance(body, PricingPer1K):
        per_1k = body.model_dump(exclude={"unit"})
    else:
        per_1k = {
            "input": _rates_to_1k(body.input),
            "output": _rates_to_1k(body.output),
            "cached_input_discount_percent": body.cached_input_discount_percent,
            "tools": {f"{k}_cost_per_1k_tokens": v / _THOUSAND for k, v in body.tools.model_dump().items()},
            "embeddings_cost_per_1k_tokens": body.embeddings / _THOUSAND,
        }
    return validate_pricing(_floats(per_1k))


def _rates_to_1k(rates: RatesPer1M) -> dict[str, Decimal]:
    return {f"{k}_cost_per_1k_tokens": v / _THOUSAND for k, v in rates.model_dump().items()}


def _floats(tree: Any) -> Any:
    # Storage holds JSON numbers; a decimal of ≤15 significant digits survives the float exactly.
    if isinstance(tree, dict):
        return {k: _floats(v) for k, v in tree.items()}
    return float(tree) if isinstance(tree, Decimal) else tree


# --- views (responses) -----------------------------------------------------------------------
class RatesPer1KView(BaseModel):
    """Stored rates, USD per 1K tokens."""

    text_cost_per_1k_tokens: float = 0
    image_cost_per_1k_tokens: float = 0
    audio_cost_per_1k_tokens: float = 0
    video_cost_per_1k_tokens: float = 0
    reasoning_cost_per_1k_tokens: float = 0


class ToolRatesPer1KView(BaseModel):
    """Stored tool rates, USD per 1K tokens."""

    definition_cost_per_1k_tokens: float = 0
    input_cost_per_1k_tokens: float = 0
    output_cost_per_1k_tokens: float = 0


class PricingPer1KView(BaseModel):
    """A model's pricing as stored (spec §3.7, USD per 1K tokens)."""

    input: RatesPer1KView = Field(default_factory=RatesPer1KView)
    output: RatesPer1KView = Field(default_factory=RatesPer1KView)
    cached_input_discount_percent: float = 0
    tools: ToolRatesPer1KView = Field(default_factory=ToolRatesPer1KView)
    embeddings_cost_per_1k_tokens: float = 0


class RatesPer1MView(BaseModel):
    """Rates in USD per 1M tokens."""

    text: float = 0
    image: float = 0
    audio: float = 0
    video: float = 0
    reasoning: float = 0


class ToolRatesPer1MView(BaseModel):
    """Tool rates in USD per 1M tokens."""

    definition: float = 0
    input: float = 0
    output: float = 0


class PricingPer1MView(BaseModel):
    """A model's pricing in USD per 1M tokens (for display; computed from the stored rates)."""

    unit: Literal["per_1m_tokens"] = "per_1m_tokens"
    input: RatesPer1MView = Field(default_factory=RatesPer1MView)
    output: RatesPer1MView = Field(default_factory=RatesPer1MView)
    cached_input_discount_percent: float = 0
    tools: ToolRatesPer1MView = Field(default_factory=ToolRatesPer1MView)
    embeddings: float = 0


def per_1k_view(stored: dict[str, Any]) -> PricingPer1KView | None:
    """The stored pricing as a view (``None`` when the model has none)."""
    return PricingPer1KView.model_validate(stored) if stored else None


def per_1m_view(stored: dict[str, Any]) -> PricingPer1MView | None:
    """The stored pricing in USD per 1M tokens (``None`` when the model has none)."""
    if not stored:
        return None
    view = PricingPer1KView.model_validate(stored)

    def rates(r: RatesPer1KView) -> RatesPer1MView:
        return RatesPer1MView(**{k.removesuffix("_cost_per_1k_tokens"): _to_1m(v) for k, v in r})

    return PricingPer1MView(
        input=rates(view.input),
        output=rates(view.output),
        cached_input_discount_percent=view.cached_input_discount_percent,
        tools=ToolRatesPer1MView(**{k.removesuffix("_cost_per_1k_tokens"): _to_1m(v) for k, v in view.tools}),
        embeddings=_to_1m(view.embeddings_cost_per_1k_tokens),
    )


def _to_1m(per_1k: float) -> float:
    # repr() is the shortest decimal that reads back as this float: multiply that, not the binary.
    return float(Decimal(repr(per_1k)) * _THOUSAND)
