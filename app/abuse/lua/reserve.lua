-- Reserve one failed-lookup slot before a lookup's KDF work (SPEC §10.4): a client may have at most
-- `limit` lookups failed or in flight per window, so concurrent guesses cannot outrun the block.
-- KEYS: client counts, client block, aggregate counts, aggregate block
-- ARGV: limit, aggregateLimit (0 = the aggregate is not counted), windowSeconds
-- Counts are hashes {failed, pending}. Returns {'ok'}, {'blocked', pttlMs} or {'full'}.
local function block_ttl(key)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then return ttl end
  return nil
end

local counted = tonumber(ARGV[2]) > 0
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
  redis.call('HINCRBY', key, 'pending', 1)
  -- The window starts with a client's first lookup and ends WINDOW seconds later, whatever follows.
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[3]) end
end
take(KEYS[1])
if counted then take(KEYS[3]) end
return {'ok'}
