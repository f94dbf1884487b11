"""A change made through one replica's control-plane API reaches another replica's gateway at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from odock.identity.actors import issue_admin_token
from odock.settings import Settings
from odock.tenancy.tables import Role
from tests.conftest import SettingsFactory
from tests.integration.test_hot_path import (
    INVALIDATION_SECRET,
    operator,
    provision_in,
    seconds_until_revoked,
    serve_replicas,
    warm,
)


@pytest.fixture
def deployment(make_backend_settings: SettingsFactory) -> Settings:
    """Production settings shared by the replica processes."""
    return make_backend_settings(cache_invalidation_secret=INVALIDATION_SECRET)


@pytest.mark.parametrize("any_backend", ["production"], indirect=True)
async def test_key_revoked_through_one_replicas_api_is_refused_by_the_other(
    deployment: Settings, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """POST …/apikeys/{id}/revoke on replica A makes replica B refuse the key within a second."""
    async with (
        operator(deployment) as admin,
        serve_replicas(deployment, tmp_path, ("a", "b")) as replicas,
        httpx.AsyncClient(timeout=5) as client,
    ):
        tenant = await provision_in(admin.control)
        root = await admin.control.users.create_user("replica-admin@example.test", role=Role.SUPER_ADMIN)
        token = (await issue_admin_token(admin.sessions, root.id, "replica test")).token
        await warm(client, replicas, tenant)
        revoked = await client.post(
            f"{replicas['a'].base_url}/api/organisations/{tenant.organisation_id}/apikeys/{tenant.key_id}/revoke",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert revoked.status_code == 200, revoked.text
        latency = await seconds_until_revoked(client, replicas["b"], tenant)
        record_property("api_revocation_latency_ms", latency * 1000)
        print(f"revoked through replica a's API: replica b refused in {latency * 1e3:.1f} ms")
