"""Building blocks for unit tests of the request-path stages: exchanges, principals, models, rows.

A stage is driven with a real :class:`~odock.pipeline.exchange.Exchange`; what it reads from earlier stages
(the principal, the resolved model) is built here as the frozen snapshots the caches hand out,
and what it reads from the database is inserted as rows into a migrated SQLite file.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.specs import MeterSpec
from odock.db.engine import create_engine, session_factory
from odock.errors import OdockError
from odock.ids import ApiKeyId, ModelId, OrganisationId, new_id
from odock.keys.principal import GrantedModel, KeyPrincipal
from odock.keys.secrets import generate_secret, hash_secret, preview
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyType
from odock.llm.upstream import Endpoint
from odock.pipeline.exchange import Exchange, Timings
from odock.pipeline.runner import Stage
from odock.providers.catalog import ProviderKeyRef, ProviderTarget, ResolvedModel
from odock.providers.tables import Model, Provider, ProviderType
from odock.surfaces.registry import OPENAI_CHAT, OPENAI_EMBEDDINGS
from odock.tenancy.tables import Organisation

# $1 per 1K input tokens and $2 per 1K output tokens: one input token costs 1,000,000 nanos.
PRICING = {"input": {"text_cost_per_1k_tokens": 1.0}, "output": {"text_cost_per_1k_tokens": 2.0}}
INPUT_TOKEN_NANOS = 1_000_000
OUTPUT_TOKEN_NANOS = 2_000_000
CHAT_BODY = b'{"model":"m","messages":[{"role":"user","content":"hello"}]}'


@contextlib.asynccontextmanager
async def copied_database(template: Path, directory: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a copy of the migrated SQLite file ``template``, placed in ``directory``."""
    path = directory / "odock.db"
    shutil.copyfile(template, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def exchange(
    *,
    endpoint: Endpoint = Endpoint.CHAT,
    headers: dict[str, str] | None = None,
    client_ip: str | None = "10.0.0.1",
    body: bytes = CHAT_BODY,
    payload: dict[str, Any] | None = None,
    received_at: datetime | None = None,
    **fields: Any,
) -> Exchange:
    """A fresh exchange as the gateway builds it, with later stages' fields set as given."""
    ex = Exchange(
        request_id="req-" + new_id(),
        endpoint=endpoint,
        route="/v1/embeddings" if endpoint == Endpoint.EMBEDDINGS else "/v1/chat/completions",
        method="POST",
        headers=headers or {},
        client_ip=client_ip,
        body=body,
        received_at=received_at or datetime.now(UTC),
        timings=Timings(received=time.perf_counter()),
        surface=OPENAI_EMBEDDINGS if endpoint == Endpoint.EMBEDDINGS else OPENAI_CHAT,
        payload=payload
        if payload is not None
        else {"model": "m", "messages": [{"role": "user", "content": "hello"}]},
    )
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


def principal(**overrides: Any) -> KeyPrincipal:
    """A usable API key's principal (organisation key, no policies, granted model ``m1``)."""
    base = KeyPrincipal(
        key_id=ApiKeyId("key1"),
        key_hash="h" * 64,
        organisation_id=OrganisationId("org1"),
        team_id=None,
        user_id=None,
        type="ORGANISATION",
        name="test key",
        expires_at=None,
        revoked=False,
        granted=(GrantedModel(ModelId("m1"), "m"),),
    )
    return replace(base, **overrides)


def provider_target(**overrides: Any) -> ProviderTarget:
    """An enabled mock provider."""
    base = ProviderTarget(
        id="p1", type="MOCK", name="provider", base_url=None, timeout_ms=None, enabled=True, version="v1"
    )
    return replace(base, **overrides)


def resolved_model(**overrides: Any) -> ResolvedModel:
    """An enabled, priced chat model ``m`` (id ``m1``) served by the mock provider."""
    base = ResolvedModel(
        id="m1",
        organisation_id="org1",
        name="m",
        slug="upstream-m",
        type="chat",
        capabilities=(),
        enabled=True,
        pricing=PRICING,
        policies={},
        config={},
        provider=provider_target(),
        provider_key=None,
    )
    return replace(base, **overrides)


def plain_key(stored: str = "sk-upstream", *, revoked: bool = False) -> ProviderKeyRef:
    """A provider key stored in plaintext (a legacy row: the vault needs no decrypter for it)."""
    return ProviderKeyRef(id="pk1", stored=stored, revoked=revoked, version="v1")


def meter(kind: str = "budget", metric: str = "COST", limit: int = 1_000_000, **overrides: Any) -> MeterSpec:
    """A daily budget or quota on the organisation, open since 2020."""
    base = MeterSpec(
        kind=kind,
        id=f"{kind}-{metric.lower()}",
        name=f"{kind} {metric.lower()}",
        owner_type="ORG",
        owner_id="org1",
        metric=metric,
        limit=limit,
        period="DAILY",
        start_at=datetime(2020, 1, 1, tzinfo=UTC),
        timezone="UTC",
        end_at=None,
        rollover=False,
        thresholds=(),
        version=1,
    )
    return replace(base, **overrides)


@dataclass(frozen=True)
class Issued:
    """An API key row and the secret that presents it."""

    id: str
    secret: str


class Rows:
    """Inserts tenancy, provider, model and key rows straight through the ORM."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, *rows: Any) -> None:
        """Insert ``rows`` in one transaction."""
        async with self._sessions() as session:
            session.add_all(rows)
            await session.commit()

    async def organisation(self, *, status: str = "ACTIVE", policies: dict[str, Any] | None = None) -> str:
        """A new organisation's id."""
        org_id = new_id()
        await self.add(Organisation(id=org_id, name="org-" + org_id, status=status, policies=policies or {}))
        return org_id

    async def model(
        self,
        organisation_id: str,
        name: str,
        *,
        provider_type: ProviderType = ProviderType.MOCK,
        provider_enabled: bool = True,
        enabled: bool = True,
    ) -> str:
        """A new model (with a provider of its own); its id."""
        provider_id, model_id = new_id(), new_id()
        provider = Provider(
            id=provider_id, organisation_id=organisation_id, type=provider_type, name="p-" + provider_id,
            enabled=provider_enabled,
        )  # fmt: skip
        model = Model(
            id=model_id, organisation_id=organisation_id, name=name, slug="upstream-" + name,
            provider_id=provider_id, enabled=enabled,
        )  # fmt: skip
        await self.add(provider)
        await self.add(model)
        return model_id

    async def key(
        self,
        organisation_id: str,
        *,
        grants: tuple[str, ...] = (),
        expires_at: datetime | None = None,
        revoked: bool = False,
    ) -> Issued:
        """A new API key granted ``grants`` (model ids)."""
        secret, key_id = generate_secret(), new_id()
        key = ApiKey(
            id=key_id,
            organisation_id=organisation_id,
            type=ApiKeyType.ORGANISATION,
            name="key",
            key_hash=hash_secret(secret),
            key_preview=preview(secret),
            expires_at=expires_at,
            revoked=revoked,
        )
        await self.add(key)
        await self.add(*(ApiKeyModelAccess(api_key_id=key_id, model_id=m) for m in grants))
        return Issued(key_id, secret)


async def refusal(stage: Stage, ex: Exchange) -> OdockError:
    """The error ``stage.before`` refuses ``ex`` with (fails the test when it admits)."""
    try:
        await stage.before(ex)
    except OdockError as error:
        return error
    raise AssertionError(f"{stage.name} admitted a request it should refuse")
