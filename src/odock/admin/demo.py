"""First-start demo: on an empty database, an organisation, the mock provider and a ready key.

So that a newcomer can call the gateway at once without any provider credentials.
"""

from __future__ import annotations

import logging

from odock.admin.control import ControlPlane
from odock.keys.service import IssuedKey
from odock.providers.tables import ProviderType

log = logging.getLogger("odock.demo")

DEMO_ORGANISATION = "demo"
DEMO_MODEL = "mock-gpt"
# $0.50 per 1M input tokens, $1.50 per 1M output tokens, stored per 1K tokens.
DEMO_PRICING = {
    "input": {"text_cost_per_1k_tokens": 0.0005},
    "output": {"text_cost_per_1k_tokens": 0.0015},
}


async def seed_demo(control: ControlPlane) -> IssuedKey | None:
    """Create the demo setup when no organisation exists; return the issued key (else None)."""
    if await control.tenancy.list_organisations():
        return None
    org = await control.tenancy.create_organisation(DEMO_ORGANISATION)
    provider = await control.providers.create(
        org.id, "mock", ProviderType.MOCK, config={"completion_tokens": 12}
    )
    await control.models.create(
        org.id,
        DEMO_MODEL,
        slug="mock-1",
        provider_id=provider.id,
        pricing=DEMO_PRICING,
        capabilities=["tool_use"],
    )
    return await control.keys.create(org.id, "demo key", models=[DEMO_MODEL])


def welcome_lines(welcome_url: str | None) -> str:
    """The first-start sign-in link's lines of the banner (empty without one)."""
    if welcome_url is None:
        return ""
    return (
        "  Open the console and choose the first admin's password (this link works once):\n"
        f"    {welcome_url}\n\n"
    )


def demo_banner(issued: IssuedKey, base_url: str, welcome_url: str | None = None) -> str:
    """What to print so the newcomer can try the gateway (and open the console) right away."""
    return (
        "\n"
        + welcome_lines(welcome_url)
        + "  Odock created a demo organisation with a mock model.\n"
        + f"  Demo API key (shown once): {issued.secret}\n\n"
        "  Try it:\n"
        f"    curl -s {base_url}/v1/chat/completions \\\n"
        f"      -H 'Authorization: Bearer {issued.secret}' -H 'Content-Type: application/json' \\\n"
        f'      -d \'{{"model": "{DEMO_MODEL}", "messages": [{{"role": "user", "content": "Hello"}}]}}\'\n'
    )
