"""Routes: the provider catalogue, providers, and provider keys.

A provider is *activated* from the catalogue (one per type and organisation; defaults for name
and base URL come from the catalogue). A provider key is sent either as plaintext (``secret``),
encrypted at once, or as the browser-made envelope of spec §3.6 (``envelope``), which must open
with this gateway's pair; the public half is served at ``…/providers/encryption-key``. No route
ever returns a provider secret: only a masked preview.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Select, select

from odock.admin.providers import ProviderChanges
from odock.providers.config import shown_config
from odock.providers.crypto import ALGORITHM, is_envelope
from odock.providers.provider_types import CATALOGUE, describe
from odock.providers.tables import Provider, ProviderApiKey, ProviderType
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.web.api.deps import Permit, RuntimeDep, row_locator
from odock.web.api.fields import PRINTABLE, IdQuery, JsonObject, Name
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.search import SearchQuery, matches

router = APIRouter(tags=["providers"])

_locate_provider = row_locator(Provider, "provider_id", lambda p: Target(p.organisation_id))


async def _locate_key(runtime: Runtime, params: Mapping[str, str]) -> Target | None:
    # The key must be one of the provider in the path: another provider's key is "not found".
    async with runtime.sessions() as session:
        key = await session.get(ProviderApiKey, params["provider_key_id"])
    if key is None or key.provider_id != params["provider_id"]:
        return None
    return Target(key.organisation_id)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    printable = all(c.isprintable() and not c.isspace() for c in value)
    if parts.scheme not in ("http", "https") or not parts.netloc or not printable:
        raise ValueError("must be an http(s) URL")
    if "{" in value or "}" in value:
        raise ValueError("replace the {placeholder} of the catalogue's URL template")
    return value


BaseUrl = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_http_url)]
TimeoutMs = Annotated[int, Field(gt=0, le=3_600_000)]
BASE64 = r"^[A-Za-z0-9+/]+={0,2}$"


class CatalogueEntry(BaseModel):
    """A provider type the organisation can activate, and whether it has."""

    type: ProviderType
    label: str
    default_base_url: str | None
    base_url_required: bool
    supported: bool
    needs_key: bool
    provider_id: str | None
    enabled: bool | None


class EncryptionKey(BaseModel):
    """The public key browsers encrypt provider keys with (spec §3.6)."""

    configured: bool
    key_id: str | None = None
    public_key_pem: str | None = None
    algorithm: str = ALGORITHM


class ProviderOut(BaseModel):
    """A provider of the organisation."""

    id: str
    organisation_id: str
    type: ProviderType
    name: str
    base_url: str | None
    timeout_ms: int | None
    config: dict[str, Any]
    enabled: bool
    supported: bool
    created_at: datetime
    updated_at: datetime


class ProviderActivate(BaseModel):
    """Activate a provider type; omitted name and base URL come from the catalogue."""

    model_config = ConfigDict(extra="forbid")

    type: ProviderType
    name: Name | None = None
    base_url: BaseUrl | None = None
    timeout_ms: TimeoutMs | None = None
    config: JsonObject = Field(default_factory=dict)
    enabled: bool = True


class ProviderUpdate(BaseModel):
    """Changes to a provider; ``base_url: null`` and ``timeout_ms: null`` clear them."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    base_url: BaseUrl | None = None
    timeout_ms: TimeoutMs | None = None
    config: JsonObject | None = None
    enabled: bool | None = None


class Envelope(BaseModel):
    """A provider secret encrypted in the browser (spec §3.6)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    v: Literal[1]
    alg: Literal["RSA-OAEP-256/A256GCM"]
    key_id: str = Field(alias="keyId", min_length=1, max_length=200, pattern=PRINTABLE)
    wrapped_key: str = Field(alias="wrappedKey", min_length=1, max_length=4096, pattern=BASE64)
    iv: str = Field(min_length=1, max_length=100, pattern=BASE64)
    ciphertext: str = Field(min_length=1, max_length=20_000, pattern=BASE64)


class ProviderKeyCreate(BaseModel):
    """A provider key: exactly one of ``secret`` (plaintext) or ``envelope`` (encrypted)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    secret: str | None = Field(default=None, min_length=1, max_length=10_000, pattern=PRINTABLE)
    envelope: Envelope | None = None
    key_preview: str | None = Field(
        default=None,
        max_length=40,
        pattern=PRINTABLE,
        description="accepted for the browser's payload; the stored preview "
        "is always computed by the gateway from the decrypted secret",
    )

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if (self.secret is None) == (self.envelope is None):
            raise ValueError("give exactly one of secret (plaintext) or envelope (encrypted)")
        return self


