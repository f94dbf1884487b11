"""The provider stages: ResolveModel's lookup and grant check, ResolveProvider's checks and the
upstream call it builds, and CallUpstream's unary answer, open stream and closing of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import LocalInvalidationBus
from odock.cache.shared import MemorySharedCache
from odock.db.engine import create_engine, session_factory
from odock.errors import (
    InvalidRequestBody,
    ModelDisabled,
    ModelLookupUnavailable,
    ModelNotAllowed,
    ModelNotFound,
    OdockError,
    ProviderApiKeyNotConfigured,
    ProviderApiKeyRevoked,
    ProviderDisabled,
    ProviderNotAllowed,
    ProviderNotConfigured,
    ProviderTypeUnsupported,
    UpstreamTimeout,
)
from odock.ids import ModelId, OrganisationId
from odock.keys.principal import GrantedModel
from odock.llm.translate import Translation
from odock.llm.upstream import Endpoint, StreamChunk, UnaryResult
from odock.pipeline.exchange import Exchange
from odock.providers.adapters.anthropic_codec import DEFAULT_MAX_TOKENS
from odock.providers.adapters.base import Adapter, Timeouts, UpstreamCall
from odock.providers.adapters.mock import MockAdapter
from odock.providers.catalog import ModelCatalog
from odock.providers.stage import (
    CallUpstream,
    ResolveModel,
    ResolveProvider,
)
from odock.providers.vault import ProviderKeyVault
from odock.surfaces.registry import OPENAI_EMBEDDINGS
from tests.support.stages import (
    Rows,
    copied_database,
    exchange,
    plain_key,
    principal,
    provider_target,
    refusal,
    resolved_model,
)

DEFAULTS = Timeouts(connect=1.0, first_byte=2.0, idle=3.0, total=42.0)


def catalog(sessions: async_sessionmaker[AsyncSession]) -> ModelCatalog:
    """A model catalog with in-process tiers over ``sessions``."""
    return ModelCatalog(
        sessions, MemorySharedCache(), LocalInvalidationBus(), ttl=60, negative_ttl=60, max_entries=100
    )


@pytest.fixture
async def sessions(migrated_sqlite: Path, tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a migrated SQLite file of the test's own."""
    async with copied_database(migrated_sqlite, tmp_path) as made:
        yield made


@pytest.fixture
def rows(sessions: async_sessionmaker[AsyncSession]) -> Rows:
    """Row inserts on the test's database."""
    return Rows(sessions)


def caller(organisation_id: str, *granted: tuple[str, str]) -> Exchange:
    """An authenticated chat exchange for model ``m`` whose key holds the given (id, name) grants."""
    key = principal(
        organisation_id=OrganisationId(organisation_id),
        granted=tuple(GrantedModel(ModelId(mid), name) for mid, name in granted),
    )
    return exchange(principal=key)


# --- ResolveModel ----------------------------------------------------------------------------


async def test_a_granted_model_is_resolved(sessions: async_sessionmaker[AsyncSession], rows: Rows) -> None:
    """The named model of the caller's organisation, granted to the key, becomes ``ex.model``."""
    org = await rows.organisation()
    model_id = await rows.model(org, "m")
    ex = caller(org, (model_id, "m"))
    await ResolveModel(catalog(sessions)).before(ex)
    assert ex.model is not None
    assert (ex.model.id, ex.model.slug, ex.model.provider is not None) == (model_id, "upstream-m", True)


async def test_an_unknown_model_is_a_400(sessions: async_sessionmaker[AsyncSession], rows: Rows) -> None:
    """A name no model of the organisation has is 400 model_not_found on the ``model`` field."""
    org = await rows.organisation()
    error = await refusal(ResolveModel(catalog(sessions)), caller(org))
    assert type(error) is ModelNotFound
    assert (error.http_status, error.param) == (400, "model")


async def test_another_organisations_model_is_not_found(
    sessions: async_sessionmaker[AsyncSession], rows: Rows
) -> None:
    """A model of the same name in another organisation does not resolve, even with its id granted."""
    mine, theirs = await rows.organisation(), await rows.organisation()
    their_model = await rows.model(theirs, "m")
    error = await refusal(ResolveModel(catalog(sessions)), caller(mine, (their_model, "m")))
    assert type(error) is ModelNotFound


