"""Routes: the provider catalogue, providers, and provider keys.

A provider is *activated* from the catalogue (defaults for name and base URL come from the
catalogue); an organisation may have several providers of one type, unique by name. A provider
key is sent either as plaintext (``secret``), encrypted at once, or as the browser-made envelope
of spec §3.6 (``envelope``), which must open with this gateway's pair; the public half is served
at ``…/providers/encryption-key``. No route ever returns a provider secret: only a masked preview.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from odock.providers.config import shown_config
from odock.providers.crypto import ALGORITHM, is_envelope
from odock.providers.key_service import ProviderKeyFilters
from odock.providers.provider_types import describe
from odock.providers.service import CatalogueItem, ProviderChanges, ProviderFilters, ProviderService
from odock.providers.tables import Provider, ProviderApiKey, ProviderType
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.web.api.deps import Permit, row_locator
from odock.web.api.fields import PRINTABLE, IdQuery, JsonObject, Name
from odock.web.api.lists import ListRoute, TwinLists, add_list_routes, paged
from odock.web.api.paging import Page, PageParams, page_params
from odock.web.api.search import SearchQuery
from odock.web.api.services import Decrypter, ProviderKeys, Providers, providers_of

router = APIRouter(tags=["providers"])

_locate_provider = row_locator(Provider, "provider_id", lambda p: Target(p.organisation_id))


async def _locate_key(runtime: Runtime, params: Mapping[str, str]) -> Target | None:
    # The key must be one of the provider in the path: another provider's key is "not found".
    key = await runtime.control.provider_keys.of_provider(params["provider_id"], params["provider_key_id"])
    return None if key is None else Target(key.organisation_id)


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


def provider_filters(
    q: SearchQuery = None,
    organisation_id: IdQuery = None,
    type: Annotated[ProviderType | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
    sort: Annotated[Literal["created_at", "name"], Query()] = "created_at",
) -> ProviderFilters:
    """The filters of the provider lists (``organisation_id``: the admin list's, see :mod:`lists`)."""
    return ProviderFilters(q=q, type=type, enabled=enabled, sort=sort)


add_list_routes(
    router,
    TwinLists(
        resource=Resource.PROVIDER,
        service=providers_of,
        wanted=provider_filters,
        fetch=ProviderService.page,
        render=render,
        key=lambda p, wanted: (getattr(p, wanted.sort), p.id),
        item=ProviderOut,
        everywhere=ListRoute(
            "/admin/providers", "list_all_providers", "Providers of every organisation (super admin)."
        ),
        organisation=ListRoute(
            "/organisations/{organisation_id}/providers", "list_providers", "The organisation's providers."
        ),
    ),
)


@router.get("/organisations/{organisation_id}/providers/catalogue", response_model=list[CatalogueEntry])
async def provider_catalogue(
    organisation_id: str,
    providers: Providers,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.READ))],
) -> list[CatalogueEntry]:
    """The provider types with their default base URLs, and which the organisation has activated."""
    return [_entry(item) for item in await providers.catalogue(organisation_id)]


def _entry(item: CatalogueItem) -> CatalogueEntry:
    info, provider = item.info, item.provider
    return CatalogueEntry(
        type=info.type,
        label=info.label,
        default_base_url=info.default_base_url,
        base_url_required=info.base_url_required,
        supported=info.supported,
        needs_key=info.needs_key,
        provider_id=provider.id if provider else None,
        enabled=provider.enabled if provider else None,
    )


@router.get("/organisations/{organisation_id}/providers/encryption-key", response_model=EncryptionKey)
async def encryption_key(
    organisation_id: str,
    decrypter: Decrypter,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.READ))],
) -> EncryptionKey:
    """The gateway's public key for browser-side provider-key encryption (``configured: false`` if none)."""
    if decrypter is None:
        return EncryptionKey(configured=False)
    return EncryptionKey(configured=True, key_id=decrypter.key_id, public_key_pem=decrypter.public_pem)


@router.post("/organisations/{organisation_id}/providers", status_code=201, response_model=ProviderOut)
async def activate_provider(
    organisation_id: str,
    body: ProviderActivate,
    providers: Providers,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.CREATE))],
) -> ProviderOut:
    """Activate a provider type for the organisation (409 when the name is taken)."""
    grant.check(Target(organisation_id))
    provider = await providers.activate(
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
    providers: Providers,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.READ, locate=_locate_provider))],
) -> ProviderOut:
    """One provider."""
    return render(await providers.get(provider_id))


@router.patch("/organisations/{organisation_id}/providers/{provider_id}", response_model=ProviderOut)
async def update_provider(
    provider_id: str,
    body: ProviderUpdate,
    providers: Providers,
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
    return render(await providers.update(provider_id, changes))


@router.delete(
    "/organisations/{organisation_id}/providers/{provider_id}", status_code=204, response_class=Response
)
async def delete_provider(
    provider_id: str,
    providers: Providers,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER, Action.DELETE, locate=_locate_provider))],
) -> Response:
    """Delete a provider and its keys (409 while models use it)."""
    await providers.delete(provider_id)
    return Response(status_code=204)


@router.get(
    "/organisations/{organisation_id}/providers/{provider_id}/keys", response_model=Page[ProviderKeyOut]
)
async def list_provider_keys(
    provider_id: str,
    keys: ProviderKeys,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.READ, locate=_locate_provider))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    revoked: Annotated[bool | None, Query()] = None,
) -> Page[ProviderKeyOut]:
    """A provider's keys (previews only), newest first by default."""
    filters = ProviderKeyFilters(q=q, revoked=revoked)
    return await paged(
        lambda bound: keys.page(provider_id, filters, bound), page, render_key, lambda k: (k.created_at, k.id)
    )


@router.post(
    "/organisations/{organisation_id}/providers/{provider_id}/keys",
    status_code=201,
    response_model=ProviderKeyOut,
)
async def add_provider_key(
    provider_id: str,
    body: ProviderKeyCreate,
    keys: ProviderKeys,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.CREATE, locate=_locate_provider))],
) -> ProviderKeyOut:
    """Store a provider key: plaintext is encrypted at once; an envelope must open with our pair."""
    envelope = None
    if body.envelope is not None:
        envelope = orjson.dumps(body.envelope.model_dump(by_alias=True)).decode()
    return render_key(await keys.add(provider_id, body.name, secret=body.secret, envelope=envelope))


_KEY = "/organisations/{organisation_id}/providers/{provider_id}/keys/{provider_key_id}"


@router.get(_KEY, response_model=ProviderKeyOut)
async def get_provider_key(
    provider_key_id: str,
    keys: ProviderKeys,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.READ, locate=_locate_key))],
) -> ProviderKeyOut:
    """One provider key (preview only)."""
    return render_key(await keys.get(provider_key_id))


@router.post(_KEY + "/revoke", response_model=ProviderKeyOut)
async def revoke_provider_key(
    provider_key_id: str,
    keys: ProviderKeys,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.UPDATE, locate=_locate_key))],
) -> ProviderKeyOut:
    """Revoke a provider key: models using it are refused with provider_api_key_revoked at once."""
    return render_key(await keys.revoke(provider_key_id))


@router.delete(_KEY, status_code=204, response_class=Response)
async def delete_provider_key(
    provider_key_id: str,
    keys: ProviderKeys,
    grant: Annotated[Grant, Depends(Permit(Resource.PROVIDER_KEY, Action.DELETE, locate=_locate_key))],
) -> Response:
    """Delete a provider key (409 while models use it)."""
    await keys.delete(provider_key_id)
    return Response(status_code=204)