class ProviderKeyOut(BaseModel):
    """A provider key, without its secret."""

    id: str
    provider_id: str
    organisation_id: str
    name: str
    key_preview: str
    revoked: bool
    encrypted: bool
    created_at: datetime
    updated_at: datetime


def render(provider: Provider) -> ProviderOut:
    """The API view of a provider."""
    return ProviderOut(
        id=provider.id,
        organisation_id=provider.organisation_id,
        type=provider.type,
        name=provider.name,
        base_url=provider.base_url,
        timeout_ms=provider.timeout_ms,
        config=shown_config(provider.config),
        enabled=provider.enabled,
        supported=describe(provider.type).supported,
        created_at=provider.created_at,
        updated_at=provider.updated_at,
    )


def render_key(key: ProviderApiKey) -> ProviderKeyOut:
    """The API view of a provider key (never the secret)."""
    return ProviderKeyOut(
        id=key.id,
        provider_id=key.provider_id,
        organisation_id=key.organisation_id,
        name=key.name,
        key_preview=key.key_preview,
        revoked=key.revoked,
        encrypted=is_envelope(key.key),
        created_at=key.created_at,
        updated_at=key.updated_at,
    )


async def _provider_page(
    runtime: Runtime,
    query: Select[Provider],
    page: PageParams,
    sort: str,
    *,
    q: str | None,
    type: ProviderType | None,
    enabled: bool | None,
) -> Page[ProviderOut]:
    if q:
        query = query.where(matches(q, Provider.name, Provider.base_url))
    if type is not None:
        query = query.where(Provider.type == type)
    if enabled is not None:
        query = query.where(Provider.enabled == enabled)
    column = Provider.name if sort == "name" else Provider.created_at
    async with runtime.sessions() as session:
        rows = list((await session.execute(keyset(query, column, Provider.id, page))).scalars())
    return make_page(rows, page, render, lambda p: (getattr(p, sort), p.id))


Sort = Annotated[Literal["created_at", "name"], Query()]


@router.get("/admin/providers", response_model=Page[ProviderOut])
async def list_all_providers(
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    organisation_id: IdQuery = None,
    type: Annotated[ProviderType | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
    sort: Sort = "created_at",
) -> Page[ProviderOut]:
    """Providers of every organisation (super admin)."""
    query = select(Provider)
    if organisation_id:
        query = query.where(Provider.organisation_id == organisation_id)
    return await _provider_page(runtime, query, page, sort, q=q, type=type, enabled=enabled)


@router.get("/organisations/{organisation_id}/providers/catalogue", response_model=list[CatalogueEntry])
async def provider_catalogue(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.READ))],
) -> list[CatalogueEntry]:
    """The provider types with their default base URLs, and which the organisation has activated."""
    async with runtime.sessions() as session:
        rows = await session.execute(select(Provider).where(Provider.organisation_id == organisation_id))
        active = {p.type: p for p in rows.scalars()}
    entries = []
    for info in CATALOGUE:
        provider = active.get(info.type)
        entries.append(
            CatalogueEntry(
                type=info.type,
                label=info.label,
                default_base_url=info.default_base_url,
                base_url_required=info.base_url_required,
                supported=info.supported,
                needs_key=info.needs_key,
                provider_id=provider.id if provider else None,
                enabled=provider.enabled if provider else None,
            )
        )
    return entries


@router.get("/organisations/{organisation_id}/providers/encryption-key", response_model=EncryptionKey)
async def encryption_key(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.READ))],
) -> EncryptionKey:
    """The gateway's public key for browser-side provider-key encryption (``configured: false`` if none)."""
    decrypter = runtime.vault.decrypter
    if decrypter is None:
        return EncryptionKey(configured=False)
    return EncryptionKey(configured=True, key_id=decrypter.key_id, public_key_pem=decrypter.public_pem)


@router.get("/organisations/{organisation_id}/providers", response_model=Page[ProviderOut])
async def list_providers(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    type: Annotated[ProviderType | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
    sort: Sort = "created_at",
) -> Page[ProviderOut]:
    """The organisation's providers."""
    query = select(Provider).where(Provider.organisation_id == organisation_id)
    return await _provider_page(runtime, query, page, sort, q=q, type=type, enabled=enabled)


@router.post("/organisations/{organisation_id}/providers", status_code=201, response_model=ProviderOut)
async def activate_provider(
    organisation_id: str,
    body: ProviderActivate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.CREATE))],
) -> ProviderOut:
    """Activate a provider type for the organisation (409 when already active)."""
    grant.check(Target(organisation_id))
    provider = await runtime.control.providers.activate(
        organisation_id,
        body.type,
        name=body.name,
        base_url=body.base_url,
        timeout_ms=body.timeout_ms,
        config=body.config,
        enabled=body.enabled,
    )
    return render(provider)


