"""Providers and provider keys through the API: catalogue, activation, keys (plaintext and envelope)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text

from odock.providers import crypto
from odock.providers.tables import ProviderApiKey
from odock.tenancy.tables import Role, TeamMemberRole
from tests.conftest import provision
from tests.support.api import Caller, ControlPlaneUnderTest
from tests.support.paging import walk

SECRET = "sk-live-" + "a1b2c3d4" * 5


def _activate(caller: Caller, org: str, **body: Any) -> dict[str, Any]:
    response = caller.post(f"/api/organisations/{org}/providers", json=body)
    assert response.status_code == 201, response.text
    provider: dict[str, Any] = response.json()
    return provider


def _stored_key(control_plane: ControlPlaneUnderTest, key_id: str) -> ProviderApiKey:
    async def load() -> ProviderApiKey:
        async with control_plane.gateway.runtime.sessions() as session:
            key = await session.get(ProviderApiKey, key_id)
            assert key is not None
            return key

    return control_plane.gateway.run(load())  # type: ignore[no-any-return]


def _browser_envelope(caller: Caller, org: str, secret: str) -> dict[str, Any]:
    """Encrypt like the console's browser code: with the public key the API serves."""
    published = caller.get(f"/api/organisations/{org}/providers/encryption-key").json()
    assert published["configured"] is True
    envelope: dict[str, Any] = orjson.loads(
        crypto.encrypt(secret, public_pem=published["public_key_pem"], key_id=published["key_id"])
    )
    return envelope


def test_catalogue_lists_every_type_with_defaults(control_plane: ControlPlaneUnderTest) -> None:
    """The catalogue carries every provider type, the spec's default URLs, adapter support and activation."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    path = f"/api/organisations/{org}/providers/catalogue"
    entries = {e["type"]: e for e in admin.get(path).json()}
    assert set(entries) == {
        "OPENAI", "ANTHROPIC", "GOOGLE", "AZURE_OPENAI", "VLLM", "MISTRAL", "HUGGINGFACE", "CUSTOM", "MOCK",
    }  # fmt: skip
    assert entries["OPENAI"]["default_base_url"] == "https://api.openai.com/v1/"
    assert entries["HUGGINGFACE"]["default_base_url"] == "https://router.huggingface.co"
    assert entries["VLLM"]["default_base_url"] == "http://localhost:8000"
    assert entries["OPENAI"]["supported"] is True
    assert entries["MOCK"]["supported"] is True
    assert (entries["ANTHROPIC"]["supported"], entries["GOOGLE"]["supported"]) == (True, True)
    assert entries["HUGGINGFACE"]["supported"] is False
    assert entries["VLLM"]["needs_key"] is False
    assert entries["AZURE_OPENAI"]["base_url_required"] is True
    assert entries["OPENAI"]["provider_id"] is None
    provider = _activate(admin, org, type="OPENAI")
    after = {e["type"]: e for e in admin.get(path).json()}
    assert after["OPENAI"]["provider_id"] == provider["id"]
    assert after["OPENAI"]["enabled"] is True


def test_activation_fills_defaults_and_is_unique_by_name(control_plane: ControlPlaneUnderTest) -> None:
    """Activating OpenAI uses the catalogue's name and URL; a second one needs its own name (409 without)."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    provider = _activate(admin, org, type="OPENAI")
    assert provider["name"] == "OpenAI"
    assert provider["base_url"] == "https://api.openai.com/v1/"
    assert provider["enabled"] is True
    assert provider["timeout_ms"] is None
    again = admin.post(f"/api/organisations/{org}/providers", json={"type": "OPENAI"})
    assert again.status_code == 409
    assert "a provider named 'OpenAI' already exists" in again.json()["error"]["message"]
    custom = _activate(
        admin, org, type="VLLM", name="gpu box", base_url="http://10.1.2.3:8000", timeout_ms=5000
    )
    assert (custom["name"], custom["base_url"], custom["timeout_ms"]) == (
        "gpu box",
        "http://10.1.2.3:8000",
        5000,
    )
    clash = admin.post(f"/api/organisations/{org}/providers", json={"type": "MISTRAL", "name": "gpu box"})
    assert clash.status_code == 409
    unsupported = _activate(admin, org, type="HUGGINGFACE")
    assert unsupported["supported"] is False


