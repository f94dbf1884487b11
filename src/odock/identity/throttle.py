"""Login throttling: failed sign-ins counted per e-mail address and per client IP, shared by replicas.

Flow of one password sign-in (reserve, then settle, so parallel guesses cannot slip past)::

    refused = await throttle.reserve(email, ip)   # counts this attempt as a failure up front
    if refused: 429 login_throttled, Retry-After
    ... verify the password ...
    on success: await throttle.succeeded(email, ip)   # the e-mail's count is cleared, the IP's refunded

Each counter is a fixed window that opens at the first failure and lasts
``login_failure_window_seconds``; past ``login_max_failures`` in it, attempts are refused
without checking the password until the window closes. In production the counters live in Redis
(one Lua call increments both and reads their expiry atomically), so throttling holds across
replicas; the embedded mode keeps them in memory.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from odock.errors import LoginThrottled

_RESERVE = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then redis.call('PEXPIRE', key, ARGV[1]); ttl = tonumber(ARGV[1]) end
  out[#out + 1] = n
  out[#out + 1] = ttl
end
return out
"""

_REFUND = """
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
"""


@dataclass(frozen=True)
class Count:
    """A counter after an increment: its value and the seconds until its window closes."""

    value: int
    seconds_left: float


class FailureCounters(Protocol):
    """Fixed-window counters: increment many at once, refund one, clear one."""

    async def increment(self, keys: Sequence[str], window: float) -> list[Count]:
        """Add one to each key (opening a window of ``window`` seconds at its first count)."""

    async def refund(self, key: str) -> None:
        """Take one back from ``key``."""

    async def clear(self, key: str) -> None:
        """Forget ``key``."""


class MemoryFailureCounters:
    """The in-process twin: atomic because nothing awaits between reading and writing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}  # key -> (count, window end)

    async def increment(self, keys: Sequence[str], window: float) -> list[Count]:
        """Add one to each key (opening a window of ``window`` seconds at its first count)."""
        now = self._clock()
        if len(self._counts) > 100_000:  # bound memory: drop closed windows
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        out = []
        for key in keys:
            count, ends = self._counts.get(key, (0, now + window))
            if ends <= now:
                count, ends = 0, now + window
            self._counts[key] = (count + 1, ends)
            out.append(Count(count + 1, ends - now))
        return out

    async def refund(self, key: str) -> None:
        """Take one back from ``key``."""
        count, ends = self._counts.get(key, (0, 0.0))
        if count <= 1:
            self._counts.pop(key, None)
        else:
            self._counts[key] = (count - 1, ends)

    async def clear(self, key: str) -> None:
        """Forget ``key``."""
        self._counts.pop(key, None)


class RedisFailureCounters:
    """Counters in Redis under ``<prefix>login:``, shared by every replica."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "login:"
        self._reserve = redis.register_script(_RESERVE)
        self._refund = redis.register_script(_REFUND)

    async def increment(self, keys: Sequence[str], window: float) -> list[Count]:
        """Add one to each key (opening a window of ``window`` seconds at its first count)."""
        raw = await self._reserve(keys=[self._prefix + k for k in keys], args=[max(1, int(window * 1000))])
        return [Count(int(raw[i]), int(raw[i + 1]) / 1000) for i in range(0, len(raw), 2)]

    async def refund(self, key: str) -> None:
        """Take one back from ``key``."""
        await self._refund(keys=[self._prefix + key])

    async def clear(self, key: str) -> None:
        """Forget ``key``."""
        await self._redis.delete(self._prefix + key)


def _email_key(email: str) -> str:
    # Hashed: a Redis key listing must not reveal who tried to sign in.
    return "email:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _ip_key(ip: str) -> str:
    return "ip:" + ip


class LoginThrottle:
    """Refuses sign-in attempts past ``max_failures`` failures per e-mail or per IP in the window."""

    def __init__(self, counters: FailureCounters, *, max_failures: int, window_seconds: float) -> None:
        self._counters = counters
        self._max = max_failures
        self._window = window_seconds

    def _keys(self, email: str, ip: str | None) -> list[str]:
        keys = [_email_key(email)]
        if ip:
            keys.append(_ip_key(ip))
        return keys

    async def reserve(self, email: str, ip: str | None) -> None:
        """Count this attempt as a failure in advance; :class:`LoginThrottled` when over the limit."""
        counts = await self._counters.increment(self._keys(email, ip), self._window)
        over = [c for c in counts if c.value > self._max]
        if over:
            wait = max(c.seconds_left for c in over)
            retry = max(1, math.ceil(wait))
            raise LoginThrottled(
                f"too many failed sign-ins; try again in {retry} seconds",
                headers={"Retry-After": str(retry)},
                extra={"retry_after": retry},
            )

    async def succeeded(self, email: str, ip: str | None) -> None:
        """The attempt succeeded: clear the e-mail's failures and refund the IP's reservation."""
        await self._counters.clear(_email_key(email))
        if ip:
            await self._counters.refund(_ip_key(ip))