@router.get("/organisations/{organisation_id}/providers/{provider_id}", response_model=ProviderOut)
async def get_provider(
    provider_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.READ, locate=_locate_provider))],
) -> ProviderOut:
    """One provider."""
    async with runtime.sessions() as session:
        provider = await session.get(Provider, provider_id)
    assert provider is not None  # located by Permit
    return render(provider)


@router.patch("/organisations/{organisation_id}/providers/{provider_id}", response_model=ProviderOut)
async def update_provider(
    provider_id: str,
    body: ProviderUpdate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.UPDATE, locate=_locate_provider))],
) -> ProviderOut:
    """Rename, or change the base URL, timeout, config or switch (the gateway sees it at once)."""
    given = body.model_fields_set
    changes = ProviderChanges(
        name=body.name,
        config=body.config,
        enabled=body.enabled,
        base_url=body.base_url,
        set_base_url="base_url" in given,
        timeout_ms=body.timeout_ms,
        set_timeout_ms="timeout_ms" in given,
    )
    return render(await runtime.control.providers.update(provider_id, changes))


@router.delete(
    "/organisations/{organisation_id}/providers/{provider_id}", status_code=204, response_class=Response
)
async def delete_provider(
    provider_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.DELETE, locate=_locate_provider))],
) -> Response:
    """Delete a provider and its keys (409 while models use it)."""
    await runtime.control.providers.delete(provider_id)
    return Response(status_code=204)


@router.get(
    "/organisations/{organisation_id}/providers/{provider_id}/keys", response_model=Page[ProviderKeyOut]
)
async def list_provider_keys(
    provider_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.READ, locate=_locate_provider))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    revoked: Annotated[bool | None, Query()] = None,
) -> Page[ProviderKeyOut]:
    """A provider's keys (previews only), newest first by default."""
    query = select(ProviderApiKey).where(ProviderApiKey.provider_id == provider_id)
    if q:
        query = query.where(matches(q, ProviderApiKey.name))
    if revoked is not None:
        query = query.where(ProviderApiKey.revoked == revoked)
    async with runtime.sessions() as session:
        statement = keyset(query, ProviderApiKey.created_at, ProviderApiKey.id, page)
        rows = list((await session.execute(statement)).scalars())
    return make_page(rows, page, render_key, lambda k: (k.created_at, k.id))


@router.post(
    "/organisations/{organisation_id}/providers/{provider_id}/keys",
    status_code=201,
    response_model=ProviderKeyOut,
)
async def add_provider_key(
    provider_id: str,
    body: ProviderKeyCreate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.CREATE, locate=_locate_provider))],
) -> ProviderKeyOut:
    """Store a provider key: plaintext is encrypted at once; an envelope must open with our pair."""
    envelope = None
    if body.envelope is not None:
        envelope = orjson.dumps(body.envelope.model_dump(by_alias=True)).decode()
    key = await runtime.control.add_provider_key(
        provider_id, body.name, secret=body.secret, envelope=envelope
    )
    return render_key(key)


_KEY = "/organisations/{organisation_id}/providers/{provider_id}/keys/{provider_key_id}"


@router.get(_KEY, response_model=ProviderKeyOut)
async def get_provider_key(
    provider_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.READ, locate=_locate_key))],
) -> ProviderKeyOut:
    """One provider key (preview only)."""
    async with runtime.sessions() as session:
        key = await session.get(ProviderApiKey, provider_key_id)
    assert key is not None  # located by Permit
    return render_key(key)


@router.post(_KEY + "/revoke", response_model=ProviderKeyOut)
async def revoke_provider_key(
    provider_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.UPDATE, locate=_locate_key))],
) -> ProviderKeyOut:
    """Revoke a provider key: models using it are refused with provider_api_key_revoked at once."""
    return render_key(await runtime.control.revoke_provider_key(provider_key_id))


@router.delete(_KEY, status_code=204, response_class=Response)
async def delete_provider_key(
    provider_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.DELETE, locate=_locate_key))],
) -> Response:
    """Delete a provider key (409 while models use it)."""
    await runtime.control.providers.delete_key(provider_key_id)
    return Response(status_code=204)
