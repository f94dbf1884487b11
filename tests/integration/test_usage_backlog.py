"""Backpressure: past `usage_backlog_max` records waiting to be stored, model calls get 503."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import GatewayFactory, SettingsFactory, provision
from tests.integration.conftest import assert_error_response, sdk

MESSAGES = [{"role": "user", "content": "hello"}]
BOUND = 5


def test_requests_are_shed_while_the_usage_backlog_is_past_its_bound(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory
) -> None:
    """With a writer storing nothing, calls past the bound get 503 usage_backlog; storing admits again."""
    # The writer wakes neither on its interval nor on a full batch: records only pile up.
    settings = make_settings(
        usage_backlog_max=BOUND, usage_flush_interval_seconds=3600, usage_batch_size=1000
    )
    gateway = gateway_factory(settings)
    tenant = provision(gateway)
    client = sdk(gateway, tenant.secret)
    for _ in range(BOUND + 1):  # the backlog is checked as a request arrives: BOUND + 1 get in
        client.chat.completions.create(model=tenant.model, messages=MESSAGES)  # type: ignore[arg-type]

    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=tenant.model, messages=MESSAGES)  # type: ignore[arg-type]
    assert_error_response(refused.value, status=503, code="usage_backlog")
    assert refused.value.response.headers["retry-after"] == "1"

    gateway.flush_usage()  # the writer catches up
    answer = client.chat.completions.create(model=tenant.model, messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