async def test_a_model_not_granted_is_forbidden(
    sessions: async_sessionmaker[AsyncSession], rows: Rows
) -> None:
    """A model the key holds no grant for is 403 model_not_allowed."""
    org = await rows.organisation()
    await rows.model(org, "m")
    other = await rows.model(org, "other")
    error = await refusal(ResolveModel(catalog(sessions)), caller(org, (other, "other")))
    assert type(error) is ModelNotAllowed
    assert (error.http_status, error.param) == (403, "model")


async def test_a_disabled_model_is_forbidden(sessions: async_sessionmaker[AsyncSession], rows: Rows) -> None:
    """A granted but disabled model is 403 model_disabled."""
    org = await rows.organisation()
    model_id = await rows.model(org, "m", enabled=False)
    error = await refusal(ResolveModel(catalog(sessions)), caller(org, (model_id, "m")))
    assert type(error) is ModelDisabled


async def test_the_grant_is_checked_before_the_model_state(
    sessions: async_sessionmaker[AsyncSession], rows: Rows
) -> None:
    """A key without a grant learns nothing about the model: not allowed, not disabled."""
    org = await rows.organisation()
    await rows.model(org, "m", enabled=False)
    error = await refusal(ResolveModel(catalog(sessions)), caller(org))
    assert type(error) is ModelNotAllowed


async def test_an_unreachable_catalog_is_a_503(tmp_path: Path) -> None:
    """When the model cannot be looked up, the request is refused 503 model_lookup_unavailable."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'odock.db'}")
    try:
        error = await refusal(ResolveModel(catalog(session_factory(engine))), caller("org1"))
    finally:
        await engine.dispose()
    assert type(error) is ModelLookupUnavailable
    assert error.http_status == 503


# --- ResolveProvider -------------------------------------------------------------------------


def resolver(adapters: dict[str, Adapter] | None = None) -> ResolveProvider:
    """ResolveProvider with the mock adapter for MOCK and OPENAI and a vault without a key pair."""
    mock = MockAdapter()
    chosen: dict[str, Adapter] = {"MOCK": mock, "OPENAI": mock} if adapters is None else adapters
    return ResolveProvider(chosen, ProviderKeyVault(None, ttl=60), DEFAULTS)


def resolved(
    *,
    stream: bool = False,
    extra_fields: tuple[str, ...] = (),
    payload: dict[str, Any] | None = None,
    **model: Any,
) -> Exchange:
    """An exchange past ResolveModel: the default model with ``model`` fields replaced."""
    return exchange(
        principal=principal(),
        model=resolved_model(**model),
        stream=stream,
        extra_fields=extra_fields,
        payload=payload,
    )


async def refused_by_provider(ex: Exchange, stage: ResolveProvider | None = None) -> OdockError:
    """The error ResolveProvider refuses ``ex`` with."""
    return await refusal(stage or resolver(), ex)


async def test_the_upstream_call_carries_the_slug_and_the_default_timeouts() -> None:
    """The call names the model by its slug and keeps the other fields; ``ex.payload`` is left alone."""
    ex = resolved()
    await resolver().before(ex)
    assert ex.call is not None
    assert ex.adapter is not None
    assert ex.call.payload["model"] == "upstream-m"
    assert ex.call.payload["messages"] == ex.payload["messages"]
    assert ex.payload["model"] == "m"
    assert (ex.call.api_key, ex.call.timeouts, ex.call.request_id) == (None, DEFAULTS, ex.request_id)


async def test_the_providers_own_timeout_wins() -> None:
    """A provider's ``timeout_ms`` replaces the default total; the other bounds stay the defaults."""
    ex = resolved(provider=provider_target(timeout_ms=1500))
    await resolver().before(ex)
    assert ex.call is not None
    assert ex.call.timeouts == Timeouts(connect=1.0, first_byte=2.0, idle=3.0, total=1.5)


