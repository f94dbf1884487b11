"""An endpoint serves only the model types it can (issue #17, defect 8).

A chat model called on ``/v1/embeddings``, or an embeddings model on ``/v1/chat/completions``, is
a 400 ``model_type_mismatch`` naming ``model``, refused before anything is reserved or sent.
"""

from __future__ import annotations

import openai
import pytest

from odock.budgets.tables import QuotaMetric
from odock.budgets.windows import Period
from tests.conftest import Gateway, Tenant
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.conftest import MESSAGES, assert_error_response, openai_tenant, sdk


def with_request_quota(gateway: Gateway, tenant: Tenant) -> None:
    """A daily REQUESTS quota on the tenant's organisation (so a reservation would show)."""
    control = gateway.runtime.budgets
    gateway.run(
        control.create_quota(
            tenant.organisation_id, "calls", metric=QuotaMetric.REQUESTS, limit=100, period=Period.DAILY
        )
    )


def quota_state(gateway: Gateway, tenant: Tenant) -> tuple[int, int]:
    """The (reserved, used) of the tenant's only quota, from ``/v1/keys/self``."""
    standing = sdk(gateway, tenant.secret).get("/keys/self", cast_to=object)
    assert isinstance(standing, dict)
    (quota,) = standing["quotas"]
    return quota["reserved"], quota["used"]


def test_a_chat_model_on_embeddings_is_refused_before_anything_is_reserved_or_sent(
    openai_gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """A chat model on /v1/embeddings is a 400 model_type_mismatch; no upstream call, nothing reserved."""
    tenant = openai_tenant(openai_gateway, fake_openai, model_type="chat")
    with_request_quota(openai_gateway, tenant)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(openai_gateway, tenant.secret).embeddings.create(model=tenant.model, input="hello")
    error = assert_error_response(caught.value, status=400, code="model_type_mismatch")
    assert error["param"] == "model"
    assert "/v1/embeddings" in error["message"]
    assert fake_openai.requests == []
    assert quota_state(openai_gateway, tenant) == (0, 0)


def test_an_embeddings_model_on_chat_completions_is_refused(
    openai_gateway: Gateway, fake_openai: FakeOpenAI
) -> None:
    """An embeddings model on /v1/chat/completions is a 400 model_type_mismatch; no upstream call."""
    tenant = openai_tenant(openai_gateway, fake_openai, model_type="embeddings")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(openai_gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)
    assert assert_error_response(caught.value, status=400, code="model_type_mismatch")["param"] == "model"
    assert fake_openai.requests == []


@pytest.mark.parametrize(("model_type", "embeddings"), [("reasoning", False), ("embeddings", True)])
def test_each_endpoint_serves_its_own_model_types(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, model_type: str, embeddings: bool
) -> None:
    """Reasoning models are served on chat completions and embeddings models on embeddings."""
    tenant = openai_tenant(openai_gateway, fake_openai, model_type=model_type)
    client = sdk(openai_gateway, tenant.secret)
    if embeddings:
        assert client.embeddings.create(model=tenant.model, input="hello").data
    else:
        assert client.chat.completions.create(model=tenant.model, messages=MESSAGES).choices
    assert len(fake_openai.requests) == 1
