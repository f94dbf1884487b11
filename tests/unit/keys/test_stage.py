"""The Authenticate stage: which presented keys it admits, and the exact 401/403 for the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import LocalInvalidationBus
from odock.cache.shared import MemorySharedCache
from odock.db.engine import create_engine, session_factory
from odock.errors import (
    ApiKeyExpired,
    ApiKeyRevoked,
    DependencyUnavailable,
    OrganisationDisabled,
    Unauthorized,
)
from odock.keys.directory import KeyDirectory
from odock.keys.secrets import hash_secret
from odock.keys.stage import Authenticate, presented_secret
from tests.support.stages import Rows, copied_database, exchange, refusal


def directory(sessions: async_sessionmaker[AsyncSession]) -> KeyDirectory:
    """A key directory with in-process tiers over ``sessions``."""
    return KeyDirectory(
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


@pytest.fixture
def stage(sessions: async_sessionmaker[AsyncSession]) -> Authenticate:
    """The stage over a real key directory."""
    return Authenticate(directory(sessions))


def bearer(secret: str) -> dict[str, str]:
    """Headers presenting ``secret`` as a bearer token."""
    return {"authorization": f"Bearer {secret}"}


async def test_a_valid_bearer_key_sets_the_principal(stage: Authenticate, rows: Rows) -> None:
    """A known, live key presented as a bearer token becomes the exchange's principal."""
    org = await rows.organisation()
    issued = await rows.key(org)
    ex = exchange(headers=bearer(issued.secret))
    await stage.before(ex)
    assert ex.principal is not None
    assert (ex.principal.key_id, ex.principal.organisation_id) == (issued.id, org)


async def test_x_api_key_is_accepted_too(stage: Authenticate, rows: Rows) -> None:
    """The key may come in ``X-API-Key`` instead of ``Authorization``."""
    issued = await rows.key(await rows.organisation())
    ex = exchange(headers={"x-api-key": f"  {issued.secret} "})
    await stage.before(ex)
    assert ex.principal is not None
    assert ex.principal.key_id == issued.id


async def test_bearer_wins_over_x_api_key(stage: Authenticate, rows: Rows) -> None:
    """When both headers carry a key, the Authorization bearer token is the one authenticated."""
    org = await rows.organisation()
    first, second = await rows.key(org), await rows.key(org)
    ex = exchange(headers={**bearer(first.secret), "x-api-key": second.secret})
    await stage.before(ex)
    assert ex.principal is not None
    assert ex.principal.key_id == first.id


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Basic dXNlcjpwYXNz"}, {"authorization": "Bearer   "}, {"x-api-key": "  "}],
    ids=["none", "basic-scheme", "empty-bearer", "blank-x-api-key"],
)
async def test_no_presented_key_is_a_401_naming_the_headers(
    stage: Authenticate, headers: dict[str, str]
) -> None:
    """Without a usable key header the request is refused as unauthorized, saying how to send one."""
    error = await refusal(stage, exchange(headers=headers))
    assert type(error) is Unauthorized
    assert error.code == "unauthorized"
    assert error.http_status == 401
    assert "missing API key" in error.message


async def test_an_unknown_key_is_a_401(stage: Authenticate, rows: Rows) -> None:
    """A key that matches no stored hash is refused as invalid."""
    await rows.key(await rows.organisation())
    error = await refusal(stage, exchange(headers=bearer("sk-not-a-key")))
    assert type(error) is Unauthorized
    assert error.message == "invalid API key"


async def test_an_expired_key_is_refused(stage: Authenticate, rows: Rows) -> None:
    """A key whose expiry has passed gets 401 api_key_expired."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    issued = await rows.key(await rows.organisation(), expires_at=past)
    error = await refusal(stage, exchange(headers=bearer(issued.secret)))
    assert type(error) is ApiKeyExpired
    assert (error.code, error.http_status) == ("api_key_expired", 401)


async def test_a_key_expiring_later_is_admitted(stage: Authenticate, rows: Rows) -> None:
    """An expiry still in the future does not refuse the key."""
    issued = await rows.key(await rows.organisation(), expires_at=datetime.now(UTC) + timedelta(hours=1))
    ex = exchange(headers=bearer(issued.secret))
    await stage.before(ex)
    assert ex.principal is not None
    assert ex.principal.key_id == issued.id


async def test_a_revoked_key_is_refused_before_its_expiry_is_checked(stage: Authenticate, rows: Rows) -> None:
    """A revoked key gets 401 api_key_revoked, even when it has also expired."""
    past = datetime.now(UTC) - timedelta(days=1)
    issued = await rows.key(await rows.organisation(), revoked=True, expires_at=past)
    error = await refusal(stage, exchange(headers=bearer(issued.secret)))
    assert type(error) is ApiKeyRevoked
    assert (error.code, error.http_status) == ("api_key_revoked", 401)


async def test_a_disabled_organisations_key_is_forbidden(stage: Authenticate, rows: Rows) -> None:
    """A live key of a DISABLED organisation gets 403 organisation_disabled."""
    issued = await rows.key(await rows.organisation(status="DISABLED"))
    error = await refusal(stage, exchange(headers=bearer(issued.secret)))
    assert type(error) is OrganisationDisabled
    assert (error.code, error.http_status) == ("organisation_disabled", 403)


async def test_an_unreachable_key_store_is_a_503(tmp_path: Path) -> None:
    """When the database cannot be read, the request is refused 503, not treated as an unknown key."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'odock.db'}")
    try:
        error = await refusal(
            Authenticate(directory(session_factory(engine))), exchange(headers=bearer("sk-x"))
        )
    finally:
        await engine.dispose()
    assert type(error) is DependencyUnavailable
    assert (error.code, error.http_status) == ("dependency_unavailable", 503)


async def test_after_leaves_the_principal(stage: Authenticate, rows: Rows) -> None:
    """Authentication takes nothing, so ``after`` changes nothing."""
    issued = await rows.key(await rows.organisation())
    ex = exchange(headers=bearer(issued.secret))
    await stage.before(ex)
    found = ex.principal
    await stage.after(ex)
    assert ex.principal is found


def test_presented_secret_prefers_a_bearer_token() -> None:
    """The secret is the bearer token, else X-API-Key, each stripped; other schemes do not count."""
    assert presented_secret({"authorization": "bearer  abc ", "x-api-key": "xyz"}) == "abc"
    assert presented_secret({"authorization": "Token abc", "x-api-key": " xyz "}) == "xyz"
    assert presented_secret({"authorization": "Token abc"}) is None


async def test_an_acting_key_needs_no_secret_and_wins_over_a_presented_one(
    stage: Authenticate, rows: Rows
) -> None:
    """The key the control plane names (the playground) needs no headers and wins over a bearer."""
    org = await rows.organisation()
    acting, presented = await rows.key(org), await rows.key(org)
    ex = exchange(headers=bearer(presented.secret), acting_key_hash=hash_secret(acting.secret))
    await stage.before(ex)
    assert ex.principal is not None
    assert ex.principal.key_id == acting.id


async def test_an_acting_key_is_checked_like_a_presented_one(stage: Authenticate, rows: Rows) -> None:
    """A revoked acting key is refused with 401 api_key_revoked; an unknown one with 401 invalid key."""
    revoked = await rows.key(await rows.organisation(), revoked=True)
    error = await refusal(stage, exchange(acting_key_hash=hash_secret(revoked.secret)))
    assert (error.code, error.http_status) == ("api_key_revoked", 401)
    unknown = await refusal(stage, exchange(acting_key_hash=hash_secret("sk_not_a_key")))
    assert type(unknown) is Unauthorized
