"""Control-plane operations shared by the CLI, declarative config, demo seeding and the admin API.

Each mutation validates, commits, then publishes the cache invalidation that makes the change
visible on the hot path of every replica. Business code makes ids and timestamps here; tables
store them as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.errors import Conflict, NotFound, UnprocessableEntity
from odock.ids import new_id
from odock.keys.secrets import generate_secret, hash_secret, preview
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyRotation, ApiKeyType
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError, is_envelope
from odock.providers.tables import Model, Provider, ProviderApiKey, ProviderType
from odock.tenancy.tables import Organisation, Role, Team, User
from odock.usage.billing import Pricing


@dataclass(frozen=True)
class IssuedKey:
    """A key and its secret, which is shown exactly once."""

    key: ApiKey
    secret: str


class ControlPlane:
    """Mutations and lookups of configuration."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        decrypter: EnvelopeDecrypter | None,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._decrypter = decrypter

    # --- organisations, teams, users ---------------------------------------------------
    async def create_organisation(
        self, name: str, *, contact: str | None = None, policies: dict[str, Any] | None = None
    ) -> Organisation:
        """Create an organisation."""
        org = Organisation(id=new_id(), name=_name(name), contact=contact, policies=policies or {})
        await self._insert(org, f"organisation '{name}' already exists")
        return org

    async def organisation_by_name(self, name: str) -> Organisation:
        """Find an organisation by name (404 when absent)."""
        async with self._sessions() as session:
            org = (await session.execute(select(Organisation).where(Organisation.name == name))).scalar_one_or_none()
        if org is None:
            raise NotFound(f"organisation '{name}' does not exist")
        return org

    async def list_organisations(self) -> list[Organisation]:
        """Every organisation, by name."""
        async with self._sessions() as session:
            return list((await session.execute(select(Organisation).order_by(Organisation.name))).scalars())

    async def create_team(self, organisation_id: str, name: str) -> Team:
        """Create a team in an organisation."""
        await self._require(Organisation, organisation_id)
        team = Team(id=new_id(), organisation_id=organisation_id, name=_name(name))
        await self._insert(team, f"team '{name}' already exists")
        return team

    async def create_user(
        self, email: str, *, organisation_id: str | None = None, role: Role = Role.USER, name: str | None = None
    ) -> User:
        """Create a user."""
        if organisation_id:
            await self._require(Organisation, organisation_id)
        user = User(id=new_id(), email=email.strip().lower(), name=name, role=role, organisation_id=organisation_id)
        await self._insert(user, f"user '{email}' already exists")
        return user

    # --- providers and models ----------------------------------------------------------
    async def create_provider(
        self,
        organisation_id: str,
        name: str,
        type: ProviderType,
        *,
        base_url: str | None = None,
        timeout_ms: int | None = None,
        config: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> Provider:
        """Create a provider."""
        await self._require(Organisation, organisation_id)
        if timeout_ms is not None and timeout_ms <= 0:
            raise UnprocessableEntity("timeout_ms must be positive", param="timeout_ms")
        provider = Provider(
            id=new_id(),
            organisation_id=organisation_id,
            name=_name(name),
            type=type,
            base_url=base_url,
            timeout_ms=timeout_ms,
            config=config or {},
            enabled=enabled,
        )
        await self._insert(provider, f"provider '{name}' already exists")
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))
        return provider

    async def set_provider_enabled(self, provider_id: str, enabled: bool) -> Provider:
        """Switch a provider on or off."""
        async with self._sessions() as session:
            provider = await _get(session, Provider, provider_id)
            provider.enabled = enabled
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=provider.organisation_id))
        return provider

    async def add_provider_key(
        self, provider_id: str, name: str, *, secret: str | None = None, envelope: str | None = None
    ) -> ProviderApiKey:
        """Store a provider key: a browser-made envelope as is, or plaintext encrypted at once."""
        if (secret is None) == (envelope is None):
            raise UnprocessableEntity("give exactly one of a plaintext secret or an encrypted envelope")
        if self._decrypter is None:
            raise UnprocessableEntity(
                "no provider-key encryption pair is configured; provider keys are never stored in plaintext"
            )
        if envelope is not None:
            if not is_envelope(envelope):
                raise UnprocessableEntity("envelope must be the JSON envelope of spec §3.6", param="envelope")
            try:
                plain = self._decrypter.decrypt(envelope)
            except EnvelopeError as exc:
                raise UnprocessableEntity(f"envelope cannot be opened by this gateway: {exc}") from exc
            stored = envelope
        else:
            assert secret is not None
            plain = secret.strip()
            if not plain:
                raise UnprocessableEntity("provider key must not be empty", param="secret")
            stored = self._decrypter.encrypt(plain)
        async with self._sessions() as session:
            provider = await _get(session, Provider, provider_id)
            key = ProviderApiKey(
                id=new_id(),
                provider_id=provider.id,
                organisation_id=provider.organisation_id,
                name=_name(name),
                key=stored,
                key_preview=preview(plain),
            )
            session.add(key)
            await _commit(session, f"provider key '{name}' already exists")
        await self._bus.publish(Invalidation("organisation", organisation_id=provider.organisation_id))
        return key

    async def revoke_provider_key(self, provider_key_id: str) -> ProviderApiKey:
        """Revoke a provider key (models using it are refused with provider_api_key_revoked)."""
        async with self._sessions() as session:
            key = await _get(session, ProviderApiKey, provider_key_id)
            key.revoked = True
            key.updated_at = datetime.now(UTC)
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=key.organisation_id))
        return key

    async def create_model(
        self,
        organisation_id: str,
        name: str,
        *,
        slug: str | None = None,
        provider_id: str | None = None,
        provider_key_id: str | None = None,
        type: str = "chat",
        capabilities: Sequence[str] = (),
        pricing: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        policies: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> Model:
        """Create a model (pricing is validated against the stored shape, spec §3.7)."""
        pricing_json = validate_pricing(pricing)
        async with self._sessions() as session:
            await _get(session, Organisation, organisation_id)
            if provider_id is not None:
                provider = await _get(session, Provider, provider_id)
                _same_org(provider.organisation_id, organisation_id, "provider")
            if provider_key_id is not None:
                pkey = await _get(session, ProviderApiKey, provider_key_id)
                if pkey.provider_id != provider_id:
                    raise UnprocessableEntity("the provider key does not belong to the model's provider")
            model = Model(
                id=new_id(),
                organisation_id=organisation_id,
                name=_name(name),
                slug=slug or name,
                type=type,
                capabilities=list(capabilities),
                provider_id=provider_id,
                provider_api_key_id=provider_key_id,
                pricing=pricing_json,
                config=config or {},
                policies=policies or {},
                enabled=enabled,
            )
            session.add(model)
            await _commit(session, f"model '{name}' already exists")
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))
        return model

    async def update_model(self, model_id: str, **changes: Any) -> Model:
        """Change a model's fields (pricing is validated)."""
        allowed = {"slug", "type", "capabilities", "pricing", "config", "policies", "enabled",
                   "provider_id", "provider_api_key_id", "name"}
        unknown = set(changes) - allowed
        if unknown:
            raise UnprocessableEntity(f"unknown model fields: {', '.join(sorted(unknown))}")
        if "pricing" in changes:
            changes["pricing"] = validate_pricing(changes["pricing"])
        async with self._sessions() as session:
            model = await _get(session, Model, model_id)
            for field, value in changes.items():
                setattr(model, field, value)
            await _commit(session, "model name already exists")
        await self._bus.publish(Invalidation("organisation", organisation_id=model.organisation_id))
        return model

    async def model_by_name(self, organisation_id: str, name: str) -> Model:
        """Find a model by name (404 when absent)."""
        async with self._sessions() as session:
            model = (
                await session.execute(
                    select(Model).where(Model.organisation_id == organisation_id, Model.name == name)
                )
            ).scalar_one_or_none()
        if model is None:
            raise NotFound(f"model '{name}' does not exist")
        return model

    # --- API keys ----------------------------------------------------------------------
    async def create_api_key(
        self,
        organisation_id: str,
        name: str,
        *,
        type: ApiKeyType = ApiKeyType.ORGANISATION,
        team_id: str | None = None,
        user_id: str | None = None,
        expires_at: datetime | None = None,
        timezone: str = "UTC",
        models: Sequence[str] = (),
        policies: dict[str, Any] | None = None,
    ) -> IssuedKey:
        """Issue a key; the returned secret is the only time it is ever visible."""
        _check_ownership(type, team_id, user_id)
        _check_timezone(timezone)
        expires_at = _aware(expires_at)
        secret = generate_secret()
        async with self._sessions() as session:
            await _get(session, Organisation, organisation_id)
            if team_id:
                _same_org((await _get(session, Team, team_id)).organisation_id, organisation_id, "team")
            if user_id:
                _same_org((await _get(session, User, user_id)).organisation_id, organisation_id, "user")
            key = ApiKey(
                id=new_id(),
                organisation_id=organisation_id,
                team_id=team_id,
                user_id=user_id,
                type=type,
                name=_name(name),
                key_hash=hash_secret(secret),
                key_preview=preview(secret),
                expires_at=expires_at,
                timezone=timezone,
                policies=policies or {},
            )
            session.add(key)
            await session.flush()
            for model in await _models_named(session, organisation_id, models):
                session.add(ApiKeyModelAccess(api_key_id=key.id, model_id=model.id))
            await _commit(session, f"API key '{name}' could not be created")
        await self._bus.publish(Invalidation("api_key", organisation_id=organisation_id, key_hash=key.key_hash))
        return IssuedKey(key=key, secret=secret)

    async def set_key_grants(self, key_id: str, models: Sequence[str]) -> ApiKey:
        """Replace the models a key may call."""
        async with self._sessions() as session:
            key = await _get(session, ApiKey, key_id)
            granted = await _models_named(session, key.organisation_id, models)
            await session.execute(delete(ApiKeyModelAccess).where(ApiKeyModelAccess.api_key_id == key.id))
            for model in granted:
                session.add(ApiKeyModelAccess(api_key_id=key.id, model_id=model.id))
            await session.commit()
        await self._key_changed(key)
        return key

    async def grant_models(self, key_id: str, models: Sequence[str]) -> ApiKey:
        """Add model grants to a key (existing grants are kept)."""
        async with self._sessions() as session:
            key = await _get(session, ApiKey, key_id)
            existing = set(
                (await session.execute(
                    select(ApiKeyModelAccess.model_id).where(ApiKeyModelAccess.api_key_id == key.id)
                )).scalars()
            )
            for model in await _models_named(session, key.organisation_id, models):
                if model.id not in existing:
                    session.add(ApiKeyModelAccess(api_key_id=key.id, model_id=model.id))
            await session.commit()
        await self._key_changed(key)
        return key

    async def revoke_api_key(self, key_id: str, *, revoked: bool = True) -> ApiKey:
        """Revoke (or, with ``revoked=False``, reinstate) a key."""
        async with self._sessions() as session:
            key = await _get(session, ApiKey, key_id)
            key.revoked = revoked
            key.revoked_at = datetime.now(UTC) if revoked else None
            await session.commit()
        await self._key_changed(key)
        return key

    async def rotate_api_key(
        self, key_id: str, *, expires_at: datetime | None = None, rotated_by: str | None = None
    ) -> IssuedKey:
        """Give a key a new secret in place (same id, grants and history); the old secret stops working."""
        expires_at = _aware(expires_at)
        secret = generate_secret()
        async with self._sessions() as session:
            key = await _get(session, ApiKey, key_id)
            old_hash = key.key_hash
            session.add(
                ApiKeyRotation(
                    id=new_id(),
                    api_key_id=key.id,
                    previous_key_preview=key.key_preview,
                    previous_expires_at=key.expires_at,
                    new_expires_at=expires_at if expires_at is not None else key.expires_at,
                    rotated_by=rotated_by,
                )
            )
            key.key_hash = hash_secret(secret)
            key.key_preview = preview(secret)
            key.rotation_count += 1
            if expires_at is not None:
                key.expires_at = expires_at
            await session.commit()
        await self._bus.publish(Invalidation("api_key", organisation_id=key.organisation_id, key_hash=old_hash))
        await self._key_changed(key)
        return IssuedKey(key=key, secret=secret)

    async def api_key(self, key_id: str) -> ApiKey:
        """One key by id."""
        async with self._sessions() as session:
            return await _get(session, ApiKey, key_id)

    async def list_api_keys(self, organisation_id: str | None = None) -> list[ApiKey]:
        """Keys, newest first (optionally of one organisation)."""
        query = select(ApiKey).order_by(ApiKey.created_at.desc())
        if organisation_id:
            query = query.where(ApiKey.organisation_id == organisation_id)
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars())

    async def key_grants(self, key_id: str) -> list[str]:
        """Names of the models a key may call."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Model.name)
                .join(ApiKeyModelAccess, ApiKeyModelAccess.model_id == Model.id)
                .where(ApiKeyModelAccess.api_key_id == key_id)
                .order_by(Model.name)
            )
            return list(rows.scalars())

    async def key_rotations(self, key_id: str) -> list[ApiKeyRotation]:
        """A key's rotation history, oldest first."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(ApiKeyRotation).where(ApiKeyRotation.api_key_id == key_id).order_by(ApiKeyRotation.rotated_at)
            )
            return list(rows.scalars())

    # --- helpers -------------------------------------------------------------------------
    async def _key_changed(self, key: ApiKey) -> None:
        await self._bus.publish(Invalidation("api_key", organisation_id=key.organisation_id, key_hash=key.key_hash))

    async def _insert(self, row: object, conflict_message: str) -> None:
        async with self._sessions() as session:
            session.add(row)
            await _commit(session, conflict_message)

    async def _require(self, table: type[Any], row_id: str) -> None:
        async with self._sessions() as session:
            await _get(session, table, row_id)


