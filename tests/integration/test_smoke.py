"""The gateway answers a chat completion through the official OpenAI SDK."""

from __future__ import annotations

import openai

from tests.conftest import Gateway, Tenant


def test_chat_completion_through_sdk(gateway: Gateway, tenant: Tenant) -> None:
    """A granted key gets a mock answer with usage through the OpenAI SDK."""
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=tenant.secret, max_retries=0)
    reply = client.chat.completions.create(model=tenant.model, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 16