def test_several_providers_of_one_type_serve_side_by_side(control_plane: ControlPlaneUnderTest) -> None:
    """Two Azure regions and two OpenAI accounts coexist by name; the catalogue shows the first of each."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    east = _activate(
        admin, org, type="AZURE_OPENAI", name="azure-east", base_url="https://east.openai.azure.com"
    )
    west = _activate(
        admin, org, type="AZURE_OPENAI", name="azure-west", base_url="https://west.openai.azure.com"
    )
    first = _activate(admin, org, type="OPENAI", name="openai-prod")
    second = _activate(admin, org, type="OPENAI", name="openai-research", enabled=False)
    listed, _ = walk(admin, f"/api/organisations/{org}/providers", type="AZURE_OPENAI")
    assert {p["id"] for p in listed} == {east["id"], west["id"]}
    base = f"/api/organisations/{org}/providers"
    for provider in (east, west, first, second):
        key = admin.post(f"{base}/{provider['id']}/keys", json={"name": "main", "secret": SECRET})
        assert key.status_code == 201, key.text
    renamed = admin.patch(f"{base}/{west['id']}", json={"name": "azure-east"})
    assert renamed.status_code == 409
    catalogue = {e["type"]: e for e in admin.get(f"{base}/catalogue").json()}
    assert (catalogue["AZURE_OPENAI"]["provider_id"], catalogue["OPENAI"]["provider_id"]) == (
        east["id"],
        first["id"],
    )


def test_invalid_provider_bodies_are_field_errors(control_plane: ControlPlaneUnderTest) -> None:
    """Unknown types, bad URLs, timeouts out of range and Azure's URL template are 422 on the field."""
    org = control_plane.organisation()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "OPENIA"}, "type"),
        ({"type": "OPENAI", "base_url": "ftp://files.example"}, "base_url"),
        ({"type": "OPENAI", "base_url": "not a url"}, "base_url"),
        ({"type": "OPENAI", "timeout_ms": -5}, "timeout_ms"),
        ({"type": "OPENAI", "timeout_ms": 0}, "timeout_ms"),
        ({"type": "OPENAI", "config": [1, 2]}, "config"),
        ({"type": "OPENAI", "config": {"first_byte_timeout_ms": 0}}, "config"),
        ({"type": "OPENAI", "config": {"idle_timeout_ms": 3_600_001}}, "config"),
        ({"type": "OPENAI", "colour": "red"}, "colour"),
        ({"type": "AZURE_OPENAI"}, "base_url"),
        ({"type": "AZURE_OPENAI", "base_url": "https://{resource}.openai.azure.com"}, "base_url"),
    ]
    for body, field in cases:
        response = control_plane.admin.post(f"/api/organisations/{org}/providers", json=body)
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert error.get("param") == field or field in [f["field"] for f in error.get("fields", [])], body


