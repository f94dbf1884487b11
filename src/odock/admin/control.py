"""Control-plane operations shared by the CLI, declarative config, demo seeding and the admin API.

Each mutation validates, commits, then publishes the cache invalidation that makes the change
visible on the hot path of every replica. Business code makes ids and timestamps here; tables
store them as given. Every policy envelope written here (organisation, team, API key, model) is
checked with :func:`odock.limits.policy.parse_policy` and stored in its bare, parsed form, so a
bad policy is refused with 422 ``invalid_policy`` at write time, not at the next request.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.models import ModelAdmin
from odock.admin.providers import ProviderAdmin
from odock.admin.rows import commit_or_conflict as _commit
from odock.admin.rows import get_row as _get
from odock.admin.rules import (
    aware,
    check_ownership,
    check_timezone,
    only_fields,
    pinned_secret,
    same_org,
    valid_name,
    validate_policies,
    validate_pricing,
)
from odock.budgets.control import BudgetControl
from odock.cache.bus import Invalidation, InvalidationBus
from odock.errors import NotFound, UnprocessableEntity
from odock.ids import new_id
from odock.keys.secrets import generate_secret, hash_secret, preview
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyRotation, ApiKeyType
from odock.providers.config import config_holds, stored_config
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError, is_envelope
from odock.providers.tables import Model, Provider, ProviderApiKey, ProviderType
from odock.tenancy.service import TenancyService
from odock.tenancy.tables import Organisation, Role, Team, User
from odock.tenancy.user_service import UserService

_Row = TypeVar("_Row")


@dataclass(frozen=True)
class IssuedKey:
    """A key and its secret, which is shown exactly once."""

    key: ApiKey
    secret: str


class ControlPlane:
    """Mutations and lookups of configuration.

    ``budgets`` manages budgets and quotas; ``tenancy`` organisations, teams and members;
    ``users`` users; ``providers`` and ``models`` hold the changes the control-plane API adds
    (rename, delete, activation).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        decrypter: EnvelopeDecrypter | None,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._decrypter = decrypter
        self.budgets = BudgetControl(sessions, bus)
        self.tenancy = TenancyService(sessions, bus)
        self.users = UserService(sessions)
        self.providers = ProviderAdmin(sessions, bus, decrypter)
        self.models = ModelAdmin(sessions, bus)

    # --- organisations, teams, users: delegated to the tenancy services ---------------------
    async def create_organisation(
        self, name: str, *, contact: str | None = None, policies: dict[str, Any] | None = None
    ) -> Organisation:
        """Create an organisation (:meth:`TenancyService.create_organisation`)."""
        return await self.tenancy.create_organisation(name, contact=contact, policies=policies)

    async def organisation_by_name(self, name: str) -> Organisation:
        """Find an organisation by name (:meth:`TenancyService.organisation_by_name`)."""
        return await self.tenancy.organisation_by_name(name)

    async def organisation_by_id(self, organisation_id: str) -> Organisation:
        """One organisation by id (:meth:`TenancyService.organisation`)."""
        return await self.tenancy.organisation(organisation_id)

    async def list_organisations(self) -> list[Organisation]:
        """Every organisation, by name (:meth:`TenancyService.list_organisations`)."""
        return await self.tenancy.list_organisations()

    async def update_organisation(self, organisation_id: str, **changes: Any) -> Organisation:
        """Change an organisation (:meth:`TenancyService.update_organisation`)."""
        return await self.tenancy.update_organisation(organisation_id, **changes)

    async def create_team(
        self, organisation_id: str, name: str, *, policies: dict[str, Any] | None = None
    ) -> Team:
        """Create a team (:meth:`TenancyService.create_team`)."""
        return await self.tenancy.create_team(organisation_id, name, policies=policies)

    async def team_by_name(self, organisation_id: str, name: str) -> Team:
        """Find a team by name (:meth:`TenancyService.team_by_name`)."""
        return await self.tenancy.team_by_name(organisation_id, name)

    async def list_teams(self, organisation_id: str) -> list[Team]:
        """The teams of an organisation, by name (:meth:`TenancyService.list_teams`)."""
        return await self.tenancy.list_teams(organisation_id)

    async def update_team(self, team_id: str, *, policies: dict[str, Any]) -> Team:
        """Replace a team's policies (:meth:`TenancyService.update_team`)."""
        return await self.tenancy.update_team(team_id, policies=policies)

    async def create_user(
        self,
        email: str,
        *,
        organisation_id: str | None = None,
        role: Role = Role.USER,
        name: str | None = None,
    ) -> User:
        """Create a user (:meth:`UserService.create_user`)."""
        return await self.users.create_user(email, organisation_id=organisation_id, role=role, name=name)

    async def user_by_email(self, email: str) -> User:
        """Find a user by e-mail address (:meth:`UserService.user_by_email`)."""
        return await self.users.user_by_email(email)

    async def list_users(self, organisation_id: str | None = None) -> list[User]:
        """Users, by e-mail (:meth:`UserService.list_users`)."""
        return await self.users.list_users(organisation_id)

    async def update_user(self, user_id: str, **changes: Any) -> User:
        """Change a user's name or role (:meth:`UserService.update_user`)."""
        only_fields(changes, {"name", "role"}, "user")
        return await self.users.update_user(user_id, **changes)

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
            name=valid_name(name),
            type=type,
            base_url=base_url,
            timeout_ms=timeout_ms,
            config=stored_config(config or {}, None, self._decrypter),
            enabled=enabled,
        )
        await self._insert(provider, f"provider '{name}' already exists")
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))
        return provider

    async def set_provider_enabled(self, provider_id: str, enabled: bool) -> Provider:
        """Switch a provider on or off."""
        return await self.update_provider(provider_id, enabled=enabled)

    async def update_provider(self, provider_id: str, **changes: Any) -> Provider:
        """Change a provider's type, base URL, timeout, config (header values encrypted) or switch."""
        only_fields(changes, {"type", "base_url", "timeout_ms", "config", "enabled"}, "provider")
        if changes.get("timeout_ms") is not None and changes["timeout_ms"] <= 0:
            raise UnprocessableEntity("timeout_ms must be positive", param="timeout_ms")
        async with self._sessions() as session:
            provider = await _get(session, Provider, provider_id)
            if "config" in changes:
                changes["config"] = stored_config(changes["config"] or {}, provider.config, self._decrypter)
            for field, value in changes.items():
                setattr(provider, field, value)
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=provider.organisation_id))
        return provider

    async def provider_by_name(self, organisation_id: str, name: str) -> Provider:
        """Find a provider of an organisation by name (404 when absent)."""
        query = select(Provider).where(Provider.organisation_id == organisation_id, Provider.name == name)
        return await self._one(query, f"provider '{name}' does not exist")

    async def list_providers(self, organisation_id: str | None = None) -> list[Provider]:
        """Providers, by name (optionally of one organisation)."""
        query = select(Provider).order_by(Provider.organisation_id, Provider.name)
        if organisation_id:
            query = query.where(Provider.organisation_id == organisation_id)
        return await self._all(query)

    async def provider_keys(self, provider_id: str) -> list[ProviderApiKey]:
        """The keys stored for a provider, by name."""
        query = select(ProviderApiKey).where(ProviderApiKey.provider_id == provider_id)
        return await self._all(query.order_by(ProviderApiKey.name))

    async def provider_key_by_name(self, provider_id: str, name: str) -> ProviderApiKey:
        """Find a provider key by name (404 when absent)."""
        query = select(ProviderApiKey).where(
            ProviderApiKey.provider_id == provider_id, ProviderApiKey.name == name
        )
        return await self._one(query, f"provider key '{name}' does not exist")

    def provider_config_holds(self, provider: Provider, config: dict[str, Any]) -> bool:
        """True when the provider stores ``config`` (its header values opening to the given ones)."""
        return config_holds(provider.config, config, self._decrypter)

    def provider_key_holds(self, key: ProviderApiKey, secret: str) -> bool:
        """True when the stored key opens to ``secret`` (False when this gateway cannot open it)."""
        if not is_envelope(key.key):
            return key.key == secret.strip()
        if self._decrypter is None:
            return False
        try:
            return hmac.compare_digest(self._decrypter.decrypt(key.key), secret.strip())
        except EnvelopeError:
            return False

    async def replace_provider_key_secret(self, provider_key_id: str, secret: str) -> ProviderApiKey:
        """Store a new secret under an existing provider key (re-encrypted; models keep using it)."""
        plain = secret.strip()
        if not plain:
            raise UnprocessableEntity("provider key must not be empty", param="secret")
        stored = self._encrypter().encrypt(plain)
        async with self._sessions() as session:
            key = await _get(session, ProviderApiKey, provider_key_id)
            key.key = stored
            key.key_preview = preview(plain)
            # The vault caches plaintext by row version: a new timestamp retires the old plaintext.
            key.updated_at = datetime.now(UTC)
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=key.organisation_id))
        return key

    async def add_provider_key(
        self, provider_id: str, name: str, *, secret: str | None = None, envelope: str | None = None
    ) -> ProviderApiKey:
        """Store a provider key: a browser-made envelope as is, or plaintext encrypted at once."""
        if (secret is None) == (envelope is None):
            raise UnprocessableEntity("give exactly one of a plaintext secret or an encrypted envelope")
        decrypter = self._encrypter()
        if envelope is not None:
            if not is_envelope(envelope):
                raise UnprocessableEntity("envelope must be the JSON envelope of spec §3.6", param="envelope")
            try:
                plain = decrypter.decrypt(envelope)
            except (EnvelopeError, UnicodeDecodeError) as exc:  # a secret is text: bytes that are not fail
                raise UnprocessableEntity(
                    f"envelope cannot be opened by this gateway: {exc}", param="envelope"
                ) from exc
            stored = envelope
        else:
            assert secret is not None
            plain = secret.strip()
            if not plain:
                raise UnprocessableEntity("provider key must not be empty", param="secret")
            stored = decrypter.encrypt(plain)
        async with self._sessions() as session:
            provider = await _get(session, Provider, provider_id)
            key = ProviderApiKey(
                id=new_id(),
                provider_id=provider.id,
                organisation_id=provider.organisation_id,
                name=valid_name(name),
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
        stored_policies = validate_policies(policies)
        async with self._sessions() as session:
            await _get(session, Organisation, organisation_id)
            if provider_id is not None:
                provider = await _get(session, Provider, provider_id)
                same_org(provider.organisation_id, organisation_id, "provider")
            if provider_key_id is not None:
                pkey = await _get(session, ProviderApiKey, provider_key_id)
                if pkey.provider_id != provider_id:
                    raise UnprocessableEntity("the provider key does not belong to the model's provider")
            model = Model(
                id=new_id(),
                organisation_id=organisation_id,
                name=valid_name(name),
                slug=slug or name,
                type=type,
                capabilities=list(capabilities),
                provider_id=provider_id,
                provider_api_key_id=provider_key_id,
                pricing=pricing_json,
                config=config or {},
                policies=stored_policies,
                enabled=enabled,
            )
            session.add(model)
            await _commit(session, f"model '{name}' already exists")
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))
        return model

    async def update_model(self, model_id: str, **changes: Any) -> Model:
        """Change a model's fields (pricing is validated)."""
        allowed = {
            "slug",
            "type",
            "capabilities",
            "pricing",
            "config",
            "policies",
            "enabled",
            "provider_id",
            "provider_api_key_id",
            "name",
        }
        only_fields(changes, allowed, "model")
        if "pricing" in changes:
            changes["pricing"] = validate_pricing(changes["pricing"])
        if "policies" in changes:
            changes["policies"] = validate_policies(changes["policies"])
        async with self._sessions() as session:
            model = await _get(session, Model, model_id)
            for field, value in changes.items():
                setattr(model, field, value)
            await _commit(session, "model name already exists")
        await self._bus.publish(Invalidation("organisation", organisation_id=model.organisation_id))
        return model

    async def model_by_name(self, organisation_id: str, name: str) -> Model:
        """Find a model by name (404 when absent)."""
        query = select(Model).where(Model.organisation_id == organisation_id, Model.name == name)
        return await self._one(query, f"model '{name}' does not exist")

    async def list_models(self, organisation_id: str | None = None) -> list[Model]:
        """Models, by name (optionally of one organisation)."""
        query = select(Model).order_by(Model.organisation_id, Model.name)
        if organisation_id:
            query = query.where(Model.organisation_id == organisation_id)
        return await self._all(query)

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
        secret: str | None = None,
    ) -> IssuedKey:
        """Issue a key; the returned secret is the only time it is ever visible.

        ``secret`` pins a caller-chosen secret (declarative config); only its hash is stored.
        """
        check_ownership(type, team_id, user_id)
        check_timezone(timezone)
        expires_at = aware(expires_at)
        stored_policies = validate_policies(policies)
        secret = pinned_secret(secret) if secret is not None else generate_secret()
        async with self._sessions() as session:
            await _get(session, Organisation, organisation_id)
            if team_id:
                same_org((await _get(session, Team, team_id)).organisation_id, organisation_id, "team")
            if user_id:
                same_org((await _get(session, User, user_id)).organisation_id, organisation_id, "user")
            key = ApiKey(
                id=new_id(),
                organisation_id=organisation_id,
                team_id=team_id,
                user_id=user_id,
                type=type,
                name=valid_name(name),
                key_hash=hash_secret(secret),
                key_preview=preview(secret),
                expires_at=expires_at,
                timezone=timezone,
                policies=stored_policies,
            )
            granted = await _models_named(session, organisation_id, models)
            session.add(key)
            # The unit of work inserts the key before its grants (foreign-key order).
            session.add_all(ApiKeyModelAccess(api_key_id=key.id, model_id=model.id) for model in granted)
            await _commit(session, f"API key '{name}' could not be created: its secret is already in use")
        await self._bus.publish(
            Invalidation("api_key", organisation_id=organisation_id, key_hash=key.key_hash)
        )
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
                (
                    await session.execute(
                        select(ApiKeyModelAccess.model_id).where(ApiKeyModelAccess.api_key_id == key.id)
                    )
                ).scalars()
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

    async def update_api_key(self, key_id: str, **changes: Any) -> ApiKey:
        """Change a key's owner, expiry, timezone, policies or name (its secret stays)."""
        only_fields(
            changes, {"name", "type", "team_id", "user_id", "expires_at", "timezone", "policies"}, "API key"
        )
        if "timezone" in changes:
            check_timezone(changes["timezone"])
        if "expires_at" in changes:
            changes["expires_at"] = aware(changes["expires_at"])
        if "name" in changes:
            changes["name"] = valid_name(changes["name"])
        if "policies" in changes:
            changes["policies"] = validate_policies(changes["policies"])
        async with self._sessions() as session:
            key = await _get(session, ApiKey, key_id)
            for field, value in changes.items():
                setattr(key, field, value)
            check_ownership(key.type, key.team_id, key.user_id)
            if key.team_id:
                same_org(
                    (await _get(session, Team, key.team_id)).organisation_id, key.organisation_id, "team"
                )
            if key.user_id:
                same_org(
                    (await _get(session, User, key.user_id)).organisation_id, key.organisation_id, "user"
                )
            await session.commit()
        await self._key_changed(key)
        return key

    async def api_keys_named(self, organisation_id: str, name: str) -> list[ApiKey]:
        """The keys of an organisation with this name (names are not unique), oldest first."""
        query = select(ApiKey).where(ApiKey.organisation_id == organisation_id, ApiKey.name == name)
        return await self._all(query.order_by(ApiKey.created_at))

    async def rotate_api_key(
        self,
        key_id: str,
        *,
        expires_at: datetime | None = None,
        rotated_by: str | None = None,
        secret: str | None = None,
    ) -> IssuedKey:
        """Give a key a new secret in place (same id, grants and history); the old secret stops working.

        ``secret`` pins the new secret (declarative config); otherwise one is generated.
        """
        expires_at = aware(expires_at)
        secret = pinned_secret(secret) if secret is not None else generate_secret()
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
            await _commit(session, "the new secret is already in use by another API key")
        await self._bus.publish(
            Invalidation("api_key", organisation_id=key.organisation_id, key_hash=old_hash)
        )
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
                select(ApiKeyRotation)
                .where(ApiKeyRotation.api_key_id == key_id)
                .order_by(ApiKeyRotation.rotated_at)
            )
            return list(rows.scalars())

    # --- helpers -------------------------------------------------------------------------
    async def _key_changed(self, key: ApiKey) -> None:
        await self._bus.publish(
            Invalidation("api_key", organisation_id=key.organisation_id, key_hash=key.key_hash)
        )

    async def _insert(self, row: object, conflict_message: str) -> None:
        async with self._sessions() as session:
            session.add(row)
            await _commit(session, conflict_message)

    async def _require(self, table: type[Any], row_id: str) -> None:
        async with self._sessions() as session:
            await _get(session, table, row_id)

    async def _one(self, query: Select[_Row], missing: str) -> _Row:
        async with self._sessions() as session:
            row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound(missing)
        return row

    async def _all(self, query: Select[_Row]) -> list[_Row]:
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars())

    def _encrypter(self) -> EnvelopeDecrypter:
        if self._decrypter is None:
            raise UnprocessableEntity(
                "no provider-key encryption pair is configured; provider keys are never stored in plaintext"
            )
        return self._decrypter


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
