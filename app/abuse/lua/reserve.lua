-- Reserve one failed-lookup slot before a lookup's KDF work (SPEC §10.4): a client may have at most
-- `limit` lookups failed or in flight per window, so concurrent guesses cannot outrun the block.
-- KEYS: client counts, client block, aggregate counts, aggregate block
-- ARGV: limit, aggregateLimit (0 = the aggregate is not counted), windowSeconds, freshWindowId
-- Counts are hashes {failed, pending, window}: `window` names this window (ARGV[4] of the reserve
-- that started it), and the slot carries it to settle.lua, which touches only the window it names.
-- Returns {'ok', clientWindow, aggregateWindow ('' when not counted)}, {'blocked', pttlMs} or {'full'}.
local counted = tonumber(ARGV[2]) > 0
local window = tonumber(ARGV[3])

-- Every count ends with its window. One left without an expiry (by an older settle.lua) gets one
-- back here, before it is read: otherwise a full one would refuse its client for ever.
local function heal(key)
  if redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, window) end
end
heal(KEYS[1])
if counted then heal(KEYS[3]) end

local function block_ttl(key)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then return ttl end
  return nil
end

local ttl = block_ttl(KEYS[2]) or (counted and block_ttl(KEYS[4]))
if ttl then return {'blocked', ttl} end

local function has_room(key, limit)
  local failed = tonumber(redis.call('HGET', key, 'failed') or '0')
  local pending = tonumber(redis.call('HGET', key, 'pending') or '0')
  return failed + pending < limit
end
if not has_room(KEYS[1], tonumber(ARGV[1])) then return {'full'} end
if counted and not has_room(KEYS[3], tonumber(ARGV[2])) then return {'full'} end

local function take(key)
  -- The window starts with a client's first lookup and ends WINDOW seconds later, whatever follows.
  redis.call('HSETNX', key, 'window', ARGV[4])
  redis.call('HINCRBY', key, 'pending', 1)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, window) end
  return redis.call('HGET', key, 'window')
end
local client = take(KEYS[1])
local aggregate = ''
if counted then aggregate = take(KEYS[3]) end
return {'ok', client, aggregate}