def test_provider_read_update_delete(control_plane: ControlPlaneUnderTest) -> None:
    """A provider's fields are updated (null clears base URL and timeout), and it is deleted."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    provider = _activate(admin, org, type="CUSTOM", timeout_ms=1000)
    path = f"/api/organisations/{org}/providers/{provider['id']}"
    assert admin.get(path).json() == provider
    changed = admin.patch(
        path,
        json={"name": "in-house", "base_url": "https://llm.internal/v1", "config": {"headers": {"x-a": "1"}}},
    ).json()
    assert (changed["name"], changed["base_url"], changed["config"]) == (
        "in-house",
        "https://llm.internal/v1",
        {"headers": {"x-a": "***"}},  # extra header values are write-only
    )
    assert changed["timeout_ms"] == 1000
    cleared = admin.patch(path, json={"timeout_ms": None, "enabled": False}).json()
    assert cleared["timeout_ms"] is None
    assert cleared["enabled"] is False
    assert cleared["name"] == "in-house"
    assert admin.patch(path, json={"timeout_ms": -1}).status_code == 422
    refused = admin.patch(path, json={"config": {"connect_timeout_ms": "fast"}})
    assert refused.status_code == 422
    assert "config.connect_timeout_ms" in refused.json()["error"]["message"]
    assert admin.patch(path, json={"type": "OPENAI"}).status_code == 422
    assert admin.delete(path).status_code == 204
    assert admin.get(path).status_code == 404


def test_provider_list_filters_and_pages(control_plane: ControlPlaneUnderTest) -> None:
    """Providers page without gaps and filter by type, switch and name."""
    org = control_plane.organisation()
    admin = control_plane.admin
    made = [_activate(admin, org, type=t) for t in ("OPENAI", "MISTRAL", "VLLM", "CUSTOM", "MOCK")]
    admin.patch(f"/api/organisations/{org}/providers/{made[1]['id']}", json={"enabled": False})
    base = f"/api/organisations/{org}/providers"
    items, pages = walk(admin, base, limit=2, order="asc")
    assert [p["id"] for p in items] == [p["id"] for p in made]
    assert pages == 3
    assert [p["type"] for p in admin.get(base, params={"type": "VLLM"}).json()["items"]] == ["VLLM"]
    assert [p["id"] for p in admin.get(base, params={"enabled": "false"}).json()["items"]] == [made[1]["id"]]
    assert [p["type"] for p in admin.get(base, params={"q": "mistr"}).json()["items"]] == ["MISTRAL"]
    assert admin.get(base, params={"type": "NOPE"}).status_code == 422
    everywhere = admin.get("/api/admin/providers", params={"organisation_id": org, "limit": 200}).json()
    assert len(everywhere["items"]) == 5


def test_plaintext_key_is_encrypted_and_never_returned(control_plane: ControlPlaneUnderTest) -> None:
    """A plaintext provider key is stored as an envelope; no response ever contains the secret."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    provider = _activate(admin, org, type="OPENAI")
    base = f"/api/organisations/{org}/providers/{provider['id']}/keys"
    created = admin.post(base, json={"name": "Primary", "secret": SECRET})
    assert created.status_code == 201
    key = created.json()
    assert key["encrypted"] is True
    assert key["revoked"] is False
    assert SECRET not in key["key_preview"]
    assert key["key_preview"].startswith(SECRET[:3])
    stored = _stored_key(control_plane, key["id"])
    assert crypto.is_envelope(stored.key)
    assert SECRET not in stored.key
    assert control_plane.gateway.runtime.control.provider_keys.holds(stored, SECRET)
    responses: list[httpx.Response] = [
        created,
        admin.get(base),
        admin.get(f"{base}/{key['id']}"),
        admin.post(f"{base}/{key['id']}/revoke"),
        admin.get(f"/api/organisations/{org}/providers/{provider['id']}"),
    ]
    for response in responses:
        assert response.status_code in (200, 201)
        assert SECRET not in response.text
        assert stored.key not in response.text
    assert admin.post(base, json={"name": "Primary", "secret": "other"}).status_code == 409


