"""The Lua scripts behind ``RedisRoutingStore``: one script call per operation, so each is atomic.

Key layout under the store's prefix ``P`` (the configured Redis prefix + ``route:``)::

    P turn:<key>        string  the next round-robin turn (expires a day after its last use)
    P cb:<deployment>   hash    f  = consecutive failures, counted while fx (ms) is ahead,
                                o  = open until (ms; absent = closed; in the past = half-open),
                                p  = probe lease until (ms)
                                (the hash expires when its count has lapsed, or a day after o)

Times are Redis ``TIME`` in milliseconds, so replicas with skewed clocks agree. ``BREAKERS``
reads several keys at once: on Redis Cluster the prefix must carry a hash tag (``{odock}:``).
Every script that touches a breaker answers its state as ``{failures, open_until ms or -1}``.
"""

from __future__ import annotations

_CLOCK = """
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live_failures(f, fx, now)
  if f and fx and tonumber(fx) > now then return tonumber(f) end
  return 0
end
"""

# KEYS: turn counter. ARGV: memory ms.
NEXT_TURN = """
local turn = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return turn - 1
"""

# KEYS: breakers. Answers two numbers per breaker.
BREAKERS = (
    _CLOCK
    + """
local now = clock_ms()
local out = {}
for _, key in ipairs(KEYS) do
  local b = redis.call('HMGET', key, 'f', 'fx', 'o')
  out[#out + 1] = live_failures(b[1], b[2], now)
  out[#out + 1] = tonumber(b[3]) or -1
end
return out
"""
)

# KEYS: breaker. ARGV: threshold, window ms, cooldown ms, retry-after ms or '', memory ms.
# The same rule as ``odock.routing.store.opens``; the end only moves later; the probe lease goes.
RECORD_FAILURE = (
    _CLOCK
    + """
local now = clock_ms()
local b = redis.call('HMGET', KEYS[1], 'f', 'fx', 'o')
local failures = live_failures(b[1], b[2], now) + 1
local open_until = tonumber(b[3])
local half_open = open_until ~= nil and now >= open_until
local counted_until = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'f', failures, 'fx', string.format('%d', counted_until))
if failures >= tonumber(ARGV[1]) or ARGV[4] ~= '' or half_open then
  local ends = now + math.max(tonumber(ARGV[3]), tonumber(ARGV[4]) or 0)
  if open_until == nil or ends > open_until then
    open_until = ends
    redis.call('HSET', KEYS[1], 'o', string.format('%d', open_until))
  end
  redis.call('HDEL', KEYS[1], 'p')
end
local forget_at = counted_until
if open_until ~= nil then forget_at = math.max(forget_at, open_until + tonumber(ARGV[5])) end
redis.call('PEXPIREAT', KEYS[1], string.format('%d', forget_at))
return {failures, open_until or -1}
"""
)

# KEYS: breaker.
RECORD_SUCCESS = """
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: breaker. ARGV: lease ms. Answers 1 to the one caller that takes the probe.
CLAIM_PROBE = (
    _CLOCK
    + """
local now = clock_ms()
local b = redis.call('HMGET', KEYS[1], 'o', 'p')
local open_until = tonumber(b[1])
if open_until == nil or now < open_until then return 0 end
if tonumber(b[2]) and now < tonumber(b[2]) then return 0 end
redis.call('HSET', KEYS[1], 'p', string.format('%d', now + tonumber(ARGV[1])))
return 1
"""
)
