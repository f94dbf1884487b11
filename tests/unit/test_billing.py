"""Billing in integer nanos USD (spec §6.2): exact, per cost class, never floats."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from odock.billing import NANOS_PER_USD, Pricing, bill, cost_nanos, usd
from odock.llm.upstream import Usage

GPT_41 = {"input": {"text_cost_per_1k_tokens": 0.002}, "output": {"text_cost_per_1k_tokens": 0.008}}


def pricing(**fields: Any) -> dict[str, Any]:
    """A validated pricing JSON, as the control plane stores it."""
    return Pricing.model_validate(fields).model_dump()


def test_spec_worked_example() -> None:
    """15 input tokens at $0.002/1K and 644 output at $0.008/1K cost 5,182,000 nanos = $0.005182."""
    billing = bill(Usage(prompt_tokens=15, completion_tokens=644, total_tokens=659), GPT_41)
    assert billing["input_cost_nanos_usd"] == 30_000
    assert billing["output_cost_nanos_usd"] == 5_152_000
    assert billing["total_cost_nanos_usd"] == 5_182_000
    assert billing["total_cost_usd"] == "0.005182"
    assert billing["input_cost_usd"] == "0.00003"
    assert billing["output_cost_usd"] == "0.005152"
    assert billing["prompt_tokens"] == 15
    assert billing["completion_tokens"] == 644
    assert billing["total_tokens"] == 659


def test_pricing_snapshot_is_copied_into_the_billing() -> None:
    """The billing carries the pricing it was computed with, so later price edits rewrite nothing."""
    billing = bill(Usage(prompt_tokens=1), GPT_41)
    assert billing["pricing"] == GPT_41


def test_cached_input_is_billed_at_the_discounted_rate() -> None:
    """Cached prompt tokens cost the input rate less the discount; the rest pay the full rate."""
    rates = pricing(input={"text_cost_per_1k_tokens": 0.002}, cached_input_discount_percent=50)
    billing = bill(Usage(prompt_tokens=1000, cached_tokens=400), rates)
    assert billing["input_cost_nanos_usd"] == 600 * 2000  # 600 uncached at $0.002/1K
    assert billing["cached_input_cost_nanos_usd"] == 400 * 1000  # 400 cached at $0.001/1K
    assert billing["total_cost_nanos_usd"] == 1_600_000


def test_cached_tokens_beyond_the_prompt_are_capped() -> None:
    """A provider reporting more cached than prompt tokens is not billed for tokens it never sent."""
    rates = pricing(input={"text_cost_per_1k_tokens": 0.002}, cached_input_discount_percent=100)
    billing = bill(Usage(prompt_tokens=10, cached_tokens=50), rates)
    assert billing["input_cost_nanos_usd"] == 0
    assert billing["cached_input_cost_nanos_usd"] == 0


def test_reasoning_tokens_use_the_reasoning_rate() -> None:
    """Reasoning tokens are billed at their own output rate, the rest of the output at the text rate."""
    rates = pricing(output={"text_cost_per_1k_tokens": 0.008, "reasoning_cost_per_1k_tokens": 0.02})
    billing = bill(Usage(completion_tokens=644, reasoning_tokens=100), rates)
    assert billing["output_cost_nanos_usd"] == 544 * 8000
    assert billing["reasoning_cost_nanos_usd"] == 100 * 20_000
    assert billing["total_cost_nanos_usd"] == 4_352_000 + 2_000_000


def test_reasoning_without_its_own_rate_costs_the_output_rate() -> None:
    """With no reasoning rate, reasoning tokens cost what other output tokens cost."""
    billing = bill(Usage(completion_tokens=644, reasoning_tokens=100), GPT_41)
    assert billing["output_cost_nanos_usd"] + billing["reasoning_cost_nanos_usd"] == 5_152_000
    assert billing["reasoning_cost_nanos_usd"] == 800_000


def test_embeddings_use_the_embeddings_rate() -> None:
    """An embeddings call bills its input at the embeddings rate, not the chat input rate."""
    rates = pricing(input={"text_cost_per_1k_tokens": 0.002}, embeddings_cost_per_1k_tokens=0.0001)
    billing = bill(Usage(prompt_tokens=5000, total_tokens=5000), rates, embeddings=True)
    assert billing["embeddings_cost_nanos_usd"] == 500_000
    assert "input_cost_nanos_usd" not in billing
    assert billing["total_cost_nanos_usd"] == 500_000


def test_embeddings_without_their_own_rate_cost_the_input_rate() -> None:
    """A model with no embeddings rate bills embeddings input at its input text rate."""
    billing = bill(Usage(prompt_tokens=5000), GPT_41, embeddings=True)
    assert billing["input_cost_nanos_usd"] == 10_000_000
    assert "embeddings_cost_nanos_usd" not in billing


def test_chat_calls_ignore_the_embeddings_rate() -> None:
    """The embeddings rate applies to embeddings calls only."""
    rates = pricing(input={"text_cost_per_1k_tokens": 0.002}, embeddings_cost_per_1k_tokens=0.0001)
    assert bill(Usage(prompt_tokens=1000), rates)["input_cost_nanos_usd"] == 2_000_000


def test_empty_pricing_records_usage_without_cost() -> None:
    """With no pricing the usage is kept and the total cost is None, with no per-class costs."""
    billing = bill(Usage(prompt_tokens=15, completion_tokens=644, total_tokens=659), {})
    assert billing["total_cost_nanos_usd"] is None
    assert billing["prompt_tokens"] == 15
    assert not [key for key in billing if key.endswith("_cost_usd") or key.startswith(("input_", "output_"))]


def test_zero_rates_cost_zero_not_none() -> None:
    """Pricing that is present but free costs 0, which is different from unknown."""
    billing = bill(Usage(prompt_tokens=10, completion_tokens=10), pricing())
    assert billing["total_cost_nanos_usd"] == 0
    assert billing["total_cost_usd"] == "0"


def test_a_billion_tokens_have_no_float_drift() -> None:
    """Over 10^9 tokens at rates binary floats cannot represent, costs stay exact integers of nanos."""
    rates = pricing(input={"text_cost_per_1k_tokens": 0.0001}, output={"text_cost_per_1k_tokens": 0.0017})
    billing = bill(Usage(prompt_tokens=1_234_567_891, completion_tokens=999_999_999), rates)
    assert billing["input_cost_nanos_usd"] == 123_456_789_100
    assert billing["output_cost_nanos_usd"] == 1_699_999_998_300
    assert billing["total_cost_nanos_usd"] == 1_823_456_787_400
    assert billing["total_cost_usd"] == "1823.4567874"
    # The same computation in floats is off, which is why billing never uses them.
    assert 999_999_999 * 0.0017 / 1000 * NANOS_PER_USD != 1_699_999_998_300


def test_rounding_is_half_up_once_per_class() -> None:
    """A class costing half a nano rounds up; sub-nano costs are not accumulated across classes."""
    rates = pricing(input={"text_cost_per_1k_tokens": 0.0000005})  # 0.5 nanos per token
    assert bill(Usage(prompt_tokens=1), rates)["input_cost_nanos_usd"] == 1
    assert bill(Usage(prompt_tokens=3), rates)["input_cost_nanos_usd"] == 2  # 1.5 → 2


@pytest.mark.parametrize(
    ("nanos", "text"),
    [(0, "0"), (1, "0.000000001"), (5_182_000, "0.005182"), (NANOS_PER_USD, "1"), (2 * 10**12, "2000")],
)
def test_usd_renders_fixed_point(nanos: int, text: str) -> None:
    """Nanos render as a plain decimal dollar string, never in scientific notation."""
    assert usd(nanos) == text


def test_per_million_converts_without_float_error() -> None:
    """USD-per-1M prices become exact USD-per-1K rates: $0.07/1M is 0.00007/1K, not 7.000000000000001e-05."""
    rates = Pricing.per_million(0.07, 0.14)
    assert Decimal(str(rates.input.text_cost_per_1k_tokens)) == Decimal("0.00007")
    assert Decimal(str(rates.output.text_cost_per_1k_tokens)) == Decimal("0.00014")


@pytest.mark.parametrize(
    "bad",
    [
        {"input": {"text_cost_per_1k_tokens": -0.001}},
        {"output": {"reasoning_cost_per_1k_tokens": -1}},
        {"embeddings_cost_per_1k_tokens": -0.5},
        {"cached_input_discount_percent": -1},
        {"cached_input_discount_percent": 101},
        {"tools": {"input_cost_per_1k_tokens": -2}},
        {"input": {"text_cost_per_1k_token": 0.002}},
        {"inputs": {"text_cost_per_1k_tokens": 0.002}},
        {"tools": {"call_cost": 1}},
    ],
)
def test_pricing_rejects_negatives_and_unknown_keys(bad: dict[str, Any]) -> None:
    """Negative rates, out-of-range discounts and misspelled keys are refused, never stored."""
    with pytest.raises(ValidationError):
        Pricing.model_validate(bad)


def test_pricing_accepts_the_spec_shape() -> None:
    """The stored pricing JSON of spec §3.7 validates as is."""
    spec = {
        "input": {
            "text_cost_per_1k_tokens": 0.005,
            "image_cost_per_1k_tokens": 0,
            "audio_cost_per_1k_tokens": 0,
            "video_cost_per_1k_tokens": 0,
            "reasoning_cost_per_1k_tokens": 0,
        },
        "output": {"text_cost_per_1k_tokens": 0.015, "reasoning_cost_per_1k_tokens": 0.015},
        "cached_input_discount_percent": 50,
        "tools": {
            "definition_cost_per_1k_tokens": 0,
            "input_cost_per_1k_tokens": 0,
            "output_cost_per_1k_tokens": 0,
        },
        "embeddings_cost_per_1k_tokens": 0,
    }
    assert Pricing.model_validate(spec).output.reasoning_cost_per_1k_tokens == 0.015


# --- properties -------------------------------------------------------------------------------

# Rates with up to 6 decimals of USD per 1K tokens: exactly k micro-dollars per 1K = k nanos per token.
micro_rates = st.integers(min_value=0, max_value=100_000)
tokens = st.integers(min_value=0, max_value=10**12)


def rate(micros: int) -> float:
    """``micros`` micro-dollars per 1K tokens as the float the pricing JSON holds."""
    return float(Decimal(micros) / 10**6)


@given(micros=micro_rates, count=tokens)
@example(micros=99_999, count=10**12 - 1)  # past 2^53 nanos, where a float product is off by 15
@example(micros=77_777, count=123_456_789_123)
def test_cost_is_exactly_tokens_times_rate(micros: int, count: int) -> None:
    """With a rate of k micro-USD per 1K tokens, n tokens cost exactly n·k nanos, at any scale."""
    rates = pricing(input={"text_cost_per_1k_tokens": rate(micros)})
    assert bill(Usage(prompt_tokens=count), rates)["input_cost_nanos_usd"] == count * micros


@given(
    in_rate=micro_rates,
    out_rate=micro_rates,
    reasoning_rate=micro_rates,
    discount=st.integers(min_value=0, max_value=100),
    a=tokens,
    b=tokens,
)
def test_cost_is_monotonic_in_tokens(
    in_rate: int, out_rate: int, reasoning_rate: int, discount: int, a: int, b: int
) -> None:
    """More prompt or completion tokens never cost less."""
    low, high = sorted((a, b))
    rates = pricing(
        input={"text_cost_per_1k_tokens": rate(in_rate)},
        output={
            "text_cost_per_1k_tokens": rate(out_rate),
            "reasoning_cost_per_1k_tokens": rate(reasoning_rate),
        },
        cached_input_discount_percent=discount,
    )

    def total(usage: Usage) -> int:
        value = bill(usage, rates)["total_cost_nanos_usd"]
        assert isinstance(value, int)
        return value

    assert total(Usage(prompt_tokens=low)) <= total(Usage(prompt_tokens=high))
    assert total(Usage(completion_tokens=low)) <= total(Usage(completion_tokens=high))
    fewer_uncached = Usage(prompt_tokens=high, cached_tokens=low)
    assert total(fewer_uncached) <= total(Usage(prompt_tokens=high + 1, cached_tokens=low))


@given(
    in_rate=micro_rates,
    out_rate=micro_rates,
    discount=st.integers(min_value=0, max_value=100),
    prompt=tokens,
    completion=tokens,
    cached=tokens,
    reasoning=tokens,
)
def test_cost_is_additive_across_classes(
    in_rate: int, out_rate: int, discount: int, prompt: int, completion: int, cached: int, reasoning: int
) -> None:
    """The total is the sum of the per-class costs, and input and output bill independently."""
    rates = pricing(
        input={"text_cost_per_1k_tokens": rate(in_rate)},
        output={"text_cost_per_1k_tokens": rate(out_rate), "reasoning_cost_per_1k_tokens": rate(2 * in_rate)},
        cached_input_discount_percent=discount,
    )
    cached, reasoning = min(cached, prompt), min(reasoning, completion)
    both = bill(Usage(prompt, completion, cached_tokens=cached, reasoning_tokens=reasoning), rates)
    classes = ("input", "cached_input", "output", "reasoning")
    assert both["total_cost_nanos_usd"] == sum(both[f"{c}_cost_nanos_usd"] for c in classes)
    only_in = bill(Usage(prompt_tokens=prompt, cached_tokens=cached), rates)
    only_out = bill(Usage(completion_tokens=completion, reasoning_tokens=reasoning), rates)
    assert both["total_cost_nanos_usd"] == only_in["total_cost_nanos_usd"] + only_out["total_cost_nanos_usd"]
    assert Decimal(both["total_cost_usd"]) * NANOS_PER_USD == both["total_cost_nanos_usd"]


@given(
    prompt=st.integers(0, 10**7),
    completion=st.integers(0, 10**7),
    cached=st.integers(0, 10**7),
    reasoning=st.integers(0, 10**7),
    embeddings=st.booleans(),
)
def test_the_cost_estimate_is_the_billed_total(
    prompt: int, completion: int, cached: int, reasoning: int, embeddings: bool
) -> None:
    """``cost_nanos`` (what budget estimates use) is exactly the total ``bill`` records."""
    usage = Usage(prompt, completion, prompt + completion, cached_tokens=cached, reasoning_tokens=reasoning)
    rates = pricing(
        input={"text_cost_per_1k_tokens": 0.0025},
        output={"text_cost_per_1k_tokens": 0.01, "reasoning_cost_per_1k_tokens": 0.03},
        cached_input_discount_percent=50,
        embeddings_cost_per_1k_tokens=0.0001,
    )
    billed = bill(usage, rates, embeddings=embeddings)["total_cost_nanos_usd"]
    assert cost_nanos(usage, rates, embeddings=embeddings) == billed
    assert cost_nanos(usage, {}, embeddings=embeddings) is None
