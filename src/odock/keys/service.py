"""API keys: issue (the secret shown once), change, rotate, revoke, grant models, routing.

Models are named by name or id. Ownership follows spec §3.3 (:mod:`odock.keys.rules`); a team or
user must be of the key's organisation. ``secret`` pins a caller-chosen secret (declarative
config); only its hash is stored. The admin API's stricter entry points (:meth:`KeyService.issue`,
:meth:`~KeyService.change`, :meth:`~KeyService.rotate_live`) also refuse expiries in the past
and rotating a revoked key. Every change commits, then publishes the key's invalidation (by
hash: a rotation publishes the old hash too), so the gateway sees it at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.rows import commit_or_conflict, get_row
from odock.errors import Conflict, NotFound, UnprocessableEntity
from odock.ids import new_id
from odock.keys.expiry import expiry_instant
from odock.keys.queries import KeyQueries
from odock.keys.routing import ROUTING, parse_routing, routing_json
from odock.keys.rules import check_future, check_ownership, pinned_secret
from odock.keys.secrets import generate_secret, hash_secret, preview
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyRotation, ApiKeyType
from odock.providers.tables import Model
from odock.rules import check_timezone, only_fields, same_org, valid_name, validate_policies
from odock.tenancy.tables import Organisation, Team, User

_FIELDS = {"name", "type", "team_id", "user_id", "expires_at", "timezone", "policies"}


@dataclass(frozen=True)
class IssuedKey:
    """A key and its secret, which is shown exactly once."""

    key: ApiKey
    secret: str


class KeyService(KeyQueries):
    """Issue, change, rotate and revoke API keys and their grants (reads: :class:`KeyQueries`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        super().__init__(sessions)
        self._bus = bus

    async def create(
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
        """Issue a key granted ``models`` (names or ids); the returned secret is never visible again."""
        check_ownership(type, team_id, user_id)
        check_timezone(timezone)
        stored_policies = validate_policies(policies)
        secret = pinned_secret(secret) if secret is not None else generate_secret()
        key = ApiKey(
            id=new_id(),
            organisation_id=organisation_id,
            team_id=team_id,
            user_id=user_id,
            type=type,
            name=valid_name(name),
            key_hash=hash_secret(secret),
            key_preview=preview(secret),
            expires_at=expiry_instant(expires_at, timezone),
            timezone=timezone,
            policies=stored_policies,
        )
        async with self._sessions() as session:
            await get_row(session, Organisation, organisation_id)
            await _check_owners(session, organisation_id, team_id, user_id)
            granted = await _models(session, organisation_id, models)
            session.add(key)
            # The unit of work inserts the key before its grants (foreign-key order).
            session.add_all(ApiKeyModelAccess(api_key_id=key.id, model_id=model.id) for model in granted)
            await commit_or_conflict(
                session, f"API key '{name}' could not be created: its secret is already in use"
            )
        await self._changed(key)
        return IssuedKey(key=key, secret=secret)

    async def issue(self, organisation_id: str, name: str, **options: Any) -> IssuedKey:
        """:meth:`create` as the admin API offers it: an expiry must lie in the future."""
        check_timezone(options.get("timezone", "UTC"))
        options["expires_at"] = expiry_instant(options.get("expires_at"), options.get("timezone", "UTC"))
        check_future(options["expires_at"])
        return await self.create(organisation_id, name, **options)

    async def update(self, key_id: str, **changes: Any) -> ApiKey:
        """Change a key's owner, expiry, timezone, policies or name (its secret stays)."""
        only_fields(changes, _FIELDS, "API key")
        if "timezone" in changes:
            check_timezone(changes["timezone"])
        if "expires_at" in changes:
            changes["expires_at"] = await self._expiry(key_id, changes)
        if "name" in changes:
            changes["name"] = valid_name(changes["name"])
        if "policies" in changes:
            changes["policies"] = validate_policies(changes["policies"])
        async with self._sessions() as session:
            key = await get_row(session, ApiKey, key_id)
            # The owner is checked before the row changes: a lookup would flush an unknown one first.
            kind, team_id, user_id = (changes.get(f, getattr(key, f)) for f in ("type", "team_id", "user_id"))
            check_ownership(kind, team_id, user_id)
            await _check_owners(session, key.organisation_id, team_id, user_id)
            for field, value in changes.items():
                setattr(key, field, value)
            await session.commit()
        await self._changed(key)
        return key

    async def change(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey:
        """:meth:`update` as the admin API offers it: a new expiry must lie in the future."""
        if changes.get("expires_at") is not None:
            changes = {**changes, "expires_at": await self._expiry(key_id, changes)}
            check_future(changes["expires_at"])
        return await self.update(key_id, **changes)

    async def _expiry(self, key_id: str, changes: Mapping[str, Any]) -> datetime | None:
        """A changed expiry as an instant: without an offset, the key's (new or current) zone reads it."""
        expires_at: datetime | None = changes["expires_at"]
        if expires_at is None or expires_at.tzinfo is not None:
            return expiry_instant(expires_at, "UTC")
        zone = changes.get("timezone") or (await self.get(key_id)).timezone
        return expiry_instant(expires_at, zone)

    async def rotate(
        self,
        key_id: str,
        *,
        expires_at: datetime | None = None,
        rotated_by: str | None = None,
        secret: str | None = None,
    ) -> IssuedKey:
        """Give a key a new secret in place (same id, grants and history); the old one stops working."""
        if expires_at is not None and expires_at.tzinfo is None:  # wall-clock time in the key's zone
            expires_at = expiry_instant(expires_at, (await self.get(key_id)).timezone)
        secret = pinned_secret(secret) if secret is not None else generate_secret()
        async with self._sessions() as session:
            key = await get_row(session, ApiKey, key_id)
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
            await commit_or_conflict(session, "the new secret is already in use by another API key")
        await self._bus.publish(
            Invalidation("api_key", organisation_id=key.organisation_id, key_hash=old_hash)
        )
        await self._changed(key)
        return IssuedKey(key=key, secret=secret)

    async def rotate_live(self, key_id: str, *, expires_at: datetime | None, rotated_by: str) -> IssuedKey:
        """:meth:`rotate` as the admin API offers it: 409 when revoked, a future expiry only."""
        key = await self.get(key_id)
        expires_at = expiry_instant(expires_at, key.timezone)
        check_future(expires_at)
        if key.revoked:
            raise Conflict("a revoked key cannot be rotated; unrevoke it first")
        return await self.rotate(key_id, expires_at=expires_at, rotated_by=rotated_by)

    async def revoke(self, key_id: str, *, revoked: bool = True) -> ApiKey:
        """Revoke (or, with ``revoked=False``, reinstate) a key."""
        async with self._sessions() as session:
            key = await get_row(session, ApiKey, key_id)
            key.revoked = revoked
            key.revoked_at = datetime.now(UTC) if revoked else None
            await session.commit()
        await self._changed(key)
        return key

    async def set_revoked(self, key_id: str, revoked: bool) -> ApiKey:
        """Revoke or reinstate a key; repeating either is harmless (the first revocation time is kept)."""
        key = await self.get(key_id)
        return key if key.revoked == revoked else await self.revoke(key_id, revoked=revoked)

    async def set_grants(self, key_id: str, models: Sequence[str]) -> ApiKey:
        """The key may call exactly these models (names or ids) from now on."""
        async with self._sessions() as session:
            key = await get_row(session, ApiKey, key_id)
            granted = await _models(session, key.organisation_id, models)
            await session.execute(delete(ApiKeyModelAccess).where(ApiKeyModelAccess.api_key_id == key.id))
            session.add_all(ApiKeyModelAccess(api_key_id=key.id, model_id=model.id) for model in granted)
            await session.commit()
        await self._changed(key)
        return key

    async def grant(self, key_id: str, models: Sequence[str]) -> ApiKey:
        """The key may also call these models (names or ids); existing grants stay."""
        async with self._sessions() as session:
            key = await get_row(session, ApiKey, key_id)
            held = select(ApiKeyModelAccess.model_id).where(ApiKeyModelAccess.api_key_id == key.id)
            existing = set((await session.execute(held)).scalars())
            for model in await _models(session, key.organisation_id, models):
                if model.id not in existing:
                    session.add(ApiKeyModelAccess(api_key_id=key.id, model_id=model.id))
            await session.commit()
        await self._changed(key)
        return key

    async def remove_grant(self, key_id: str, model_id: str) -> None:
        """The key may no longer call this model (404 when it had no such grant)."""
        async with self._sessions() as session:
            key = await get_row(session, ApiKey, key_id)
            grant = await session.get(ApiKeyModelAccess, (key.id, model_id))
            if grant is None:
                raise NotFound("the key has no grant for this model")
            await session.delete(grant)
            await session.commit()
        await self._changed(key)

    async def set_routing(self, key_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Set (or, with ``null``, clear) the routing policy of model types; returns the whole document.

        Candidates must be models of the key's organisation; the governance envelope stored in the
        same JSON is kept as it is.
        """
        key = await self.get(key_id)
        current = parse_routing(key.policies.get(ROUTING))
        cleared = {kind for kind, policy in changes.items() if policy is None}
        updates = parse_routing({kind: policy for kind, policy in changes.items() if policy is not None})
        mentioned = set().union(*(policy.model_names() for policy in updates.values()))
        if mentioned:
            async with self._sessions() as session:
                await _models(session, key.organisation_id, sorted(mentioned))
        routing = {kind: p for kind, p in (current | updates).items() if kind not in cleared}
        policies = {k: v for k, v in key.policies.items() if k != ROUTING}
        if routing:
            policies[ROUTING] = routing_json(routing)
        await self.update(key.id, policies=policies)
        return routing_json(routing)

    async def _changed(self, key: ApiKey) -> None:
        await self._bus.publish(
            Invalidation("api_key", organisation_id=key.organisation_id, key_hash=key.key_hash)
        )


async def _check_owners(
    session: AsyncSession, organisation_id: str, team_id: str | None, user_id: str | None
) -> None:
    if team_id:
        same_org((await get_row(session, Team, team_id)).organisation_id, organisation_id, "team")
    if user_id:
        same_org((await get_row(session, User, user_id)).organisation_id, organisation_id, "user")


async def _models(session: AsyncSession, organisation_id: str, refs: Sequence[str]) -> list[Model]:
    """The organisation's models named by ``refs`` (each a model name or id); 422 for an unknown one."""
    wanted = list(dict.fromkeys(refs))
    if not wanted:
        return []
    rows = await session.execute(
        select(Model).where(
            Model.organisation_id == organisation_id, or_(Model.name.in_(wanted), Model.id.in_(wanted))
        )
    )
    found = list(rows.scalars())
    known = {m.name for m in found} | {m.id for m in found}
    missing = [ref for ref in wanted if ref not in known]
    if missing:
        raise UnprocessableEntity(f"unknown models: {', '.join(missing[:10])}", param="models")
    return found
