"""The Redis Lua scripts behind :class:`~odock.limits.limiter.RedisRateLimiter`.

Each operation is one script call, so it is atomic across every scope it touches. The clock is
Redis ``TIME``, so gateway replicas with skewed clocks agree. Keys (under the configured prefix):

- ``rl:<scope>:<id>:rate`` string: the token bucket's theoretical arrival time (GCRA), in µs.
- ``rl:<scope>:<id>:rpm.v2`` / ``:tpm.v2`` hash: one-second bucket (unix second) → count (60 live
  buckets), plus ``n`` (their running total) and ``o`` (the oldest live second). The ``.v2``
  suffix keeps this layout apart from the earlier one (buckets only), whose scripts would choke
  on the extra fields while replicas of both versions run side by side. The hash expires 61 s
  after the first count of its newest second (so never while a bucket is live).
- ``rl:<scope>:<id>:conc`` sorted set: lease member → expiry (ms).
- ``rl:receipt:<token>`` string: marks a receipt as reconciled (expires after two windows).
"""

from __future__ import annotations

# Every ``redis.call`` argument that is a Lua number is formatted by Redis with ``%.17g``, which
# costs about as much as a simple command; an argument that already is a string (from ARGV, a
# reply, or formatted once) does not. The scripts below pass strings where they can.

# Move a TPM window's reserved bucket by ``delta`` (ARGV text; never below zero) and its running
# total by as much; a bucket no longer in the window is left alone.
_REFUND = """
local function refund(key, bucket, delta)
  if redis.call('HEXISTS', key, bucket) == 0 then return end
  local count = redis.call('HINCRBY', key, bucket, delta)
  if count < 0 then
    redis.call('HSET', key, bucket, 0)
    delta = tonumber(delta) - count
  end
  if redis.call('HINCRBY', key, 'n', delta) < 0 then redis.call('HSET', key, 'n', 0) end
end
"""

ADMIT = """
-- KEYS[i]: storage key of check i.  ARGV[1]: lease member; then 6 values per check:
-- kind (rate|rpm|tpm|conc), limit, amount, rate per second, lease ttl ms, shadow (0|1).
-- Phase 1 evaluates every check; phase 2 applies all of them only if no enforced check
-- refused. Returns {now_s, applied, then per check: allowed, remaining, wait_ms}.
local WINDOW = 60
local clock = redis.call('TIME')
local second = clock[1] -- this second's window bucket (a field name)
local now_s = tonumber(second)
local now_us = now_s * 1000000 + tonumber(clock[2])
local now_ms = math.floor(now_us / 1000)
local now_ms_text = string.format('%d', now_ms)

local function rate_eval(key, capacity, rate)
  local interval = 1000000 / rate
  local tat = tonumber(redis.call('GET', key)) or now_us
  if tat < now_us then tat = now_us end
  local new_tat = tat + interval
  local allow_at = new_tat - capacity * interval
  if allow_at > now_us + 1 then -- 1 us of slack: sums of float intervals drift
    return 0, 0, (allow_at - now_us) / 1000, new_tat
  end
  return 1, math.floor((now_us - allow_at) / interval + 1e-6), (new_tat - now_us) / 1000, new_tat
end

-- A window hash holds one field per live second, plus 'n' (their running total) and 'o' (the
-- oldest live second), so a check reads two fields instead of summing sixty.
local function window_prune(key)
  local meta = redis.call('HMGET', key, 'n', 'o')
  local total, oldest = tonumber(meta[1]) or 0, tonumber(meta[2])
  local cutoff = now_s - WINDOW
  if oldest == nil or oldest > cutoff then return total, oldest end
  -- The key expires about a minute after its newest second, so at most ~61 are stale here.
  local stale = {}
  for stale_second = oldest, cutoff do stale[#stale + 1] = stale_second end
  for _, count in ipairs(redis.call('HMGET', key, unpack(stale))) do
    total = total - (tonumber(count) or 0)
  end
  redis.call('HDEL', key, unpack(stale))
  oldest = nil
  for live = cutoff + 1, now_s do
    if redis.call('HEXISTS', key, live) == 1 then oldest = live break end
  end
  if oldest == nil then
    redis.call('DEL', key)
    return 0, nil
  end
  if total < 0 then total = 0 end
  redis.call('HSET', key, 'n', total, 'o', oldest)
  return total, oldest
end

local function window_eval(key, limit, amount)
  local total, oldest = window_prune(key)
  if total + amount <= limit then
    return 1, limit - total - amount, ((oldest or now_s) + WINDOW) * 1000 - now_ms, oldest
  end
  if amount <= limit then
    -- Wait until enough of the oldest buckets have left the window (a denial: the rare path).
    local flat, live = redis.call('HGETALL', key), {}
    for j = 1, #flat, 2 do
      local counted = tonumber(flat[j])
      if counted then live[#live + 1] = {counted, tonumber(flat[j + 1])} end
    end
    table.sort(live, function(a, b) return a[1] < b[1] end)
    local excess = total + amount - limit
    for _, bucket in ipairs(live) do
      excess = excess - bucket[2]
      if excess <= 0 then return 0, 0, (bucket[1] + WINDOW) * 1000 - now_ms, oldest end
    end
  end
  return 0, 0, WINDOW * 1000, oldest
end

local function lease_eval(key, limit)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms_text)
  local held = redis.call('ZCARD', key)
  if held < limit then return 1, limit - held - 1, 0 end
  return 0, 0, 1000
end

-- Take a window's amount at this second. 'o' is set only when phase 1 found none, and the key's
-- expiry (a minute after its newest second, plus one) moves only with the second's first count:
-- a count equal to the amount is a new bucket (or one reconciled down to zero, which is harmless).
local function window_take(key, amount, oldest, a)
  if redis.call('HINCRBY', key, second, ARGV[a + 3]) == amount then
    redis.call('PEXPIRE', key, (WINDOW + 1) * 1000)
  end
  redis.call('HINCRBY', key, 'n', ARGV[a + 3])
  if oldest == nil then redis.call('HSETNX', key, 'o', second) end
end

local function apply(key, kind, a, amount, state)
  if kind == 'rate' then
    local px = math.ceil((state - now_us) / 1000) + 1
    redis.call('SET', key, string.format('%.0f', state), 'PX', string.format('%d', px))
  elseif kind == 'conc' then
    local ttl_ms = tonumber(ARGV[a + 5])
    redis.call('ZADD', key, now_ms + ttl_ms, ARGV[1])
    if redis.call('PTTL', key) < ttl_ms then redis.call('PEXPIRE', key, ARGV[a + 5]) end
  else
    window_take(key, amount, state, a)
  end
end

local result = {now_s, 0}
-- Per check, what phase 2 needs: a bucket's new arrival time, or a window's amount and the
-- oldest second phase 1 found (nil when none).
local amounts, states = {}, {}
local refused = false
for i, key in ipairs(KEYS) do
  local a = 1 + (i - 1) * 6
  local kind, limit = ARGV[a + 1], tonumber(ARGV[a + 2])
  local ok, remaining, wait
  if kind == 'rate' then
    ok, remaining, wait, states[i] = rate_eval(key, limit, tonumber(ARGV[a + 4]))
  elseif kind == 'conc' then
    ok, remaining, wait = lease_eval(key, limit)
  else
    local amount = tonumber(ARGV[a + 3])
    amounts[i] = amount
    ok, remaining, wait, states[i] = window_eval(key, limit, amount)
  end
  if ok == 0 and ARGV[a + 6] ~= '1' then refused = true end
  result[#result + 1] = ok
  result[#result + 1] = remaining
  result[#result + 1] = math.ceil(wait)
end
if refused then return result end
for i, key in ipairs(KEYS) do
  local a = 1 + (i - 1) * 6
  apply(key, ARGV[a + 1], a, amounts[i], states[i])
end
result[2] = 1
return result
"""

