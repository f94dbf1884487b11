"""Production only: two ``odock serve`` processes sharing PostgreSQL and Redis hold one limit between them.

A storm of N ≫ K requests is spread round-robin over both processes; the shared counters must
admit exactly K in total, every admission must settle, and the ledger must agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from odock.budgets.tables import Budget, Quota, QuotaMetric
from odock.budgets.windows import Period
from odock.settings import Settings
from odock.usage.tables import UsageRecord
from tests.conftest import BACKEND, SettingsFactory
from tests.support import services
from tests.support.governance import (
    REQUEST_COST,
    REQUEST_TOKENS,
    Ledger,
    cost_of,
    error_of,
    fire,
    http_client,
    key_self,
    meter_entry,
    operator,
    prove_storm,
    serve_gateways,
    tokens_of,
)

FIRED = 120
FITS = 10


@pytest.fixture(autouse=True)
def production_only() -> None:
    """These proofs need the shared production stores."""
    if BACKEND != "production":
        pytest.skip("two gateway processes share state only on the production backend")
    services.require_services()


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Settings of one deployment: the run's database and a fresh Redis prefix (made outside any loop)."""
    return make_settings()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that can hold a whole storm's connections at once."""
    async with http_client(FIRED + 10) as http:
        yield http


def admitted_by(replies: list[httpx.Response], urls: list[str]) -> list[int]:
    """How many admissions each replica made (replies were sent round-robin over ``urls``)."""
    return [sum(r.status_code == 200 for r in replies[i :: len(urls)]) for i in range(len(urls))]


METERS: dict[str, tuple[tuple[int, str], Callable[[UsageRecord], int]]] = {
    "budget": ((402, "budget_exceeded"), cost_of),
    "token-quota": ((429, "quota_exceeded"), tokens_of),
}


@pytest.mark.parametrize("meter", list(METERS))
async def test_two_processes_admit_exactly_what_fits(
    settings: Settings, tmp_path: Path, client: httpx.AsyncClient, meter: str
) -> None:
    """A storm over two replicas on a budget or token quota fitting K: K admitted in total, all settled."""
    denial, measure = METERS[meter]
    async with operator(settings) as admin, serve_gateways(settings, tmp_path, ["a", "b"]) as replicas:
        tenant = await admin.tenant()
        row: Budget | Quota
        if meter == "budget":
            row = await admin.budgets.create_budget(
                tenant.organisation_id, "shared", amount_nanos_usd=FITS * REQUEST_COST, period=Period.DAILY
            )
        else:
            row = await admin.budgets.create_quota(
                tenant.organisation_id, "shared", metric=QuotaMetric.TOKENS, limit=FITS * REQUEST_TOKENS,
                period=Period.DAILY,
            )  # fmt: skip
        urls = [r.base_url for r in replicas]
        replies = await fire(client, urls, tenant.secret, tenant.model, FIRED)
        ledger = Ledger(admin.sessions)
        proof = await prove_storm(
            ledger, client, urls[0], tenant, row.id, replies, denial=denial, measure=measure
        )
        other = meter_entry(await key_self(client, urls[1], tenant.secret), row.id)
    assert proof.admitted == FITS
    assert proof.used == proof.limit
    assert (other["used"], other["reserved"]) == (proof.used, 0)
    split = admitted_by(replies, urls)
    used = f"{proof.used}/{proof.limit}"
    print(
        f"two-process {meter} storm: fired {FIRED}, admitted {proof.admitted} (a, b = {split}), used {used}"
    )


async def test_two_processes_share_one_per_minute_limit(
    settings: Settings, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """A storm over two replicas on a per-minute limit of K: K admitted in total, the rest 429."""
    async with operator(settings) as admin, serve_gateways(settings, tmp_path, ["a", "b"]) as replicas:
        tenant = await admin.tenant(policies={"ratelimit": {"requests": {"per_minute": FITS}}})
        urls = [r.base_url for r in replicas]
        replies = await fire(client, urls, tenant.secret, tenant.model, FIRED)
        records = await Ledger(admin.sessions).records(tenant.key_id, FIRED)
    admitted = [r for r in replies if r.status_code == 200]
    assert len(admitted) == FITS
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in admitted) == list(range(FITS))
    assert {(r.status_code, error_of(r)["code"]) for r in replies if r.status_code != 200} == {
        (429, "rpm_exceeded")
    }
    assert len(records) == FIRED
    assert sum(r.http_status == 200 for r in records) == FITS
    split = admitted_by(replies, urls)
    print(f"two-process rpm storm: fired {FIRED}, admitted {len(admitted)} (a, b = {split}), limit {FITS}")


async def test_replicas_agree_on_a_rolled_over_limit(
    settings: Settings, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """A rollover budget's carried-over limit holds on a replica that did not rebuild the counter itself."""
    async with operator(settings) as admin, serve_gateways(settings, tmp_path, ["a", "b"]) as (a, b):
        tenant = await admin.tenant()
        # Window 1 is current and window 0 went unused: its whole amount rolls over (limit 2K).
        yesterday = datetime.now(UTC) - timedelta(days=1, minutes=5)
        row = await admin.budgets.create_budget(
            tenant.organisation_id, "rolling", amount_nanos_usd=FITS * REQUEST_COST, period=Period.DAILY,
            start_at=yesterday, rollover=True,
        )  # fmt: skip
        cold = meter_entry(await key_self(client, b.base_url, tenant.secret), row.id)
        (first,) = await fire(client, [a.base_url], tenant.secret, tenant.model, 1)  # a primes the counter
        assert first.status_code == 200, first.text
        rest = [
            (await fire(client, [b.base_url], tenant.secret, tenant.model, 1))[0] for _ in range(2 * FITS)
        ]
        standing = meter_entry(await key_self(client, a.base_url, tenant.secret), row.id)
    rolled = 2 * FITS * REQUEST_COST
    assert (cold["limit"], cold["used"], cold["remaining"]) == (rolled, 0, rolled)
    refused = [r.text for r in rest if r.status_code != 200]
    assert [r.status_code for r in rest] == [200] * (2 * FITS - 1) + [402], refused
    assert (standing["limit"], standing["used"]) == (rolled, rolled)
