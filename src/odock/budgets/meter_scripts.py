"""The Lua scripts behind ``RedisMeterStore``: one script call per operation, so each is atomic.

Key layout under the store's prefix ``P`` (the configured Redis prefix + ``meter:``)::

    P c:<counter key>   hash  used, reserved, limit          (created only by prime)
    P r:<request id>    hash  s = reserved|settled|released|rejected,
                              o = reserved|rejected (first reserve outcome, absent if none),
                              fk fl fu fr fq (shortfall of a rejection),
                              =<counter key> -> amount held (one field per line)
    P expiry            zset  request id scored by reservation expiry (ms, Redis clock)

KEYS[1] is always the key the script is routed by; counter keys are derived inside the
scripts from the prefix passed in ARGV, so on Redis Cluster the prefix must carry a hash tag
(``{odock}:``) to keep every key in one slot.
"""

from __future__ import annotations

# Lua numbers are doubles, exact only below 2^53 (about 9 million USD in nanos), so sums are
# compared in base-1e9 limbs; every signed 64-bit amount then compares exactly. Amounts are
# decimal strings without leading zeros (Python's ``str(int)`` or Redis' own integers).
_FITS = """
local function limbs(s)
  local n = #s
  if n <= 9 then return 0, tonumber(s) end
  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))
end
local function fits(used, reserved, amount, limit)
  -- Terms below 10^d and a limit of at least d + 2 digits (so at least 10^(d+1)): the sum,
  -- below 3 * 10^d, fits without the arithmetic (the common case of a limit far above use).
  if math.max(#used, #reserved, #amount) + 1 < #limit then return true end
  local uh, ul = limbs(used)
  local rh, rl = limbs(reserved)
  local ah, al = limbs(amount)
  local lh, ll = limbs(limit)
  local low = ul + rl + al
  local high = uh + rh + ah + math.floor(low / 1e9)
  low = low % 1e9
  return high < lh or (high == lh and low <= ll)
end
"""

_CLOCK = """
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# A record's fields come in one HGETALL (its state among them). A counter is asked whether it
# exists once per script, however many of the request's lines and actuals name it. A counter
# primed after a flush may not hold this reservation, hence the floor at zero.
_UNRESERVE = """
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
local present = {}
local function exists(counter)
  local known = present[counter]
  if known == nil then
    known = redis.call('EXISTS', counter) == 1
    present[counter] = known
  end
  return known
end
local function unreserve(fields, prefix)
  for i = 1, #fields, 2 do
    local name, amount = fields[i], fields[i + 1]
    if string.sub(name, 1, 1) == '=' and amount ~= '0' then
      local counter = prefix .. string.sub(name, 2)
      if exists(counter) then
        if redis.call('HINCRBY', counter, 'reserved', '-' .. amount) < 0 then
          redis.call('HSET', counter, 'reserved', '0')
        end
      end
    end
  end
end
"""

# KEYS: record, expiry index. ARGV: counter prefix, ttl ms, rejection memory ms, request id,
# then (counter key, amount, limit) per line. Prime creates a counter with all three fields, so
# a counter without ``used`` is missing (cold).
RESERVE = (
    _FITS
    + _CLOCK
    + """
local record, index = KEYS[1], KEYS[2]
local prefix = ARGV[1]
if redis.call('EXISTS', record) == 1 then
  local r = redis.call('HMGET', record, 'o', 'fk', 'fl', 'fu', 'fr', 'fq')
  return {'replay', r[1] or '', r[2] or '', r[3] or '0', r[4] or '0', r[5] or '0', r[6] or '0'}
end
local lines, cold = {}, {'cold'}
for i = 5, #ARGV, 3 do
  local counter = prefix .. ARGV[i]
  local c = redis.call('HMGET', counter, 'used', 'reserved', 'limit')
  lines[#lines + 1] = {ARGV[i], counter, ARGV[i + 1], ARGV[i + 2], c}
  if not c[1] then cold[#cold + 1] = ARGV[i] end
end
if #cold > 1 then return cold end
for _, line in ipairs(lines) do
  local c = line[5]
  if not fits(c[1], c[2], line[3], line[4]) then
    redis.call('HSET', record, 's', 'rejected', 'o', 'rejected', 'fk', line[1], 'fl', line[4],
      'fu', c[1], 'fr', c[2], 'fq', line[3])
    redis.call('PEXPIRE', record, ARGV[3])
    return {'rejected', line[1], line[4], c[1], c[2], line[3]}
  end
end
local fields = {'s', 'reserved', 'o', 'reserved'}
for _, line in ipairs(lines) do
  redis.call('HINCRBY', line[2], 'reserved', line[3])
  if line[5][3] ~= line[4] then redis.call('HSET', line[2], 'limit', line[4]) end
  fields[#fields + 1] = '=' .. line[1]
  fields[#fields + 1] = line[3]
end
redis.call('HSET', record, unpack(fields))
redis.call('ZADD', index, clock_ms() + tonumber(ARGV[2]), ARGV[4])
return {'reserved'}
"""
)

# KEYS: record, expiry index. ARGV: counter prefix, memory ms, request id, then
# (counter key, actual) pairs.
SETTLE = (
    _UNRESERVE
    + """
local record, index, prefix = KEYS[1], KEYS[2], ARGV[1]
local fields = redis.call('HGETALL', record)
local state = field(fields, 's')
if state == 'settled' then return 'duplicate' end
local outcome = 'unreserved'
if state == 'reserved' then
  unreserve(fields, prefix)
  outcome = 'settled'
end
for i = 4, #ARGV, 2 do
  local counter = prefix .. ARGV[i]
  -- a cold counter is primed from the ledger, which already holds this actual
  if exists(counter) then redis.call('HINCRBY', counter, 'used', ARGV[i + 1]) end
end
redis.call('HSET', record, 's', 'settled')
redis.call('PEXPIRE', record, ARGV[2])
redis.call('ZREM', index, ARGV[3])
return outcome
"""
)

# KEYS: record, expiry index. ARGV: counter prefix, memory ms, request id.
RELEASE = (
    _UNRESERVE
    + """
local record, index, prefix = KEYS[1], KEYS[2], ARGV[1]
redis.call('ZREM', index, ARGV[3])
local fields = redis.call('HGETALL', record)
if field(fields, 's') ~= 'reserved' then return 'nothing' end
unreserve(fields, prefix)
redis.call('HSET', record, 's', 'released')
redis.call('PEXPIRE', record, ARGV[2])
return 'released'
"""
)

# KEYS: counter. ARGV: used, reserved, limit, ttl ms or ''.
PRIME = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'used', ARGV[1], 'reserved', ARGV[2], 'limit', ARGV[3])
if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# KEYS: expiry index. ARGV: now ms or '' for the Redis clock, maximum count.
EXPIRED = (
    _CLOCK
    + """
local now = ARGV[1]
if now == '' then now = clock_ms() end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
"""
)

# KEYS: counters. Missing counters come back as three nils.
SNAPSHOT = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, 'used', 'reserved', 'limit')
end
return out
"""