RELEASE = """
-- KEYS: concurrency sets holding the lease.  ARGV[1]: lease member.  Removing is idempotent.
for _, key in ipairs(KEYS) do redis.call('ZREM', key, ARGV[1]) end
return 1
"""

RECONCILE = (
    _REFUND
    + """
-- KEYS[1]: the receipt's reconciled marker; KEYS[2..]: TPM windows.
-- ARGV[1]: marker ttl ms; then per window: bucket second, delta (actual - estimate).
-- The marker makes a second call a no-op; a bucket that left the window is not touched.
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local now_s = tonumber(redis.call('TIME')[1])
for i = 2, #KEYS do
  local bucket = ARGV[2 * i - 2]
  if tonumber(bucket) > now_s - 60 then refund(KEYS[i], bucket, ARGV[2 * i - 1]) end
end
return 1
"""
)

FINISH = (
    _REFUND
    + """
-- A request's whole post-flight in one call: release leases, reconcile TPM reservations.
-- ARGV[1]: number of leases L; ARGV[2]: number of reconcile groups G.
-- KEYS[1..L]: concurrency sets; ARGV[2 + i]: the lease member to remove from KEYS[i].
-- Then per group: KEYS: its reconciled marker, then its n TPM windows;
--   ARGV: marker ttl ms, n, then per window: bucket second, delta (actual - estimate).
-- Each group's marker makes a repeated reconcile a no-op, as RECONCILE does.
local leases, groups = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, leases do redis.call('ZREM', KEYS[i], ARGV[2 + i]) end
local k, a = leases + 1, leases + 3
local now_s = nil
for _ = 1, groups do
  local marker, ttl, n = KEYS[k], ARGV[a], tonumber(ARGV[a + 1])
  local fresh = redis.call('SET', marker, '1', 'NX', 'PX', ttl)
  if fresh then now_s = now_s or tonumber(redis.call('TIME')[1]) end
  for j = 1, n do
    local bucket = ARGV[a + 2 * j]
    if fresh and tonumber(bucket) > now_s - 60 then
      refund(KEYS[k + j], bucket, ARGV[a + 2 * j + 1])
    end
  end
  k, a = k + 1 + n, a + 2 + 2 * n
end
return 1
"""
)
