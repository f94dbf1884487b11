"""API key operations of the admin API, on top of :class:`odock.admin.control.ControlPlane`.

``ControlPlane`` issues, rotates, revokes and grants keys by model *name*; the API also accepts
model ids, removes one grant at a time, refuses expiries in the past, refuses to rotate a revoked
key, and edits the routing policy (spec §9.2) stored beside the governance envelope in
``ApiKey.policies``. Every change ends in a ControlPlane call or publishes its own invalidation,
so the gateway sees it at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane, IssuedKey
from odock.cache.bus import Invalidation, InvalidationBus
from odock.errors import Conflict, NotFound, UnprocessableEntity
from odock.keys.expiry import expiry_instant
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyType
from odock.providers.tables import Model

ROUTING = "routing"
MODEL_TYPES = (
    "chat",
    "reasoning",
    "image",
    "embeddings",
    "audio",
    "moderation",
    "transcription",
    "tts",
    "ocr",
)
ModelName = Annotated[str, Field(min_length=1, max_length=200)]


class RoutingCandidate(BaseModel):
    """One model a routing policy may send a request to (an Odock model name of the same type)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model_name: ModelName = Field(alias="modelName")
    priority: int = Field(default=1, ge=0, le=1_000_000)
    weight: int = Field(default=1, ge=0, le=1_000_000)


Trigger = Literal["5xx", "timeout", "rate_limit", "any"]


def _default_triggers() -> list[Trigger]:
    return ["5xx", "timeout"]


class ModelTypeRouting(BaseModel):
    """The routing policy of one model type (spec §9.2)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    strategy: Literal["failover", "priority", "round_robin"] = "failover"
    candidates: list[RoutingCandidate] = Field(default_factory=list, max_length=50)
    failover_on: list[Trigger] = Field(default_factory=_default_triggers, alias="failoverOn", max_length=4)
    max_retries: int = Field(default=0, ge=0, le=20, alias="maxRetries")
    retry_delay_ms: int = Field(default=0, ge=0, le=60_000, alias="retryDelayMs")
    native_fallback: dict[
        Literal["openai", "anthropic", "gemini", "vllm", "mistral"],
        Annotated[list[ModelName], Field(max_length=50)],
    ] = Field(default_factory=dict, alias="nativeFallback")

    def model_names(self) -> set[str]:
        """Every model name this policy mentions."""
        names = {c.model_name for c in self.candidates}
        for fallbacks in self.native_fallback.values():
            names.update(fallbacks)
        return names


def parse_routing(raw: object) -> dict[str, ModelTypeRouting]:
    """A stored or submitted routing document, keyed by model type; 422 naming the bad field."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise UnprocessableEntity("routing must be an object keyed by model type", param="routing")
    parsed: dict[str, ModelTypeRouting] = {}
    for model_type, policy in raw.items():
        if model_type not in MODEL_TYPES:
            raise UnprocessableEntity(
                f"unknown model type '{model_type}' (one of {', '.join(MODEL_TYPES)})", param=str(model_type)
            )
        try:
            parsed[model_type] = ModelTypeRouting.model_validate(policy)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join([model_type, *(str(p) for p in first["loc"])])
            raise UnprocessableEntity(f"{where}: {first['msg']}", param=where) from exc
    return parsed


def routing_json(routing: Mapping[str, ModelTypeRouting]) -> dict[str, Any]:
    """The stored (spec, camelCase) form of a routing document."""
    return {kind: policy.model_dump(by_alias=True) for kind, policy in routing.items()}


def check_future(expires_at: datetime | None, now: datetime | None = None) -> None:
    """Refuse an expiry that is not in the future (a key that is born expired is a mistake)."""
    if expires_at is not None and expires_at <= (now or datetime.now(UTC)):
        raise UnprocessableEntity("expires_at must be in the future", param="expires_at")


