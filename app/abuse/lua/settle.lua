-- Settle a reserved slot with the lookup's outcome. A hit (or a 410) gives the slot back; a miss
-- becomes a failure, and the failure that reaches the limit starts a block.
-- KEYS: client counts, client block, aggregate counts, aggregate block, block list
-- ARGV: outcome ('hit'|'miss'), limit, aggregateLimit (0 = not counted), blockMs, nowMs, clientId, aggregateId
-- Returns {clientBlockStarted, aggregateBlockStarted} as 0/1.
local counted = tonumber(ARGV[3]) > 0

local function release(key)
  if tonumber(redis.call('HGET', key, 'pending') or '0') > 0 then redis.call('HINCRBY', key, 'pending', -1) end
end

local function fail(counts, block, limit, id)
  release(counts)
  local failed = redis.call('HINCRBY', counts, 'failed', 1)
  if failed < limit or redis.call('EXISTS', block) == 1 then return 0 end
  -- The block key's TTL is the block: it ends by itself, with no job. The list is for admins only,
  -- pruned by score whenever it is written.
  redis.call('SET', block, '1', 'PX', ARGV[4])
  redis.call('DEL', counts)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[5])
  redis.call('ZADD', KEYS[5], tonumber(ARGV[5]) + tonumber(ARGV[4]), id)
  return 1
end

if ARGV[1] == 'hit' then
  release(KEYS[1])
  if counted then release(KEYS[3]) end
  return {0, 0}
end
local client = fail(KEYS[1], KEYS[2], tonumber(ARGV[2]), ARGV[6])
local aggregate = 0
if counted then aggregate = fail(KEYS[3], KEYS[4], tonumber(ARGV[3]), ARGV[7]) end
return {client, aggregate}
