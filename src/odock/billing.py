"""Deterministic billing in integer nano-dollars (1 USD = 1e9 nanos), spec §6.2.

``cost_nanos = tokens * rate_per_1k * 1e9 / 1000``, computed in exact decimal arithmetic and
rounded half-up once per cost class. Worked example (spec): 15 input tokens at $0.002/1K =
30,000 nanos; 644 output tokens at $0.008/1K = 5,152,000; total 5,182,000 = $0.005182.

Classes: uncached input text; cached input (input rate less ``cached_input_discount_percent``);
output text; reasoning output (its own rate when set, else the output text rate); embeddings
(the embeddings rate when set, else the input text rate). Empty pricing means no cost fields.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from odock.llm.upstream import Usage

NANOS_PER_USD = 10**9
_NANOS_PER_TOKEN_PER_1K_RATE = Fraction(NANOS_PER_USD, 1000)


class _Rates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_cost_per_1k_tokens: float = Field(0, ge=0)
    image_cost_per_1k_tokens: float = Field(0, ge=0)
    audio_cost_per_1k_tokens: float = Field(0, ge=0)
    video_cost_per_1k_tokens: float = Field(0, ge=0)
    reasoning_cost_per_1k_tokens: float = Field(0, ge=0)


class _ToolRates(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition_cost_per_1k_tokens: float = Field(0, ge=0)
    input_cost_per_1k_tokens: float = Field(0, ge=0)
    output_cost_per_1k_tokens: float = Field(0, ge=0)


class Pricing(BaseModel):
    """The stored pricing JSON of a model (USD per 1K tokens), validated on every write."""

    model_config = ConfigDict(extra="forbid")

    input: _Rates = Field(default_factory=_Rates)
    output: _Rates = Field(default_factory=_Rates)
    cached_input_discount_percent: float = Field(0, ge=0, le=100)
    tools: _ToolRates = Field(default_factory=_ToolRates)
    embeddings_cost_per_1k_tokens: float = Field(0, ge=0)

    @classmethod
    def per_million(cls, input_usd: float, output_usd: float, **extra: Any) -> Pricing:
        """Build pricing from the "USD per 1M tokens" figures people quote."""
        return cls.model_validate(
            {
                "input": {"text_cost_per_1k_tokens": _per_1k(input_usd)},
                "output": {"text_cost_per_1k_tokens": _per_1k(output_usd)},
                **extra,
            }
        )


def _per_1k(per_million: float) -> float:
    # Divide in decimal: 0.07 / 1000 in binary floating point is 7.000000000000001e-05.
    return float(Decimal(str(per_million)) / 1000)


@lru_cache(maxsize=1024)
def _nanos_per_token(rate_per_1k: Any, discount_percent: Any = 0) -> tuple[int, int]:
    """The exact nanos per token (numerator, denominator) of a per-1K rate as written, less a discount.

    Rates are read as the decimal they print as (``str``), never as their binary float value,
    and kept as an exact fraction, so billing is integer arithmetic; the conversion is cached
    because a deployment has few distinct rates.
    """
    rate = Fraction(Decimal(str(rate_per_1k))) * _NANOS_PER_TOKEN_PER_1K_RATE
    rate = rate * (100 - Fraction(Decimal(str(discount_percent or 0)))) / 100
    return rate.numerator, rate.denominator


def _nanos(tokens: int, rate_per_1k: Any, discount_percent: Any = 0) -> int:
    if not tokens or not rate_per_1k:
        return 0
    numerator, denominator = _nanos_per_token(rate_per_1k, discount_percent)
    # tokens * numerator / denominator, rounded half up (amounts are never negative).
    return (2 * tokens * numerator + denominator) // (2 * denominator)


def usd(nanos: int) -> str:
    """Render nanos as a decimal USD string (exact, no trailing zeros, no exponent)."""
    if not nanos:
        return "0"
    sign = "-" if nanos < 0 else ""
    whole, fraction = divmod(abs(nanos), NANOS_PER_USD)
    return f"{sign}{whole}.{fraction:09d}".rstrip("0") if fraction else f"{sign}{whole}"


def bill(usage: Usage, pricing: dict[str, Any], *, embeddings: bool = False) -> dict[str, Any]:
    """The billing JSON of a usage record; ``total_cost_nanos_usd`` is None without pricing."""
    billing: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": usage.cached_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "pricing": pricing,
    }
    if not pricing:
        billing["total_cost_nanos_usd"] = None
        return billing
    costs = cost_classes(usage, pricing, embeddings=embeddings)
    total = sum(costs.values())
    for name, nanos in costs.items():
        billing[f"{name}_cost_nanos_usd"] = nanos
        billing[f"{name}_cost_usd"] = usd(nanos)
    billing["total_cost_nanos_usd"] = total
    billing["total_cost_usd"] = usd(total)
    return billing


def cost_nanos(usage: Usage, pricing: dict[str, Any], *, embeddings: bool = False) -> int | None:
    """The total cost of ``usage`` in nanos, as :func:`bill` computes it (None without pricing).

    For estimates, which need the figure and not the billing JSON.
    """
    if not pricing:
        return None
    return sum(cost_classes(usage, pricing, embeddings=embeddings).values())


def cost_classes(usage: Usage, pricing: dict[str, Any], *, embeddings: bool = False) -> dict[str, int]:
    """The cost of each class of tokens in nanos, under non-empty ``pricing``."""
    rates_in = pricing.get("input") or {}
    rates_out = pricing.get("output") or {}
    input_rate = rates_in.get("text_cost_per_1k_tokens", 0)
    costs: dict[str, int] = {}
    embeddings_rate = pricing.get("embeddings_cost_per_1k_tokens", 0)
    if embeddings and embeddings_rate:
        costs["embeddings"] = _nanos(usage.prompt_tokens, embeddings_rate)
    else:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        discount = pricing.get("cached_input_discount_percent", 0) or 0
        costs["input"] = _nanos(usage.prompt_tokens - cached, input_rate)
        costs["cached_input"] = _nanos(cached, input_rate, discount)
    reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
    output_rate = rates_out.get("text_cost_per_1k_tokens", 0)
    reasoning_rate = rates_out.get("reasoning_cost_per_1k_tokens") or output_rate
    costs["output"] = _nanos(usage.completion_tokens - reasoning, output_rate)
    costs["reasoning"] = _nanos(reasoning, reasoning_rate)
    return costs