def validate_pricing(pricing: dict[str, Any] | None) -> dict[str, Any]:
    """Check pricing against the stored shape; return it normalised (empty = no pricing)."""
    if not pricing:
        return {}
    try:
        return Pricing.model_validate(pricing).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UnprocessableEntity(f"invalid pricing at '{where}': {first['msg']}", param="pricing") from exc


async def _get(session: AsyncSession, table: type[Any], row_id: str) -> Any:
    row = await session.get(table, row_id)
    if row is None:
        raise NotFound(f"{table.__name__} '{row_id}' does not exist")
    return row


async def _commit(session: AsyncSession, conflict_message: str) -> None:
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(conflict_message) from exc


async def _models_named(session: AsyncSession, organisation_id: str, names: Sequence[str]) -> list[Model]:
    if not names:
        return []
    rows = await session.execute(
        select(Model).where(Model.organisation_id == organisation_id, Model.name.in_(list(names)))
    )
    models = list(rows.scalars())
    missing = set(names) - {m.name for m in models}
    if missing:
        raise UnprocessableEntity(f"unknown models: {', '.join(sorted(missing))}", param="models")
    return models


def _check_ownership(type: ApiKeyType, team_id: str | None, user_id: str | None) -> None:
    if type == ApiKeyType.ORGANISATION and (team_id or user_id):
        raise UnprocessableEntity("an ORGANISATION key has no team or user")
    if type == ApiKeyType.TEAM and (not team_id or user_id):
        raise UnprocessableEntity("a TEAM key needs a team and no user")
    if type == ApiKeyType.USER and (not user_id or team_id):
        raise UnprocessableEntity("a USER key needs a user and no team")


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnprocessableEntity(f"unknown timezone '{name}'", param="timezone") from exc


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise UnprocessableEntity("expiry must carry a timezone offset", param="expires_at")
    return value


def _same_org(actual: str | None, expected: str, what: str) -> None:
    if actual != expected:
        raise UnprocessableEntity(f"the {what} belongs to another organisation")


def _name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > 200:
        raise UnprocessableEntity("names must be 1-200 characters", param="name")
    return name