async def test_a_stream_always_asks_for_usage() -> None:
    """A streamed call asks the upstream for usage, keeping the client's other stream options."""
    payload = {"model": "m", "messages": [], "stream": True, "stream_options": {"other": 1}}
    ex = resolved(stream=True, payload=payload)
    await resolver().before(ex)
    assert ex.call is not None
    assert ex.call.payload["stream_options"] == {"other": 1, "include_usage": True}
    assert payload["stream_options"] == {"other": 1}


async def test_a_model_without_provider_is_a_400() -> None:
    """A model with no provider attached is 400 provider_not_configured."""
    error = await refused_by_provider(resolved(provider=None))
    assert type(error) is ProviderNotConfigured


async def test_a_disabled_provider_is_forbidden() -> None:
    """A disabled provider is 403 provider_disabled, whatever its type."""
    error = await refused_by_provider(resolved(provider=provider_target(enabled=False, type="ANTHROPIC")))
    assert type(error) is ProviderDisabled
    assert (error.code, error.http_status) == ("provider_disabled", 403)


async def test_a_chat_request_to_an_anthropic_model_is_translated() -> None:
    """An OpenAI chat body for an Anthropic model becomes an Anthropic Messages body (with the
    output limit Anthropic requires) and the exchange keeps the translation for the answer."""
    ex = resolved(provider=provider_target(type="ANTHROPIC"), provider_key=plain_key(), slug="claude-x")
    await resolver({"ANTHROPIC": MockAdapter()}).before(ex)
    assert isinstance(ex.translation, Translation)
    assert ex.call is not None
    assert (ex.call.endpoint, ex.call.model) == (Endpoint.CHAT, "claude-x")
    assert ex.call.payload["model"] == "claude-x"
    assert ex.call.payload["max_tokens"] == DEFAULT_MAX_TOKENS
    assert ex.call.payload["messages"][0]["role"] == "user"
    assert "stream_options" not in ex.call.payload


async def test_embeddings_to_a_provider_without_an_embeddings_api_are_refused() -> None:
    """An embeddings request cannot reach a provider type with no embeddings API (Anthropic)."""
    ex = resolved(provider=provider_target(type="ANTHROPIC"), provider_key=plain_key())
    ex.endpoint, ex.surface, ex.payload = Endpoint.EMBEDDINGS, OPENAI_EMBEDDINGS, {"model": "m", "input": "x"}
    error = await refused_by_provider(ex, resolver({"ANTHROPIC": MockAdapter()}))
    assert type(error) is ProviderNotAllowed


async def test_a_provider_type_without_adapter_is_unsupported() -> None:
    """An OpenAI-family type with no adapter loaded is 400 provider_type_unsupported."""
    error = await refused_by_provider(resolved(provider=provider_target(type="MISTRAL")))
    assert type(error) is ProviderTypeUnsupported


async def test_a_revoked_provider_key_is_forbidden() -> None:
    """A model whose provider key is revoked is 403 provider_api_key_revoked."""
    error = await refused_by_provider(resolved(provider_key=plain_key(revoked=True)))
    assert type(error) is ProviderApiKeyRevoked


async def test_a_keyed_provider_type_without_key_is_a_400() -> None:
    """An OPENAI provider with no key attached is 400 provider_api_key_not_configured; MOCK needs none."""
    error = await refused_by_provider(resolved(provider=provider_target(type="OPENAI")))
    assert type(error) is ProviderApiKeyNotConfigured


async def test_the_provider_key_is_revealed_into_the_call() -> None:
    """The provider key's plaintext goes into the call, never onto the exchange's payload."""
    ex = resolved(provider=provider_target(type="OPENAI"), provider_key=plain_key("sk-upstream"))
    await resolver().before(ex)
    assert ex.call is not None
    assert ex.call.api_key == "sk-upstream"
    assert "sk-upstream" not in repr(ex.payload)


async def test_unknown_fields_are_refused_for_a_strict_provider() -> None:
    """An OPENAI provider refuses a field the client added unless its config allows it (400 naming it)."""
    key = plain_key()
    error = await refused_by_provider(
        resolved(provider=provider_target(type="OPENAI"), provider_key=key, extra_fields=("top_k",))
    )
    assert type(error) is InvalidRequestBody
    assert error.param == "top_k"


