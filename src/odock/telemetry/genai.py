"""OpenTelemetry's GenAI semantic-convention names, shared by the metrics and the spans.

No OpenTelemetry import here: the metrics use these names whether tracing is on or off.
"""

from __future__ import annotations

from odock.llm.upstream import Endpoint
from odock.providers.provider_types import spec_of

# gen_ai.provider.name of a provider type (the conventions' well-known values; else the type).
GEN_AI_PROVIDERS = {
    "OPENAI": "openai",
    "AZURE_OPENAI": "azure.ai.openai",
    "ANTHROPIC": "anthropic",
    "GOOGLE": "gcp.gemini",
    "MISTRAL": "mistral_ai",
}


def operation_name(endpoint: Endpoint, provider_type: str | None = None) -> str:
    """``gen_ai.operation.name`` of a call of ``endpoint`` (on ``provider_type``, when known):
    ``embeddings``, ``generate_content`` for a Gemini generation, ``chat`` for other generations
    (chat and Responses), else the endpoint's own name."""
    if endpoint is Endpoint.EMBEDDINGS:
        return "embeddings"
    if endpoint is Endpoint.CHAT and provider_type is not None:
        spec = spec_of(provider_type)
        if spec is not None and spec.transport == "gemini":
            return "generate_content"
    return "chat" if endpoint in (Endpoint.CHAT, Endpoint.RESPONSES) else endpoint.value


def provider_name(provider_type: str) -> str:
    """``gen_ai.provider.name`` of a provider type."""
    return GEN_AI_PROVIDERS.get(provider_type, provider_type.lower())
