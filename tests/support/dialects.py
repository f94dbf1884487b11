"""A gateway in front of three fake vendors, and each official SDK pointed at it.

:func:`three_vendor_world` starts the fake OpenAI, Anthropic and Gemini servers and provisions one
organisation with a provider of each type, each serving the scripted model ``fake-echo``
(``tests/fakes/script.py``) under the Odock names ``echo-openai``, ``echo-anthropic`` and
``echo-gemini`` (plus an embeddings model on OpenAI and Gemini), and one key that may call them
all. The ``*_client`` functions return each SDK configured as its documentation tells a user to
point it at Odock.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import types as gtypes

from odock.providers.tables import ProviderType
from tests.conftest import Gateway
from tests.fakes.anthropic_server import FakeAnthropic, running_fake_anthropic
from tests.fakes.gemini_server import FakeGemini, running_fake_gemini
from tests.fakes.openai_server import FakeOpenAI, running_fake_openai

OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY = "sk-fake-upstream", "sk-ant-fake-upstream", "gm-fake-upstream"
UPSTREAMS = ("openai", "anthropic", "gemini")
PRICING = {"input": {"text_cost_per_1k_tokens": 0.002}, "output": {"text_cost_per_1k_tokens": 0.008}}


@dataclass
class World:
    """The gateway, the fakes behind it, and the organisation that calls them."""

    gateway: Gateway
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    organisation_id: str = ""
    key_id: str = ""
    secret: str = ""
    models: dict[str, str] = field(default_factory=dict)  # upstream → Odock model name

    def model(self, upstream: str) -> str:
        """The echo model served by ``upstream``."""
        return self.models[upstream]


@contextlib.contextmanager
def fake_vendors() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, FakeGemini]]:
    """The three fake vendors, each expecting its own upstream key."""
    with (
        running_fake_openai(api_key=OPENAI_KEY) as fake_openai,
        running_fake_anthropic(api_key=ANTHROPIC_KEY) as fake_anthropic,
        running_fake_gemini(api_key=GEMINI_KEY) as fake_gemini,
    ):
        yield fake_openai, fake_anthropic, fake_gemini


def three_vendor_world(
    gateway: Gateway,
    vendors: tuple[FakeOpenAI, FakeAnthropic, FakeGemini],
    *,
    strict_provider_family: bool = False,
    extra: dict[str, tuple[str, str]] | None = None,
) -> World:
    """Provision the organisation of the module docstring on ``gateway``; ``extra`` adds models
    as {Odock name: (upstream, the fake's model id)} (e.g. a fake's error models)."""
    fake_openai, fake_anthropic, fake_gemini = vendors
    world = World(gateway, fake_openai, fake_anthropic, fake_gemini)
    providers = {
        "openai": (ProviderType.OPENAI, fake_openai.base_url + "/v1", OPENAI_KEY),
        "anthropic": (ProviderType.ANTHROPIC, fake_anthropic.base_url, ANTHROPIC_KEY),
        "gemini": (ProviderType.GOOGLE, fake_gemini.base_url, GEMINI_KEY),
    }

    async def build() -> None:
        control = gateway.runtime.control
        org = await control.tenancy.create_organisation(
            "dialects-" + secrets.token_hex(4), strict_provider_family=strict_provider_family
        )
        names = []
        for upstream, (kind, base_url, secret) in providers.items():
            provider = await control.providers.create(org.id, upstream, kind, base_url=base_url, config={})
            key = await control.provider_keys.add(provider.id, "primary", secret=secret)
            for name, (served_by, slug) in (extra or {}).items():
                if served_by == upstream:
                    await control.models.create(
                        org.id,
                        name,
                        slug=slug,
                        provider_id=provider.id,
                        provider_key_id=key.id,
                        pricing=PRICING,
                    )
                    names.append(name)
            name = f"echo-{upstream}"
            await control.models.create(
                org.id,
                name,
                slug="fake-echo",
                provider_id=provider.id,
                provider_key_id=key.id,
                pricing=PRICING,
            )
            names.append(name)
            world.models[upstream] = name
            if upstream != "anthropic":
                embed = f"embed-{upstream}"
                await control.models.create(
                    org.id,
                    embed,
                    slug="fake-embed",
                    provider_id=provider.id,
                    provider_key_id=key.id,
                    type="embeddings",
                )
                names.append(embed)
        issued = await control.keys.create(org.id, "dialects key", models=names)
        world.organisation_id, world.key_id, world.secret = org.id, issued.key.id, issued.secret

    gateway.run(build())
    return world


def openai_client(world: World, **options: Any) -> openai.OpenAI:
    """The OpenAI SDK: ``base_url`` is the gateway's ``/v1``."""
    return openai.OpenAI(
        base_url=world.gateway.base_url + "/v1", api_key=world.secret, max_retries=0, **options
    )


def anthropic_client(world: World) -> anthropic.Anthropic:
    """The Anthropic SDK: ``base_url`` is the gateway's root (the SDK adds ``/v1``)."""
    return anthropic.Anthropic(base_url=world.gateway.base_url, api_key=world.secret, max_retries=0)


def gemini_client(world: World, api_version: str = "v1beta") -> genai.Client:
    """The google-genai SDK: ``http_options.base_url`` is the gateway's root."""
    options = gtypes.HttpOptions(
        base_url=world.gateway.base_url,
        api_version=api_version,
        retry_options=gtypes.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=world.secret, http_options=options)
