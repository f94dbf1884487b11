"""The provider registry: every provider type, what its upstream speaks and how it is called.

One entry per type (spec §3.5) holds everything the gateway knows about it: the label and default
base URL of the activation catalogue, the *transport* that calls it (one adapter per upstream
API, built by the runtime), the *dialect* its generations are translated into when a client
speaks another, the client dialects forwarded to it unchanged, whether calls need a provider key
(local servers and the mock may run without one), and whether its servers accept fields outside
the OpenAI API by default. A type with no transport may still be activated and configured, but
calls to its models are refused with 400 ``provider_type_unsupported`` until an adapter exists.

Adding a provider type is adding its entry here (and, for a new upstream API, its adapter and
upstream codec: see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from odock.llm.codec import Dialect, UpstreamCodecs
from odock.providers.adapters.anthropic_codec import ANTHROPIC_UPSTREAM
from odock.providers.adapters.gemini_codec import GEMINI_EMBEDDINGS_UPSTREAM, GEMINI_UPSTREAM
from odock.providers.adapters.openai_codec import (
    OPENAI_CHAT_UPSTREAM,
    OPENAI_COMPATIBLE_CHAT_UPSTREAM,
    OPENAI_EMBEDDINGS_UPSTREAM,
)
from odock.providers.tables import ProviderType

_OPENAI_APIS = frozenset({Dialect.OPENAI_CHAT, Dialect.OPENAI_RESPONSES})
# OpenAI's own API (and Azure's, and vLLM's) take max_completion_tokens, which reasoning models
# require; other compatible servers know only max_tokens.
_OPENAI = UpstreamCodecs(OPENAI_CHAT_UPSTREAM, OPENAI_EMBEDDINGS_UPSTREAM)
_COMPATIBLE = UpstreamCodecs(OPENAI_COMPATIBLE_CHAT_UPSTREAM, OPENAI_EMBEDDINGS_UPSTREAM)


@dataclass(frozen=True)
class ProviderTypeInfo:
    """One provider type."""

    type: ProviderType
    label: str
    default_base_url: str | None
    # The default is a template (``{resource}``) that must be replaced before use.
    base_url_required: bool = False
    transport: str | None = None  # the adapter that calls it: "openai" | "anthropic" | "gemini" | "mock"
    codecs: UpstreamCodecs | None = None  # what a translated request is encoded with
    passthrough: frozenset[Dialect] = frozenset()  # client dialects sent on unchanged
    keyless: bool = False
    permissive: bool = False  # accepts request fields the OpenAI API does not define

    @property
    def supported(self) -> bool:
        """Whether the gateway has an adapter that can call this type."""
        return self.transport is not None

    @property
    def needs_key(self) -> bool:
        """Whether calls need a provider key."""
        return not self.keyless


def _openai_compatible(
    type: ProviderType,
    label: str,
    base_url: str | None,
    *,
    codecs: UpstreamCodecs = _COMPATIBLE,
    responses: bool = False,
    **extra: bool,
) -> ProviderTypeInfo:
    apis = _OPENAI_APIS if responses else frozenset({Dialect.OPENAI_CHAT})
    return ProviderTypeInfo(
        type, label, base_url, transport="openai", codecs=codecs, passthrough=apis, **extra
    )


CATALOGUE: tuple[ProviderTypeInfo, ...] = (
    _openai_compatible(
        ProviderType.OPENAI, "OpenAI", "https://api.openai.com/v1/", codecs=_OPENAI, responses=True
    ),
    ProviderTypeInfo(
        ProviderType.ANTHROPIC,
        "Anthropic",
        "https://api.anthropic.com",
        transport="anthropic",
        codecs=UpstreamCodecs(ANTHROPIC_UPSTREAM),
        passthrough=frozenset({Dialect.ANTHROPIC}),
    ),
    ProviderTypeInfo(
        ProviderType.GOOGLE,
        "Google",
        "https://generativelanguage.googleapis.com",
        transport="gemini",
        codecs=UpstreamCodecs(GEMINI_UPSTREAM, GEMINI_EMBEDDINGS_UPSTREAM),
        passthrough=frozenset({Dialect.GEMINI}),
    ),
    ProviderTypeInfo(
        ProviderType.AZURE_OPENAI,
        "Azure OpenAI",
        "https://{resource}.openai.azure.com",
        base_url_required=True,
        transport="openai",
        codecs=_OPENAI,
        passthrough=_OPENAI_APIS,
    ),
    _openai_compatible(
        ProviderType.VLLM, "vLLM", "http://localhost:8000", codecs=_OPENAI, keyless=True, permissive=True
    ),
    _openai_compatible(ProviderType.MISTRAL, "Mistral", "https://api.mistral.ai/v1"),
    ProviderTypeInfo(ProviderType.HUGGINGFACE, "Hugging Face", "https://router.huggingface.co"),
    _openai_compatible(
        ProviderType.CUSTOM, "Custom", "https://api.example.com", keyless=True, permissive=True
    ),
    ProviderTypeInfo(
        ProviderType.MOCK,
        "Mock (built in)",
        None,
        transport="mock",
        codecs=_COMPATIBLE,
        passthrough=frozenset({Dialect.OPENAI_CHAT}),
        keyless=True,
        permissive=True,
    ),
)

_BY_TYPE = {info.type: info for info in CATALOGUE}


_BY_NAME = {info.type.value: info for info in CATALOGUE}


def describe(type: ProviderType) -> ProviderTypeInfo:
    """The catalogue entry of ``type`` (every :class:`ProviderType` has one)."""
    return _BY_TYPE[type]


def spec_of(type_name: str) -> ProviderTypeInfo | None:
    """The entry of the type named ``type_name`` (as a provider row stores it), if any."""
    return _BY_NAME.get(type_name)
