"""The model catalogue shipped with the gateway: models its provider types serve, with list prices.

``model_catalogue.json`` (package data, next to this module) holds one entry per model: its name,
the provider types that serve it (Azure OpenAI bills at OpenAI's rates), its type and
capabilities, context length, and list prices in USD per 1M tokens: input, output, and cached
input where the provider discounts it. The file is read and validated once per process
(:func:`model_catalogue`); a broken file fails loudly at the first use, and a unit test reads it.

Prices are decimals, never floats; :meth:`CatalogueModel.pricing_per_1m` turns an entry into the
API's per-1M pricing body (a cached-input *price* becomes the stored *discount percent*).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from odock.providers.model_service import Capability, ModelType
from odock.providers.tables import ProviderType

CATALOGUE_FILE = "model_catalogue.json"
_HUNDRED = Decimal(100)
_PERCENT_STEP = Decimal("0.000001")  # the API keeps a discount to 6 decimals

Price = Annotated[Decimal, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
_NO_ANSWER_TYPES = frozenset({ModelType.EMBEDDINGS, ModelType.MODERATION})


class CatalogueError(Exception):
    """The shipped model catalogue is malformed."""


class Prices(BaseModel):
    """List prices in USD per 1M tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Price
    output: Price | None = None
    cached_input: Price | None = None

    @model_validator(mode="after")
    def _cached_is_a_discount(self) -> Self:
        if self.cached_input is not None and self.cached_input > self.input:
            raise ValueError("cached_input costs more than input")
        return self


class CatalogueModel(BaseModel):
    """One model of the catalogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    providers: tuple[ProviderType, ...] = Field(min_length=1)
    type: ModelType
    capabilities: tuple[Capability, ...] = ()
    context_length: int = Field(gt=0, le=100_000_000)
    price_per_1m: Prices

    @model_validator(mode="after")
    def _priced_for_its_type(self) -> Self:
        if self.type not in _NO_ANSWER_TYPES and self.price_per_1m.output is None:
            raise ValueError(f"a {self.type.value} model needs an output price")
        return self

    @property
    def cached_input_discount_percent(self) -> Decimal:
        """The cached-input price as a discount on the input price (0 when there is none)."""
        prices = self.price_per_1m
        if prices.cached_input is None or not prices.input:
            return Decimal(0)
        saved = (prices.input - prices.cached_input) / prices.input * _HUNDRED
        return saved.quantize(_PERCENT_STEP, rounding=ROUND_HALF_EVEN).normalize()

    def pricing_per_1m(self) -> dict[str, Any]:
        """The API's pricing body in USD per 1M tokens (``"unit": "per_1m_tokens"``)."""
        prices = self.price_per_1m
        body: dict[str, Any] = {"unit": "per_1m_tokens", "input": {"text": prices.input}}
        if prices.output is not None:
            body["output"] = {"text": prices.output}
        if self.type is ModelType.EMBEDDINGS:
            body["embeddings"] = prices.input
        discount = self.cached_input_discount_percent
        if discount:
            body["cached_input_discount_percent"] = discount
        return body

    def served_by(self, provider_type: ProviderType) -> bool:
        """Whether a provider of ``provider_type`` serves this model."""
        return provider_type in self.providers


class ModelCatalogue(BaseModel):
    """The whole catalogue: the date its prices were read, and its models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str
    prices_as_of: str
    models: tuple[CatalogueModel, ...]

    @model_validator(mode="after")
    def _names_unique_per_provider(self) -> Self:
        seen: set[tuple[ProviderType, str]] = set()
        for model in self.models:
            for provider in model.providers:
                if (provider, model.name) in seen:
                    raise ValueError(f"{model.name} is listed twice for {provider.value}")
                seen.add((provider, model.name))
        return self

    def for_provider(self, provider_type: ProviderType | None) -> list[CatalogueModel]:
        """The models ``provider_type`` serves (every model when ``None``), in catalogue order."""
        return [m for m in self.models if provider_type is None or m.served_by(provider_type)]

    def find(self, provider_type: ProviderType, name: str) -> CatalogueModel | None:
        """The entry called ``name`` that ``provider_type`` serves, if any."""
        return next((m for m in self.for_provider(provider_type) if m.name == name), None)

    @property
    def provider_types(self) -> list[ProviderType]:
        """The provider types the catalogue has models for, in enum order."""
        listed = {p for m in self.models for p in m.providers}
        return [t for t in ProviderType if t in listed]


def parse_catalogue(raw: bytes) -> ModelCatalogue:
    """Validate a catalogue document; :class:`CatalogueError` names what is wrong."""
    try:
        # Prices are read as decimals: a JSON number's digits are kept exactly.
        data = orjson.loads(raw)
        return ModelCatalogue.model_validate(_decimals(data))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise CatalogueError(f"the model catalogue is invalid: {exc}") from exc


def _decimals(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _decimals(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_decimals(v) for v in tree]
    if isinstance(tree, float):
        return Decimal(repr(tree))  # the shortest decimal that reads back as this float: the text
    return tree


@lru_cache(maxsize=1)
def model_catalogue() -> ModelCatalogue:
    """The shipped catalogue (read and validated once per process)."""
    raw = resources.files("odock.providers").joinpath(CATALOGUE_FILE).read_bytes()
    return parse_catalogue(raw)
