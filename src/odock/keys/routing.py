"""The routing policy of an API key (spec §9.2): one document per model type, stored in ``policies``.

The document sits beside the governance envelope in ``ApiKey.policies`` under ``routing``; it is
parsed and checked here (422 naming the bad field) and stored in the spec's camelCase form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from odock.errors import UnprocessableEntity

ROUTING = "routing"
MODEL_TYPES = (
    "chat",
    "reasoning",
    "image",
    "embeddings",
    "audio",
    "moderation",
    "transcription",
    "tts",
    "ocr",
)
ModelName = Annotated[str, Field(min_length=1, max_length=200)]


class RoutingCandidate(BaseModel):
    """One model a routing policy may send a request to (an Odock model name of the same type)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model_name: ModelName = Field(alias="modelName")
    priority: int = Field(default=1, ge=0, le=1_000_000)
    weight: int = Field(default=1, ge=0, le=1_000_000)


Trigger = Literal["5xx", "timeout", "rate_limit", "any"]


def _default_triggers() -> list[Trigger]:
    return ["5xx", "timeout"]


class ModelTypeRouting(BaseModel):
    """The routing policy of one model type (spec §9.2)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    strategy: Literal["failover", "priority", "round_robin", "weighted"] = "failover"
    candidates: list[RoutingCandidate] = Field(default_factory=list, max_length=50)
    failover_on: list[Trigger] = Field(default_factory=_default_triggers, alias="failoverOn", max_length=4)
    max_retries: int = Field(default=0, ge=0, le=20, alias="maxRetries")
    retry_delay_ms: int = Field(default=0, ge=0, le=60_000, alias="retryDelayMs")
    native_fallback: dict[
        Literal["openai", "anthropic", "gemini", "vllm", "mistral"],
        Annotated[list[ModelName], Field(max_length=50)],
    ] = Field(default_factory=dict, alias="nativeFallback")

    def model_names(self) -> set[str]:
        """Every model name this policy mentions."""
        names = {c.model_name for c in self.candidates}
        for fallbacks in self.native_fallback.values():
            names.update(fallbacks)
        return names


def parse_routing(raw: object) -> dict[str, ModelTypeRouting]:
    """A stored or submitted routing document, keyed by model type; 422 naming the bad field."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise UnprocessableEntity("routing must be an object keyed by model type", param="routing")
    parsed: dict[str, ModelTypeRouting] = {}
    for model_type, policy in raw.items():
        if model_type not in MODEL_TYPES:
            raise UnprocessableEntity(
                f"unknown model type '{model_type}' (one of {', '.join(MODEL_TYPES)})", param=str(model_type)
            )
        try:
            parsed[model_type] = ModelTypeRouting.model_validate(policy)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join([model_type, *(str(p) for p in first["loc"])])
            raise UnprocessableEntity(f"{where}: {first['msg']}", param=where) from exc
    return parsed


def routing_json(routing: Mapping[str, ModelTypeRouting]) -> dict[str, Any]:
    """The stored (spec, camelCase) form of a routing document."""
    return {kind: policy.model_dump(by_alias=True) for kind, policy in routing.items()}