def test_browser_envelope_is_accepted_when_it_opens(control_plane: ControlPlaneUnderTest) -> None:
    """An envelope made with the published public key is stored as sent; the gateway can open it."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    provider = _activate(admin, org, type="OPENAI")
    envelope = _browser_envelope(admin, org, SECRET)
    base = f"/api/organisations/{org}/providers/{provider['id']}/keys"
    created = admin.post(base, json={"name": "browser", "envelope": envelope, "key_preview": "sk-…web"})
    assert created.status_code == 201, created.text
    assert created.json()["key_preview"] != "sk-…web"  # computed by the gateway, not trusted
    stored = _stored_key(control_plane, created.json()["id"])
    assert orjson.loads(stored.key) == envelope
    assert control_plane.gateway.runtime.control.provider_keys.holds(stored, SECRET)


def test_envelopes_that_do_not_open_are_refused(control_plane: ControlPlaneUnderTest) -> None:
    """Envelopes for another key id, tampered or malformed are 422; so are secret+envelope and neither."""
    org = control_plane.organisation()
    admin = control_plane.admin
    provider = _activate(admin, org, type="OPENAI")
    base = f"/api/organisations/{org}/providers/{provider['id']}/keys"
    good = _browser_envelope(admin, org, SECRET)
    foreign_pair = crypto.generate_key_pair("someone-else", bits=2048)
    foreign = orjson.loads(crypto.encrypt(SECRET, public_pem=foreign_pair.public_pem, key_id=good["keyId"]))
    tampered = dict(good, ciphertext=base64.b64encode(b"x" * 40).decode())
    published = admin.get(f"/api/organisations/{org}/providers/encryption-key").json()
    not_text = _envelope_of_bytes(published["public_key_pem"], published["key_id"], b"\xff\xfe\xfd")
    bodies: list[dict[str, Any]] = [
        {"name": "a", "envelope": dict(good, keyId="another-key")},
        {"name": "b", "envelope": foreign},
        {"name": "c", "envelope": tampered},
        {"name": "d", "envelope": dict(good, iv="***")},
        {"name": "e", "envelope": dict(good, v=2)},
        {"name": "f", "envelope": {"v": 1}},
        {"name": "g", "envelope": good, "secret": SECRET},
        {"name": "h"},
        {"name": "i", "secret": "   "},
        {"name": "j", "envelope": not_text},
    ]
    for body in bodies:
        response = admin.post(base, json=body)
        assert response.status_code == 422, (body["name"], response.text)
    assert admin.get(base).json()["items"] == []


def _envelope_of_bytes(public_pem: str, key_id: str, data: bytes) -> dict[str, Any]:
    """A well-formed envelope around bytes that are not UTF-8 text."""
    public = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    data_key, iv = AESGCM.generate_key(bit_length=256), secrets.token_bytes(12)
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return {
        "v": 1,
        "alg": crypto.ALGORITHM,
        "keyId": key_id,
        "wrappedKey": b64(public.encrypt(data_key, oaep)),
        "iv": b64(iv),
        "ciphertext": b64(AESGCM(data_key).encrypt(iv, data, None)),
    }


def test_encryption_key_is_the_gateway_public_key(control_plane: ControlPlaneUnderTest) -> None:
    """The published public key is a PEM RSA key with the gateway's key id."""
    org = control_plane.organisation()
    published = control_plane.admin.get(f"/api/organisations/{org}/providers/encryption-key").json()
    decrypter = control_plane.gateway.runtime.vault.decrypter
    assert published["key_id"] == decrypter.key_id
    assert published["algorithm"] == crypto.ALGORITHM
    serialization.load_pem_public_key(published["public_key_pem"].encode())


