"""The shipped model catalogue: it loads, it is sensible, and broken documents are refused."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from odock.providers.model_catalogue_service import CatalogueError, model_catalogue, parse_catalogue
from odock.providers.model_service import ModelType
from odock.providers.tables import ProviderType
from odock.web.api.pricing import PricingPer1M, per_1m_view, stored_pricing

ENTRY = {
    "name": "m-1",
    "providers": ["OPENAI"],
    "type": "chat",
    "capabilities": ["vision"],
    "context_length": 1000,
    "price_per_1m": {"input": 2, "output": 8, "cached_input": 0.5},
}


def _document(*entries: dict[str, object]) -> bytes:
    return orjson.dumps({"about": "test", "prices_as_of": "2025-10", "models": list(entries)})


def test_the_shipped_catalogue_covers_the_supported_providers() -> None:
    """Every provider type with a pricing page the gateway can call has chat models in the catalogue."""
    catalogue = model_catalogue()
    assert 40 <= len(catalogue.models) <= 80
    for provider in (
        ProviderType.OPENAI,
        ProviderType.AZURE_OPENAI,
        ProviderType.ANTHROPIC,
        ProviderType.GOOGLE,
        ProviderType.MISTRAL,
    ):
        chat = [
            m for m in catalogue.for_provider(provider) if m.type in (ModelType.CHAT, ModelType.REASONING)
        ]
        assert len(chat) >= 3, provider
    assert catalogue.find(ProviderType.AZURE_OPENAI, "gpt-4o") == catalogue.find(
        ProviderType.OPENAI, "gpt-4o"
    )
    assert catalogue.find(ProviderType.ANTHROPIC, "gpt-4o") is None


def test_every_entry_converts_to_a_valid_stored_pricing() -> None:
    """Each entry's per-1M body is accepted by the API's pricing model and reads back at the same prices."""
    for model in model_catalogue().models:
        stored = stored_pricing(PricingPer1M.model_validate(model.pricing_per_1m()))
        view = per_1m_view(stored)
        assert view is not None, model.name
        prices = model.price_per_1m
        assert Decimal(repr(view.input.text)) == prices.input, model.name
        assert Decimal(repr(view.output.text)) == (prices.output or 0), model.name


def test_a_cached_input_price_becomes_a_discount() -> None:
    """Cached input at a quarter of the input price is a 75 % discount; none is 0."""
    catalogue = parse_catalogue(
        _document(ENTRY, {**ENTRY, "name": "m-2", "price_per_1m": {"input": 1, "output": 1}})
    )
    assert catalogue.models[0].cached_input_discount_percent == 75
    assert catalogue.models[0].pricing_per_1m()["cached_input_discount_percent"] == 75
    assert "cached_input_discount_percent" not in catalogue.models[1].pricing_per_1m()


def test_prices_are_read_as_exact_decimals() -> None:
    """0.1 in the file is Decimal('0.1'), not the binary float's expansion."""
    catalogue = parse_catalogue(_document({**ENTRY, "price_per_1m": {"input": 0.1, "output": 0.3}}))
    assert catalogue.models[0].price_per_1m.input == Decimal("0.1")


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"type": "teleport"}, "type"),
        ({"providers": ["NOPE"]}, "providers"),
        ({"capabilities": ["flying"]}, "capabilities"),
        ({"price_per_1m": {"input": 1}}, "needs an output price"),
        ({"price_per_1m": {"input": 1, "output": 2, "cached_input": 3}}, "cached_input costs more"),
        ({"price_per_1m": {"input": -1, "output": 2}}, "input"),
        ({"context_length": 0}, "context_length"),
        ({"name": ""}, "name"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_broken_entry_is_refused(change: dict[str, object], complaint: str) -> None:
    """A malformed entry makes the whole catalogue fail to load, naming what is wrong."""
    with pytest.raises(CatalogueError, match=complaint):
        parse_catalogue(_document({**ENTRY, **change}))


def test_a_name_twice_for_one_provider_is_refused() -> None:
    """Two entries of one name for one provider type would make an import ambiguous."""
    with pytest.raises(CatalogueError, match="listed twice"):
        parse_catalogue(_document(ENTRY, ENTRY))
    with pytest.raises(CatalogueError, match="invalid"):
        parse_catalogue(b"{not json")
