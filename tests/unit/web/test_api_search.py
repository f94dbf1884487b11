"""The key search on PostgreSQL: ``q`` is served by the trigram indexes of migration 0006, not a scan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Select, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from odock.db.engine import session_factory
from odock.db.search import matches
from odock.ids import new_id
from odock.keys.tables import ApiKey
from odock.tenancy.tables import Organisation
from tests.support import services

pytestmark = pytest.mark.production

KEYS = 100_000
# md5 of the row number: random-looking names and previews; the searched one is row 54321's.
FILL = f"""
INSERT INTO api_keys (id, organisation_id, type, name, key_hash, key_preview, timezone, revoked,
                      rotation_count, policies, created_at, updated_at)
SELECT substr(md5('id' || n), 1, 26), :org, 'ORGANISATION', 'service ' || md5('name' || n),
       md5('hash' || n) || md5('more' || n), 'sk_' || substr(md5('preview' || n), 1, 4) || '…' ||
       substr(md5('tail' || n), 1, 4), 'UTC', false, 0, '{{}}',
       now() - n * interval '1 second', now()
FROM generate_series(1, {KEYS}) AS n
"""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated PostgreSQL database holding one organisation with 100,000 keys, analysed."""
    async with services.migrated_engine("postgresql", "odock_test_key_search", tmp_path) as engine:
        yield engine


async def _fill(engine: AsyncEngine) -> tuple[str, str]:
    """Store the keys; the organisation's id and a name fragment that matches exactly one key."""
    org = Organisation(id=new_id(), name=f"org-{new_id()}")
    async with session_factory(engine)() as session:
        session.add(org)
        await session.commit()
    async with engine.begin() as conn:
        await conn.execute(text(FILL), {"org": org.id})
        fragment = (await conn.execute(text("SELECT substr(md5('name' || 54321), 3, 10)"))).scalar_one()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE api_keys"))
    return org.id, str(fragment)


def _search(org: str, q: str) -> Select[tuple[ApiKey]]:
    """The key list's query for ``q`` (what ``GET …/apikeys?q=`` runs for a first page)."""
    return (
        select(ApiKey)
        .where(ApiKey.organisation_id == org)
        .where(or_(matches(q, ApiKey.name, ApiKey.key_preview), ApiKey.id == q))
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        .limit(51)
    )


async def _plan(engine: AsyncEngine, query: Select[tuple[ApiKey]]) -> str:
    sql = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql(f"EXPLAIN {sql}")).scalars()
        return "\n".join(rows)


async def test_key_search_reads_the_trigram_indexes(engine: AsyncEngine) -> None:
    """At 100,000 keys a substring search of name or preview uses the GIN trigram indexes, not a scan."""
    org, fragment = await _fill(engine)
    plan = await _plan(engine, _search(org, fragment.upper()))
    assert "ix_api_keys_name_trgm" in plan, plan
    assert "ix_api_keys_key_preview_trgm" in plan, plan
    assert "Seq Scan" not in plan, plan
    async with session_factory(engine)() as session:
        found = list((await session.execute(_search(org, fragment.upper()))).scalars())
    assert len(found) == 1
    assert fragment in found[0].name
