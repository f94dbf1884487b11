"""``ODOCK_LOG_PROMPTS``: prompts reach the log only when it is on (issue #17, defect 7)."""

from __future__ import annotations

import logging
import secrets

import pytest

from odock.ids import new_request_id
from tests.conftest import Gateway, GatewayFactory, SettingsFactory, Tenant, provision
from tests.integration.conftest import only_usage_record, sdk

PROMPT_LOGGER = "odock.telemetry.prompts"
ANSWER = "tangerine umbrella"


def answering_tenant(gateway: Gateway) -> Tenant:
    """A mock tenant whose model answers ``ANSWER``."""
    return provision(gateway, provider_config={"text": ANSWER, "completion_tokens": 2})


def ask(gateway: Gateway, tenant: Tenant, prompt: str, *, stream: bool = False) -> str:
    """Send ``prompt``; return the request id once its usage is recorded."""
    request_id = new_request_id()
    client = sdk(gateway, tenant.secret)
    messages = [{"role": "user", "content": prompt}]
    reply = client.chat.completions.create(
        model=tenant.model, messages=messages, stream=stream, extra_headers={"x-request-id": request_id}
    )
    if stream:
        list(reply)  # type: ignore[arg-type]
    only_usage_record(gateway, request_id)  # every after() hook has run
    return request_id


def test_prompts_and_answers_are_never_logged_by_default(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With the setting off (the default), no log record at any level holds the prompt or the answer."""
    gateway = gateway_factory(make_settings())
    tenant = answering_tenant(gateway)  # provisioning itself may log the provider's config
    caplog.set_level(logging.DEBUG)
    prompt = "secret-prompt-" + secrets.token_hex(8)
    ask(gateway, tenant, prompt)
    ask(gateway, tenant, prompt, stream=True)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert prompt not in logged
    assert ANSWER not in logged
    assert not [record for record in caplog.records if record.name == PROMPT_LOGGER]


def test_prompts_and_unary_answers_are_logged_with_the_request_id_when_on(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With the setting on, the prompt and a unary answer are logged at INFO with the request id."""
    gateway = gateway_factory(make_settings(log_prompts=True))
    caplog.set_level(logging.INFO, logger=PROMPT_LOGGER)
    prompt = "logged-prompt-" + secrets.token_hex(8)
    request_id = ask(gateway, answering_tenant(gateway), prompt)
    lines = [r.getMessage() for r in caplog.records if r.name == PROMPT_LOGGER and r.levelno == logging.INFO]
    assert any(request_id in line and prompt in line for line in lines), lines
    assert any(request_id in line and ANSWER in line for line in lines), lines


def test_a_streamed_answer_is_not_logged_even_when_on(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With the setting on, a stream's prompt is logged but its answer is not."""
    gateway = gateway_factory(make_settings(log_prompts=True))
    caplog.set_level(logging.INFO, logger=PROMPT_LOGGER)
    prompt = "streamed-prompt-" + secrets.token_hex(8)
    request_id = ask(gateway, answering_tenant(gateway), prompt, stream=True)
    lines = [r.getMessage() for r in caplog.records if r.name == PROMPT_LOGGER]
    assert [line for line in lines if request_id in line and prompt in line]
    assert not [line for line in lines if ANSWER in line]
