"""Cache invalidation across replicas.

Every change that affects the hot path publishes an :class:`Invalidation`. Publishing bumps a
shared *generation* number: shared-tier keys embed the generation, so a bump retires the whole
shared tier at once, while each replica evicts only the affected entries of its in-process tier.

Flow (production)::

    admin change ─► DB commit ─► bus.publish(inv) ─► INCR generation, PUBLISH channel
                                                     │
                   every replica's listener ◄────────┘ set generation, evict in-process entries

When the listener (re)connects it reads the generation and clears the in-process tier, since
messages may have been missed while it was away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Scope = Literal["api_key", "organisation", "all"]

# The embedded gateway's internal endpoint that one-shot admin commands post invalidations to,
# and the header carrying the shared secret that authorises them.
INVALIDATION_PATH = "/v1/internal/cache/invalidate"
INVALIDATION_SECRET_HEADER = "x-odock-invalidation-secret"


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What changed: one key (by hash), everything of one organisation, or everything."""

    scope: Scope
    organisation_id: str | None = None
    key_hash: str | None = None

    def to_json(self) -> bytes:
        """Serialise for the wire."""
        return orjson.dumps(
            {"scope": self.scope, "organisation_id": self.organisation_id, "key_hash": self.key_hash}
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Invalidation:
        """Parse from the wire; raise ValueError when malformed."""
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("an invalidation must be a JSON object")
        scope = data.get("scope")
        organisation_id = data.get("organisation_id")
        key_hash = data.get("key_hash")
        if scope not in ("api_key", "organisation", "all"):
            raise ValueError("scope must be api_key, organisation or all")
        if not all(v is None or isinstance(v, str) for v in (organisation_id, key_hash)):
            raise ValueError("organisation_id and key_hash must be strings")
        # An invalidation that names nothing would evict nothing: refuse it rather than ignore it.
        if scope == "api_key" and not key_hash:
            raise ValueError("an api_key invalidation needs key_hash")
        if scope == "organisation" and not organisation_id:
            raise ValueError("an organisation invalidation needs organisation_id")
        return cls(scope=scope, organisation_id=organisation_id, key_hash=key_hash)


Listener = Callable[[Invalidation], None]


def notify(listeners: list[Listener], invalidation: Invalidation) -> None:
    """Call every listener; one that fails is logged and the rest still run."""
    for listener in listeners:
        try:
            listener(invalidation)
        except Exception:
            # Isolation: a failing listener must neither leave the other caches stale nor kill
            # the Redis listener task (after which this replica would never evict again).
            log.exception("cache invalidation listener %r failed", listener)


class InvalidationBus(Protocol):
    """Publishes invalidations and delivers them to local listeners."""

    @property
    def generation(self) -> int:
        """The current shared-tier generation."""

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` for every invalidation (local or remote)."""

    async def publish(self, invalidation: Invalidation) -> None:
        """Announce a change to every replica (including this one)."""

    async def start(self) -> None:
        """Begin listening."""

    async def stop(self) -> None:
        """Stop listening."""


class LocalInvalidationBus:
    """The embedded twin: one process, listeners called synchronously."""

    def __init__(self) -> None:
        self._generation = 0
        self._listeners: list[Listener] = []

    @property
    def generation(self) -> int:
        return self._generation

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, invalidation: Invalidation) -> None:
        self._generation += 1
        notify(self._listeners, invalidation)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisInvalidationBus:
    """Redis pub/sub plus a shared generation counter."""

    def __init__(self, redis: Redis, prefix: str, channel: str) -> None:
        self._redis = redis
        self._generation_key = prefix + "cache:generation"
        self._channel = channel
        self._generation = 0
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def generation(self) -> int:
        return self._generation

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, invalidation: Invalidation) -> None:
        generation = int(await self._redis.incr(self._generation_key))
        message = {"generation": generation, "invalidation": orjson.Fragment(invalidation.to_json())}
        payload = orjson.dumps(message)
        self._apply(generation, invalidation)
        await self._redis.publish(self._channel, payload)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._listen(), name="odock-invalidation-listener")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _apply(self, generation: int, invalidation: Invalidation) -> None:
        # Generations may arrive out of order (INCR and PUBLISH of two publishers interleave).
        self._generation = max(self._generation, generation)
        notify(self._listeners, invalidation)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "subscribe":
                            await self._resync()
                            backoff = 0.1
                        elif message.get("type") == "message":
                            self._on_message(message.get("data"))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("cache invalidation listener lost Redis (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _resync(self) -> None:
        # A subscribe confirmation arrives on the first subscription and on every
        # re-subscription, including those redis-py makes by itself when its client retries a
        # dropped connection. Messages may have been missed meanwhile: resync and start clean.
        self._apply(int(await self._redis.get(self._generation_key) or 0), Invalidation("all"))
        self._ready.set()

    def _on_message(self, data: object) -> None:
        if not isinstance(data, bytes | str):
            return
        try:
            message = orjson.loads(data)
            invalidation = Invalidation.from_json(orjson.dumps(message["invalidation"]))
            generation = int(message["generation"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed cache invalidation message")
            return
        self._apply(generation, invalidation)
