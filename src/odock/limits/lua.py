"""The Redis Lua scripts behind :class:`~odock.limits.limiter.RedisRateLimiter`.

Each operation is one script call, so it is atomic across every scope it touches. The clock is
Redis ``TIME``, so gateway replicas with skewed clocks agree. Keys (under the configured prefix):

- ``rl:<scope>:<id>:rate`` string: the token bucket's theoretical arrival time (GCRA), in µs.
- ``rl:<scope>:<id>:rpm`` / ``:tpm`` hash: one-second bucket (unix second) → count; 60 live buckets.
- ``rl:<scope>:<id>:conc`` sorted set: lease member → expiry (ms).
- ``rl:receipt:<token>`` string: marks a receipt as reconciled (expires after two windows).
"""

from __future__ import annotations

ADMIT = """
-- KEYS[i]: storage key of check i.  ARGV[1]: lease member; then 6 values per check:
-- kind (rate|rpm|tpm|conc), limit, amount, rate per second, lease ttl ms, shadow (0|1).
-- Phase 1 evaluates every check; phase 2 applies all of them only if no enforced check
-- refused. Returns {now_s, applied, then per check: allowed, remaining, wait_ms}.
local WINDOW = 60
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now_us = now_s * 1000000 + tonumber(clock[2])
local now_ms = math.floor(now_us / 1000)

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

local function window_eval(key, limit, amount)
  local flat = redis.call('HGETALL', key)
  local live, stale, total, oldest = {}, {}, 0, now_s
  for j = 1, #flat, 2 do
    local second = tonumber(flat[j])
    if second <= now_s - WINDOW then
      stale[#stale + 1] = flat[j]
    else
      local count = tonumber(flat[j + 1])
      total = total + count
      live[#live + 1] = {second, count}
      if second < oldest then oldest = second end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  if total + amount <= limit then
    return 1, limit - total - amount, (oldest + WINDOW) * 1000 - now_ms
  end
  if amount <= limit then
    -- Wait until enough of the oldest buckets have left the window.
    table.sort(live, function(a, b) return a[1] < b[1] end)
    local excess = total + amount - limit
    for _, bucket in ipairs(live) do
      excess = excess - bucket[2]
      if excess <= 0 then return 0, 0, (bucket[1] + WINDOW) * 1000 - now_ms end
    end
  end
  return 0, 0, WINDOW * 1000
end

local function lease_eval(key, limit)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  local held = redis.call('ZCARD', key)
  if held < limit then return 1, limit - held - 1, 0 end
  return 0, 0, 1000
end

local function apply(key, kind, amount, ttl_ms, new_tat)
  if kind == 'rate' then
    local px = math.ceil((new_tat - now_us) / 1000) + 1
    redis.call('SET', key, string.format('%.0f', new_tat), 'PX', px)
  elseif kind == 'conc' then
    redis.call('ZADD', key, now_ms + ttl_ms, ARGV[1])
    if redis.call('PTTL', key) < ttl_ms then redis.call('PEXPIRE', key, ttl_ms) end
  else
    redis.call('HINCRBY', key, now_s, amount)
    redis.call('PEXPIRE', key, (WINDOW + 1) * 1000)
  end
end

local result = {now_s, 0}
local pending = {}
local refused = false
for i, key in ipairs(KEYS) do
  local a = 1 + (i - 1) * 6
  local kind, limit, amount = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local ok, remaining, wait, new_tat
  if kind == 'rate' then
    ok, remaining, wait, new_tat = rate_eval(key, limit, tonumber(ARGV[a + 4]))
  elseif kind == 'conc' then
    ok, remaining, wait = lease_eval(key, limit)
  else
    ok, remaining, wait = window_eval(key, limit, amount)
  end
  if ok == 0 and ARGV[a + 6] ~= '1' then refused = true end
  pending[i] = {kind, amount, tonumber(ARGV[a + 5]), new_tat}
  result[#result + 1] = ok
  result[#result + 1] = remaining
  result[#result + 1] = math.ceil(wait)
end
if refused then return result end
for i, key in ipairs(KEYS) do
  local p = pending[i]
  apply(key, p[1], p[2], p[3], p[4])
end
result[2] = 1
return result
"""

RELEASE = """
-- KEYS: concurrency sets holding the lease.  ARGV[1]: lease member.  Removing is idempotent.
for _, key in ipairs(KEYS) do redis.call('ZREM', key, ARGV[1]) end
return 1
"""

RECONCILE = """
-- KEYS[1]: the receipt's reconciled marker; KEYS[2..]: TPM windows.
-- ARGV[1]: marker ttl ms; then per window: bucket second, delta (actual - estimate).
-- The marker makes a second call a no-op; a bucket that left the window is not touched.
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local now_s = tonumber(redis.call('TIME')[1])
for i = 2, #KEYS do
  local bucket, delta = ARGV[2 * i - 2], tonumber(ARGV[2 * i - 1])
  if tonumber(bucket) > now_s - 60 and redis.call('HEXISTS', KEYS[i], bucket) == 1 then
    if redis.call('HINCRBY', KEYS[i], bucket, delta) < 0 then
      redis.call('HSET', KEYS[i], bucket, 0)
    end
  end
end
return 1
"""