def test_revoked_key_is_refused_by_the_gateway_at_once(control_plane: ControlPlaneUnderTest) -> None:
    """Revoking a model's provider key through the API makes the next gateway call 403."""
    gateway = control_plane.gateway
    tenant = provision(gateway, provider_secret=SECRET)
    org = tenant.organisation_id
    model = control_plane.admin.get(f"/api/organisations/{org}/models/{tenant.model_id}").json()
    call = {"model": tenant.model, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {tenant.secret}"}
    client = control_plane.client()
    assert client.post("/v1/chat/completions", json=call, headers=headers).status_code == 200
    revoke = f"/api/organisations/{org}/providers/{tenant.provider_id}/keys/{model['provider_key_id']}/revoke"
    assert control_plane.admin.post(revoke).json()["revoked"] is True
    refused = client.post("/v1/chat/completions", json=call, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "provider_api_key_revoked"


def test_keys_and_providers_in_use_are_not_deleted(control_plane: ControlPlaneUnderTest) -> None:
    """Deleting a provider or key a model uses is 409; once the model is gone both delete (204)."""
    tenant = provision(control_plane.gateway, provider_secret=SECRET)
    org = tenant.organisation_id
    admin = control_plane.admin
    model_path = f"/api/organisations/{org}/models/{tenant.model_id}"
    key_id = admin.get(model_path).json()["provider_key_id"]
    provider_path = f"/api/organisations/{org}/providers/{tenant.provider_id}"
    assert admin.delete(f"{provider_path}/keys/{key_id}").status_code == 409
    assert admin.delete(provider_path).status_code == 409
    assert admin.delete(model_path).status_code == 204
    spare = admin.post(f"{provider_path}/keys", json={"name": "spare", "secret": SECRET}).json()
    assert admin.delete(f"{provider_path}/keys/{key_id}").status_code == 204
    assert admin.get(f"{provider_path}/keys/{key_id}").status_code == 404
    assert admin.delete(provider_path).status_code == 204  # takes the spare key with it
    assert _gone(control_plane, spare["id"])


def _gone(control_plane: ControlPlaneUnderTest, key_id: str) -> bool:
    async def load() -> bool:
        async with control_plane.gateway.runtime.sessions() as session:
            return await session.get(ProviderApiKey, key_id) is None

    return bool(control_plane.gateway.run(load()))


def test_key_list_filters_and_other_providers_keys(control_plane: ControlPlaneUnderTest) -> None:
    """Keys page and filter by revoked and name; another provider's key under this provider is 404."""
    org = control_plane.organisation()
    admin = control_plane.admin
    openai, mistral = _activate(admin, org, type="OPENAI"), _activate(admin, org, type="MISTRAL")
    base = f"/api/organisations/{org}/providers/{openai['id']}/keys"
    keys = [admin.post(base, json={"name": f"key-{i}", "secret": f"{SECRET}{i}"}).json() for i in range(5)]
    admin.post(f"{base}/{keys[0]['id']}/revoke")
    items, pages = walk(admin, base, limit=2)
    assert sorted(k["id"] for k in items) == sorted(k["id"] for k in keys)
    assert pages == 3
    assert [k["id"] for k in admin.get(base, params={"revoked": "true"}).json()["items"]] == [keys[0]["id"]]
    assert [k["name"] for k in admin.get(base, params={"q": "KEY-3"}).json()["items"]] == ["key-3"]
    wrong_parent = f"/api/organisations/{org}/providers/{mistral['id']}/keys/{keys[1]['id']}"
    assert admin.get(wrong_parent).status_code == 404
    assert admin.post(f"{wrong_parent}/revoke").status_code == 404
    assert admin.delete(wrong_parent).status_code == 404


def test_managers_read_and_users_cannot_see_providers(control_plane: ControlPlaneUnderTest) -> None:
    """Managers read providers but cannot activate them; users reach no provider route."""
    org = control_plane.organisation()
    provider = _activate(control_plane.admin, org, type="MOCK")
    team = control_plane.admin.post(f"/api/organisations/{org}/teams", json={"name": "t"}).json()
    manager = control_plane.caller(Role.MANAGER, org, teams={team["id"]: TeamMemberRole.MANAGER})
    user = control_plane.caller(Role.USER, org)
    base = f"/api/organisations/{org}/providers"
    assert manager.get(base).status_code == 200
    assert manager.get(f"{base}/{provider['id']}/keys").status_code == 200
    assert manager.post(base, json={"type": "OPENAI"}).status_code == 403
    assert manager.patch(f"{base}/{provider['id']}", json={"enabled": False}).status_code == 403
    for path in (base, f"{base}/catalogue", f"{base}/{provider['id']}", f"{base}/{provider['id']}/keys"):
        assert user.get(path).status_code == 403, path
    assert user.post(base, json={"type": "OPENAI"}).status_code == 403


def test_providers_are_isolated_between_organisations(control_plane: ControlPlaneUnderTest) -> None:
    """Org A's admin gets 403 on org B's provider paths and 404 for org B's provider under org A."""
    org_a, org_b = control_plane.organisation(), control_plane.organisation()
    provider_b = _activate(control_plane.admin, org_b, type="OPENAI")
    key_b = control_plane.admin.post(
        f"/api/organisations/{org_b}/providers/{provider_b['id']}/keys", json={"name": "k", "secret": SECRET}
    ).json()
    admin_a = control_plane.caller(Role.ORG_ADMIN, org_a)
    assert admin_a.get(f"/api/organisations/{org_b}/providers").status_code == 403
    assert admin_a.post(f"/api/organisations/{org_b}/providers", json={"type": "MOCK"}).status_code == 403
    under_a = f"/api/organisations/{org_a}/providers/{provider_b['id']}"
    assert admin_a.get(under_a).status_code == 404
    assert admin_a.patch(under_a, json={"enabled": False}).status_code == 404
    assert admin_a.get(f"{under_a}/keys").status_code == 404
    assert admin_a.get(f"{under_a}/keys/{key_b['id']}").status_code == 404
    assert (
        admin_a.post(f"{under_a}/keys", json={"name": "x", "secret": secrets.token_hex(8)}).status_code == 404
    )
    assert admin_a.get("/api/admin/providers").status_code == 403


def test_extra_header_values_are_write_only(control_plane: ControlPlaneUnderTest) -> None:
    """Header values in a provider's config never come back (API or audit log), nor do their envelopes;
    sent back hidden, the stored value is kept; a hidden value with nothing stored is refused."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    secret = f"proxy-{secrets.token_hex(8)}"
    created = admin.post(
        f"/api/organisations/{org}/providers",
        json={
            "type": "CUSTOM",
            "base_url": "https://llm.internal/v1",
            "config": {"headers": {"x-proxy-key": secret}},
        },
    )
    assert created.status_code == 201, created.text
    provider = created.json()
    assert provider["config"] == {"headers": {"x-proxy-key": "***"}}
    path = f"/api/organisations/{org}/providers/{provider['id']}"
    # A client writes back what it read, with one header added: the hidden value keeps the secret.
    sent_back = {"headers": {**provider["config"]["headers"], "x-org": "o1"}, "api_version": "v1"}
    changed = admin.patch(path, json={"config": sent_back})
    assert changed.status_code == 200, changed.text
    assert changed.json()["config"] == {
        "headers": {"x-proxy-key": "***", "x-org": "***"},
        "api_version": "v1",
    }

    assert _opened_headers(control_plane, provider["id"]) == {"x-proxy-key": secret, "x-org": "o1"}
    refused = admin.patch(path, json={"config": {"headers": {"x-other": "***"}}})
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "validation_error")
    everything = admin.get(path).content + admin.get(f"/api/organisations/{org}/providers").content
    everything += admin.get(f"/api/organisations/{org}/audit", params={"limit": 200}).content
    assert secret.encode() not in everything
    assert b"ciphertext" not in everything  # nor the stored envelope


def _stored_config_text(control_plane: ControlPlaneUnderTest, provider_id: str) -> str:
    """The provider row's config column as the database holds it (JSON text)."""

    async def load() -> str:
        async with control_plane.gateway.runtime.sessions() as session:
            query = text("SELECT CAST(config AS TEXT) FROM providers WHERE id = :id")
            return str((await session.execute(query, {"id": provider_id})).scalar_one())

    return control_plane.gateway.run(load())  # type: ignore[no-any-return]


def _opened_headers(control_plane: ControlPlaneUnderTest, provider_id: str) -> dict[str, str]:
    """The stored header values, each checked to be an envelope and opened with the gateway's key."""
    headers = orjson.loads(_stored_config_text(control_plane, provider_id))["headers"]
    decrypter = control_plane.gateway.runtime.vault.decrypter
    assert all(set(value) >= {"wrappedKey", "iv", "ciphertext"} for value in headers.values()), headers
    return {name: decrypter.decrypt(orjson.dumps(value).decode()) for name, value in headers.items()}


def test_header_values_are_stored_encrypted(control_plane: ControlPlaneUnderTest) -> None:
    """A header value given on activation or update is stored as an envelope, never as its plaintext;
    sent back hidden, the stored envelope is kept as it was."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    first, second = f"proxy-{secrets.token_hex(8)}", f"token-{secrets.token_hex(8)}"
    provider = _activate(
        admin, org, type="CUSTOM", base_url="https://llm.internal/v1", config={"headers": {"x-a": first}}
    )
    stored = _stored_config_text(control_plane, provider["id"])
    assert first not in stored
    assert _opened_headers(control_plane, provider["id"]) == {"x-a": first}
    path = f"/api/organisations/{org}/providers/{provider['id']}"
    changed = admin.patch(path, json={"config": {"headers": {"x-a": "***", "x-b": second}}})
    assert changed.status_code == 200, changed.text
    after = _stored_config_text(control_plane, provider["id"])
    assert first not in after
    assert second not in after
    assert orjson.loads(after)["headers"]["x-a"] == orjson.loads(stored)["headers"]["x-a"]  # kept as is
    assert _opened_headers(control_plane, provider["id"]) == {"x-a": first, "x-b": second}
    for bad in ({"x-c": {"v": 1}}, {"x-c": None}, "x-c: 1"):
        refused = admin.patch(path, json={"config": {"headers": bad}})
        assert (refused.status_code, refused.json()["error"]["param"]) == (422, "config"), bad
    assert _opened_headers(control_plane, provider["id"]) == {"x-a": first, "x-b": second}