class KeyControl:
    """What the admin API does to API keys beyond :class:`ControlPlane`."""

    def __init__(
        self, control: ControlPlane, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus
    ) -> None:
        self._control = control
        self._sessions = sessions
        self._bus = bus

    async def create(
        self,
        organisation_id: str,
        name: str,
        *,
        type: ApiKeyType,
        team_id: str | None,
        user_id: str | None,
        expires_at: datetime | None,
        timezone: str,
        models: Sequence[str],
    ) -> IssuedKey:
        """Issue a key granted ``models`` (names or ids); the secret is returned only here."""
        expires_at = expiry_instant(expires_at, timezone)
        check_future(expires_at)
        names = [m.name for m in await self.models(organisation_id, models)]
        return await self._control.create_api_key(
            organisation_id,
            name,
            type=type,
            team_id=team_id,
            user_id=user_id,
            expires_at=expires_at,
            timezone=timezone,
            models=names,
        )

    async def update(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey:
        """Rename a key or change its expiry or timezone (a new expiry must be in the future)."""
        expires_at: datetime | None = changes.get("expires_at")
        if expires_at is not None:
            if expires_at.tzinfo is None:  # wall-clock time: the key's (new or current) zone reads it
                zone = changes.get("timezone") or (await self._control.api_key(key_id)).timezone
                changes = {**changes, "expires_at": expiry_instant(expires_at, zone)}
            check_future(changes["expires_at"])
        return await self._control.update_api_key(key_id, **changes)

    async def rotate(self, key_id: str, *, expires_at: datetime | None, rotated_by: str) -> IssuedKey:
        """Give a live key a new secret (409 when revoked; the old secret stops at once)."""
        key = await self._control.api_key(key_id)
        expires_at = expiry_instant(expires_at, key.timezone)
        check_future(expires_at)
        if key.revoked:
            raise Conflict("a revoked key cannot be rotated; unrevoke it first")
        return await self._control.rotate_api_key(key_id, expires_at=expires_at, rotated_by=rotated_by)

    async def set_revoked(self, key_id: str, revoked: bool) -> ApiKey:
        """Revoke or reinstate a key; repeating either is harmless (the first revocation time is kept)."""
        key = await self._control.api_key(key_id)
        if key.revoked == revoked:
            return key
        return await self._control.revoke_api_key(key_id, revoked=revoked)

    async def models(self, organisation_id: str, refs: Sequence[str]) -> list[Model]:
        """The organisation's models named by ``refs`` (each a model name or id); 422 for an unknown one."""
        wanted = list(dict.fromkeys(refs))
        if not wanted:
            return []
        async with self._sessions() as session:
            rows = await session.execute(
                select(Model).where(
                    Model.organisation_id == organisation_id,
                    or_(Model.name.in_(wanted), Model.id.in_(wanted)),
                )
            )
            found = list(rows.scalars())
        known = {m.name for m in found} | {m.id for m in found}
        missing = [ref for ref in wanted if ref not in known]
        if missing:
            raise UnprocessableEntity(f"unknown models: {', '.join(missing[:10])}", param="models")
        return found

    async def replace_grants(self, key: ApiKey, refs: Sequence[str]) -> None:
        """The key may call exactly these models from now on."""
        names = [m.name for m in await self.models(key.organisation_id, refs)]
        await self._control.set_key_grants(key.id, names)

    async def add_grants(self, key: ApiKey, refs: Sequence[str]) -> None:
        """The key may also call these models."""
        names = [m.name for m in await self.models(key.organisation_id, refs)]
        await self._control.grant_models(key.id, names)

    async def remove_grant(self, key: ApiKey, model_id: str) -> None:
        """The key may no longer call this model (404 when it had no such grant)."""
        async with self._sessions() as session:
            grant = await session.get(ApiKeyModelAccess, (key.id, model_id))
            if grant is None:
                raise NotFound("the key has no grant for this model")
            await session.delete(grant)
            await session.commit()
        await self._bus.publish(
            Invalidation("api_key", organisation_id=key.organisation_id, key_hash=key.key_hash)
        )

    async def set_routing(self, key: ApiKey, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Set (or, with ``null``, clear) the routing policy of model types; returns the whole document.

        Candidates must be models of the key's organisation; the governance envelope stored in the
        same JSON is kept as it is.
        """
        current = parse_routing(key.policies.get(ROUTING))
        cleared = {kind for kind, policy in changes.items() if policy is None}
        updates = parse_routing({kind: policy for kind, policy in changes.items() if policy is not None})
        mentioned: set[str] = set()
        for policy in updates.values():
            mentioned |= policy.model_names()
        if mentioned:
            await self.models(key.organisation_id, sorted(mentioned))
        routing = {kind: p for kind, p in (current | updates).items() if kind not in cleared}
        policies = {k: v for k, v in key.policies.items() if k != ROUTING}
        if routing:
            policies[ROUTING] = routing_json(routing)
        await self._control.update_api_key(key.id, policies=policies)
        return routing_json(routing)
