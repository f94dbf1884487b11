"""The production routing store: breakers and round-robin turns in Redis, shared by every replica.

Every operation is one Lua script call (``store_scripts``), so a failure's count-and-open and a
probe's claim are atomic against every other gateway process, and clocked by Redis ``TIME``.
Any failure to talk to Redis becomes ``RoutingStateUnavailable``; ``Breakers`` fails open on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from odock.cache.redis_link import RedisLink
from odock.errors import RoutingStateUnavailable
from odock.routing import store_scripts
from odock.routing.store import BREAKER_MEMORY_SECONDS, TURN_MEMORY_SECONDS, BreakerState


class RedisRoutingStore:
    """Breakers and turns in Redis; every key lives under ``<prefix>route:``."""

    def __init__(self, redis: Redis | RedisLink, prefix: str) -> None:
        self._turn_prefix = prefix + "route:turn:"
        self._breaker_prefix = prefix + "route:cb:"
        # register_script sends EVALSHA and loads the script once on NOSCRIPT (both clients).
        self._next_turn = redis.register_script(store_scripts.NEXT_TURN)
        self._breakers = redis.register_script(store_scripts.BREAKERS)
        self._record_failure = redis.register_script(store_scripts.RECORD_FAILURE)
        self._record_success = redis.register_script(store_scripts.RECORD_SUCCESS)
        self._claim_probe = redis.register_script(store_scripts.CLAIM_PROBE)

    async def next_turn(self, key: str) -> int:
        """A shared counter: 0, 1, 2, ... per key (kept a day after its last use)."""
        async with _translated():
            reply = await self._next_turn(keys=[self._turn_prefix + key], args=[_ms(TURN_MEMORY_SECONDS)])
        return int(reply)

    async def breakers(self, deployments: Sequence[str]) -> dict[str, BreakerState]:
        """Every named deployment's breaker, in one script call (unknown ones are CLOSED)."""
        if not deployments:
            return {}
        async with _translated():
            reply = await self._breakers(keys=[self._breaker_prefix + name for name in deployments])
        return {name: _state(reply[2 * i], reply[2 * i + 1]) for i, name in enumerate(deployments)}

    async def record_failure(
        self,
        deployment: str,
        *,
        threshold: int,
        window_seconds: float,
        cooldown_seconds: float,
        retry_after: float | None,
    ) -> BreakerState:
        """Count one failure atomically; open the breaker when due; the state after it."""
        args: list[str | int] = [
            threshold,
            _ms(window_seconds),
            _ms(cooldown_seconds),
            "" if retry_after is None else _ms(retry_after),
            _ms(BREAKER_MEMORY_SECONDS),
        ]
        async with _translated():
            failures, open_until = await self._record_failure(keys=[self._breaker(deployment)], args=args)
        return _state(failures, open_until)

    async def record_success(self, deployment: str) -> None:
        """Close the breaker: the key goes, with its count, cooldown and probe lease."""
        async with _translated():
            await self._record_success(keys=[self._breaker(deployment)])

    async def claim_probe(self, deployment: str, *, lease_seconds: float) -> bool:
        """While half-open, True for exactly one caller (of any replica) per lease period."""
        async with _translated():
            reply = await self._claim_probe(keys=[self._breaker(deployment)], args=[_ms(lease_seconds)])
        return bool(reply)

    def _breaker(self, deployment: str) -> str:
        return self._breaker_prefix + deployment


def _state(failures: Any, open_until_ms: Any) -> BreakerState:
    """A breaker from the scripts' two numbers (open until -1 means closed)."""
    until = int(open_until_ms)
    return BreakerState(int(failures), None if until < 0 else until / 1000)


def _ms(seconds: float) -> int:
    """Whole milliseconds, never negative (a zero cooldown is half-open at once)."""
    return max(0, round(seconds * 1000))


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """Turn any failure to reach Redis into ``RoutingStateUnavailable``."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise RoutingStateUnavailable(f"routing state unreachable: {type(exc).__name__}") from exc
