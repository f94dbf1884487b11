"""The catalogue of provider types an organisation can activate, with their default base URLs.

Default base URLs are those of the activation catalogue (spec §3.5). A type is ``supported`` when
the gateway has an adapter for it (today: the OpenAI-compatible family and the built-in mock);
an unsupported type may still be activated and configured, but calls to its models are refused
with 400 ``provider_type_unsupported`` until an adapter exists. ``needs_key`` types refuse calls
without a provider key; the others (local servers, the mock) may run without one.
"""

from __future__ import annotations

from dataclasses import dataclass

from odock.providers.tables import ProviderType

# Provider types whose API speaks the OpenAI wire format (the OpenAI-compatible endpoints).
OPENAI_FAMILY = frozenset({"OPENAI", "AZURE_OPENAI", "VLLM", "CUSTOM", "MISTRAL", "MOCK"})
# Types that may run without a provider key (local servers and the mock).
KEYLESS_TYPES = frozenset({"VLLM", "CUSTOM", "MOCK"})


@dataclass(frozen=True)
class ProviderTypeInfo:
    """One entry of the activation catalogue."""

    type: ProviderType
    label: str
    default_base_url: str | None
    # The default is a template (``{resource}``) that must be replaced before use.
    base_url_required: bool = False

    @property
    def supported(self) -> bool:
        """Whether the gateway has an adapter that can call this type."""
        return self.type.value in OPENAI_FAMILY

    @property
    def needs_key(self) -> bool:
        """Whether calls need a provider key."""
        return self.type.value not in KEYLESS_TYPES


CATALOGUE: tuple[ProviderTypeInfo, ...] = (
    ProviderTypeInfo(ProviderType.OPENAI, "OpenAI", "https://api.openai.com/v1/"),
    ProviderTypeInfo(ProviderType.ANTHROPIC, "Anthropic", "https://api.anthropic.com"),
    ProviderTypeInfo(ProviderType.GOOGLE, "Google", "https://generativelanguage.googleapis.com"),
    ProviderTypeInfo(
        ProviderType.AZURE_OPENAI,
        "Azure OpenAI",
        "https://{resource}.openai.azure.com",
        base_url_required=True,
    ),
    ProviderTypeInfo(ProviderType.VLLM, "vLLM", "http://localhost:8000"),
    ProviderTypeInfo(ProviderType.MISTRAL, "Mistral", "https://api.mistral.ai/v1"),
    ProviderTypeInfo(ProviderType.HUGGINGFACE, "Hugging Face", "https://router.huggingface.co"),
    ProviderTypeInfo(ProviderType.CUSTOM, "Custom", "https://api.example.com"),
    ProviderTypeInfo(ProviderType.MOCK, "Mock (built in)", None),
)

_BY_TYPE = {info.type: info for info in CATALOGUE}


def describe(type: ProviderType) -> ProviderTypeInfo:
    """The catalogue entry of ``type`` (every :class:`ProviderType` has one)."""
    return _BY_TYPE[type]
