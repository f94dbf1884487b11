"""Organisations through the API: super-admin CRUD, settings, status, deletion and the routing switch."""

from __future__ import annotations

import secrets
from typing import Any

from odock.keys.secrets import hash_secret
from odock.tenancy.tables import Organisation, Role
from tests.conftest import provision
from tests.support.api import ControlPlaneUnderTest
from tests.support.paging import walk


def _org_row(control_plane: ControlPlaneUnderTest, organisation_id: str) -> Organisation:
    async def load() -> Organisation:
        async with control_plane.gateway.runtime.sessions() as session:
            org = await session.get(Organisation, organisation_id)
            assert org is not None
            return org

    return control_plane.gateway.run(load())  # type: ignore[no-any-return]


def test_super_admin_creates_reads_and_lists_organisations(control_plane: ControlPlaneUnderTest) -> None:
    """A super admin creates an organisation (201), reads it, and finds it in the admin list by name."""
    admin = control_plane.admin
    name = f"Acme {secrets.token_hex(3)}"
    created = admin.post("/api/admin/organisations", json={"name": name, "contact": "ops@acme.test"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == name
    assert body["contact"] == "ops@acme.test"
    assert body["status"] == "ACTIVE"
    assert body["routing_enabled"] is False
    assert admin.get(f"/api/organisations/{body['id']}").json() == body
    listed = admin.get("/api/admin/organisations", params={"q": name.upper()}).json()
    assert [o["id"] for o in listed["items"]] == [body["id"]]


def test_duplicate_organisation_name_is_a_conflict(control_plane: ControlPlaneUnderTest) -> None:
    """A second organisation with the same name is refused with 409."""
    name = f"dup-{secrets.token_hex(3)}"
    assert control_plane.admin.post("/api/admin/organisations", json={"name": name}).status_code == 201
    again = control_plane.admin.post("/api/admin/organisations", json={"name": name})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


def test_invalid_organisation_bodies_are_field_errors(control_plane: ControlPlaneUnderTest) -> None:
    """Empty names, unknown fields and bad statuses are 422 naming the field."""
    admin = control_plane.admin
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = admin.post("/api/admin/organisations", json=body)
        assert response.status_code == 422, body
        assert field in [f["field"] for f in response.json()["error"]["fields"]]
    org = control_plane.organisation()
    bad_status = admin.patch(f"/api/organisations/{org}", json={"status": "PAUSED"})
    assert bad_status.status_code == 422
    assert bad_status.json()["error"]["fields"][0]["field"] == "status"


def test_organisation_list_pages_without_duplicates_or_gaps(control_plane: ControlPlaneUnderTest) -> None:
    """Walking the admin list 2 at a time returns each of 7 matching organisations exactly once, in order."""
    tag = secrets.token_hex(4)
    ids = {control_plane.organisation(f"page-{tag}-{i}") for i in range(7)}
    for sort in ("created_at", "name"):
        items, pages = walk(
            control_plane.admin, "/api/admin/organisations", q=tag, limit=2, sort=sort, order="asc"
        )
        assert [o["id"] for o in items if o["id"] in ids] == [o["id"] for o in items]
        assert sorted(o["id"] for o in items) == sorted(ids)
        assert pages == 4
    names = [o["name"] for o in walk(control_plane.admin, "/api/admin/organisations", q=tag, sort="name")[0]]
    assert names == sorted(names, reverse=True)


def test_status_filter_and_super_admin_only_status_change(control_plane: ControlPlaneUnderTest) -> None:
    """Only a super admin sets status; the admin list filters on it."""
    org = control_plane.organisation(f"status-{secrets.token_hex(4)}")
    org_admin = control_plane.caller(Role.ORG_ADMIN, org)
    refused = org_admin.patch(f"/api/organisations/{org}", json={"status": "DISABLED"})
    assert refused.status_code == 403
    changed = control_plane.admin.patch(f"/api/organisations/{org}", json={"status": "DISABLED"})
    assert changed.status_code == 200
    assert changed.json()["status"] == "DISABLED"
    disabled = control_plane.admin.get(
        "/api/admin/organisations", params={"status": "DISABLED", "limit": 200}
    )
    assert org in [o["id"] for o in disabled.json()["items"]]
    active = control_plane.admin.get("/api/admin/organisations", params={"status": "ACTIVE", "q": "status-"})
    assert org not in [o["id"] for o in active.json()["items"]]


def test_org_admin_edits_name_and_contact_of_own_organisation(control_plane: ControlPlaneUnderTest) -> None:
    """An organisation admin renames their organisation and clears its contact with null."""
    org = control_plane.organisation()
    org_admin = control_plane.caller(Role.ORG_ADMIN, org)
    new_name = f"renamed-{secrets.token_hex(3)}"
    first = org_admin.patch(f"/api/organisations/{org}", json={"name": new_name, "contact": "a@b.test"})
    assert first.status_code == 200
    assert (first.json()["name"], first.json()["contact"]) == (new_name, "a@b.test")
    cleared = org_admin.patch(f"/api/organisations/{org}", json={"contact": None})
    assert cleared.json()["contact"] is None
    assert cleared.json()["name"] == new_name


def test_other_organisations_are_out_of_reach(control_plane: ControlPlaneUnderTest) -> None:
    """An organisation admin gets 403 on another organisation's paths and on the admin routes."""
    mine, theirs = control_plane.organisation(), control_plane.organisation()
    org_admin = control_plane.caller(Role.ORG_ADMIN, mine)
    assert org_admin.get(f"/api/organisations/{theirs}").status_code == 403
    assert org_admin.patch(f"/api/organisations/{theirs}", json={"name": "x"}).status_code == 403
    assert org_admin.get(f"/api/organisations/{theirs}/routing").status_code == 403
    assert org_admin.get("/api/admin/organisations").status_code == 403
    assert org_admin.post("/api/admin/organisations", json={"name": "mine too"}).status_code == 403
    assert org_admin.delete(f"/api/admin/organisations/{mine}").status_code == 403
    assert control_plane.admin.get("/api/organisations/nosuchorganisation").status_code == 404


def test_members_read_settings_but_cannot_change_them(control_plane: ControlPlaneUnderTest) -> None:
    """Managers and users read their organisation's settings and routing switch; writes are 403."""
    org = control_plane.organisation()
    for role in (Role.MANAGER, Role.USER):
        caller = control_plane.caller(role, org)
        assert caller.get(f"/api/organisations/{org}").status_code == 200
        assert caller.get(f"/api/organisations/{org}/routing").json() == {"enabled": False}
        assert caller.patch(f"/api/organisations/{org}", json={"name": "x"}).status_code == 403
        assert caller.patch(f"/api/organisations/{org}/routing", json={"enabled": True}).status_code == 403


def test_deleting_takes_disabling_first(control_plane: ControlPlaneUnderTest) -> None:
    """DELETE of an ACTIVE organisation is 409; once DISABLED it is deleted (204) and then unknown (404)."""
    org = control_plane.organisation()
    admin = control_plane.admin
    refused = admin.delete(f"/api/admin/organisations/{org}")
    assert refused.status_code == 409
    assert admin.patch(f"/api/organisations/{org}", json={"status": "DISABLED"}).status_code == 200
    assert admin.delete(f"/api/admin/organisations/{org}").status_code == 204
    assert admin.get(f"/api/organisations/{org}").status_code == 404
    assert admin.delete(f"/api/admin/organisations/{org}").status_code == 404


def test_routing_switch_keeps_policies_and_reaches_the_gateway(control_plane: ControlPlaneUnderTest) -> None:
    """Switching routing on keeps the governance envelope and a cached key sees the new switch at once."""
    gateway = control_plane.gateway
    tenant = provision(gateway)
    org = tenant.organisation_id
    envelope = {"policies": {"ip": {"allowlist": ["10.0.0.0/8"]}}}
    gateway.run(gateway.runtime.control.tenancy.update_organisation(org, policies=envelope))
    key_hash = hash_secret(tenant.secret)
    before = gateway.run(gateway.runtime.keys.principal(key_hash))
    assert "routing" not in before.organisation_policies

    switched = control_plane.admin.patch(f"/api/organisations/{org}/routing", json={"enabled": True})
    assert switched.status_code == 200
    assert switched.json() == {"enabled": True}
    assert control_plane.admin.get(f"/api/organisations/{org}/routing").json() == {"enabled": True}
    stored = _org_row(control_plane, org).policies
    assert stored["routing"] == {"enabled": True}
    assert stored["ip"]["allowlist"] == ["10.0.0.0/8"]
    after = gateway.run(gateway.runtime.keys.principal(key_hash))
    assert after.organisation_policies["routing"] == {"enabled": True}

    off = control_plane.admin.patch(f"/api/organisations/{org}/routing", json={"enabled": False})
    assert off.json() == {"enabled": False}
    assert control_plane.admin.get(f"/api/organisations/{org}").json()["routing_enabled"] is False
    bad = control_plane.admin.patch(f"/api/organisations/{org}/routing", json={"enabled": "maybe"})
    assert bad.status_code == 422


def test_disabled_organisation_keys_are_refused_at_once(control_plane: ControlPlaneUnderTest) -> None:
    """Disabling an organisation stops its keys at the gateway immediately; re-enabling restores them."""
    tenant = provision(control_plane.gateway)
    chat = {"model": tenant.model, "messages": [{"role": "user", "content": "hi"}]}
    gateway = control_plane.client(headers={"Authorization": f"Bearer {tenant.secret}"})
    assert gateway.post("/v1/chat/completions", json=chat).status_code == 200  # cached as active

    path = f"/api/organisations/{tenant.organisation_id}"
    assert control_plane.admin.patch(path, json={"status": "DISABLED"}).status_code == 200
    refused = gateway.post("/v1/chat/completions", json=chat)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "organisation_disabled"

    assert control_plane.admin.patch(path, json={"status": "ACTIVE"}).status_code == 200
    assert gateway.post("/v1/chat/completions", json=chat).status_code == 200


def test_strict_provider_family_is_created_patched_and_read(control_plane: ControlPlaneUnderTest) -> None:
    """Off unless asked on create; an org admin switches it with PATCH; GET reads it; non-booleans are 422."""
    admin = control_plane.admin
    lenient = admin.post("/api/admin/organisations", json={"name": f"lenient-{secrets.token_hex(3)}"})
    assert lenient.json()["strict_provider_family"] is False
    name = f"strict-{secrets.token_hex(3)}"
    created = admin.post("/api/admin/organisations", json={"name": name, "strict_provider_family": True})
    assert created.status_code == 201, created.text
    org = created.json()["id"]
    assert admin.get(f"/api/organisations/{org}").json()["strict_provider_family"] is True

    org_admin = control_plane.caller(Role.ORG_ADMIN, org)
    off = org_admin.patch(f"/api/organisations/{org}", json={"strict_provider_family": False})
    assert off.status_code == 200, off.text
    assert off.json()["strict_provider_family"] is False
    assert off.json()["name"] == name
    assert org_admin.get(f"/api/organisations/{org}").json()["strict_provider_family"] is False
    assert _org_row(control_plane, org).strict_provider_family is False

    bad = org_admin.patch(f"/api/organisations/{org}", json={"strict_provider_family": "maybe"})
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"] == "strict_provider_family"
    manager = control_plane.caller(Role.MANAGER, org)
    refused = manager.patch(f"/api/organisations/{org}", json={"strict_provider_family": True})
    assert refused.status_code == 403


def test_strict_provider_family_reaches_a_cached_key_at_once(control_plane: ControlPlaneUnderTest) -> None:
    """A cached principal carries the organisation's setting and sees each change without waiting."""
    gateway = control_plane.gateway
    tenant = provision(gateway)
    key_hash = hash_secret(tenant.secret)
    assert gateway.run(gateway.runtime.keys.principal(key_hash)).strict_provider_family is False

    path = f"/api/organisations/{tenant.organisation_id}"
    assert control_plane.admin.patch(path, json={"strict_provider_family": True}).status_code == 200
    assert gateway.run(gateway.runtime.keys.principal(key_hash)).strict_provider_family is True
    assert control_plane.admin.patch(path, json={"strict_provider_family": False}).status_code == 200
    assert gateway.run(gateway.runtime.keys.principal(key_hash)).strict_provider_family is False