@pytest.mark.parametrize(
    ("provider_type", "allowed"),
    [("OPENAI", ["top_k"]), ("OPENAI", "*"), ("MOCK", None)],
    ids=["listed", "wildcard", "permissive-type"],
)
async def test_unknown_fields_pass_where_allowed(provider_type: str, allowed: object) -> None:
    """A listed field, a ``*`` allowance, or a permissive provider type lets the field through."""
    config = {} if allowed is None else {"extra_body_fields": allowed}
    ex = resolved(
        provider=provider_target(type=provider_type, config=config),
        provider_key=plain_key(),
        extra_fields=("top_k",),
    )
    await resolver().before(ex)
    assert ex.call is not None


async def test_resolving_the_provider_takes_nothing() -> None:
    """ResolveProvider's ``after`` undoes nothing: the call it built stays for the record."""
    ex = resolved()
    stage = resolver()
    await stage.before(ex)
    call = ex.call
    await stage.after(ex)
    assert ex.call is call


# --- CallUpstream ----------------------------------------------------------------------------


async def called(ex: Exchange) -> Exchange:
    """``ex`` resolved and sent through CallUpstream's ``before``."""
    await resolver().before(ex)
    await CallUpstream().before(ex)
    return ex


async def test_a_unary_call_keeps_the_answer_and_its_usage() -> None:
    """A non-streamed call stores the answer, its usage and provider request id, and both timings."""
    ex = await called(resolved())
    assert ex.unary is not None
    assert ex.usage is ex.unary.usage
    assert ex.usage is not None
    assert ex.usage.completion_tokens == 16
    assert ex.provider_request_id == "mock-" + ex.request_id
    assert ex.timings.upstream_started is not None
    assert ex.timings.upstream_answered is not None
    assert ex.timings.upstream_started <= ex.timings.upstream_answered


async def test_a_streamed_call_opens_the_stream_and_leaves_usage_to_the_relay() -> None:
    """A streamed call opens the upstream stream; usage is unknown until the relay has read it."""
    ex = await called(resolved(stream=True, payload={"model": "m", "messages": [], "stream": True}))
    assert ex.upstream_stream is not None
    assert ex.unary is None
    assert ex.usage is None
    assert ex.provider_request_id == "mock-" + ex.request_id


class _Stream:
    """An upstream stream that only records whether it was closed."""

    provider_request_id: str | None = None

    def __init__(self) -> None:
        self.closed = 0

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._nothing()

    async def _nothing(self) -> AsyncIterator[StreamChunk]:
        for chunk in ():
            yield chunk

    async def aclose(self) -> None:
        self.closed += 1


class _Upstream:
    """An adapter that opens ``stream`` or fails with ``error``."""

    def __init__(self, stream: _Stream | None = None, error: OdockError | None = None) -> None:
        self._stream = stream
        self._error = error

    async def complete(self, call: UpstreamCall) -> UnaryResult:
        assert self._error is not None
        raise self._error

    async def stream(self, call: UpstreamCall) -> _Stream:
        if self._error is not None:
            raise self._error
        assert self._stream is not None
        return self._stream


async def test_after_closes_an_open_stream() -> None:
    """CallUpstream's ``after`` closes the upstream stream it opened (on every exit path)."""
    stream = _Stream()
    ex = resolved(stream=True)
    await resolver({"MOCK": _Upstream(stream)}).before(ex)
    stage = CallUpstream()
    await stage.before(ex)
    await stage.after(ex)
    assert stream.closed == 1


async def test_a_failed_call_is_marked_started_but_not_answered() -> None:
    """An upstream error propagates as is; the request counts as sent upstream (so budgets settle)."""
    ex = resolved()
    await resolver({"MOCK": _Upstream(error=UpstreamTimeout())}).before(ex)
    stage = CallUpstream()
    error = await refusal(stage, ex)
    assert type(error) is UpstreamTimeout
    assert ex.timings.upstream_started is not None
    assert ex.timings.upstream_answered is None
    await stage.after(ex)  # nothing was opened: nothing to close
