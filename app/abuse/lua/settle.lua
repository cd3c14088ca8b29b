-- Settle a reserved slot with the lookup's outcome. A hit (or a 410) gives the slot back; a miss
-- becomes a failure, and the failure that reaches the limit starts a block.
-- KEYS: client counts, client block, aggregate counts, aggregate block, block list
-- ARGV: outcome ('hit'|'miss'), limit, aggregateLimit (0 = not counted), blockMs, nowMs, clientId,
--       aggregateId, windowSeconds, clientWindow, aggregateWindow (the slot's, from reserve.lua), freshWindowId
-- Returns {clientBlockStarted, aggregateBlockStarted} as 0/1.
local counted = tonumber(ARGV[3]) > 0
local window = tonumber(ARGV[8])

local function settle(counts, block, limit, id, slotWindow)
  -- The slot belongs to its window only: that window may have ended while the lookup ran (expired,
  -- or deleted by a block) and a later lookup may have started the next one, whose slots are not ours.
  local own = slotWindow ~= '' and redis.call('HGET', counts, 'window') == slotWindow
  if own and tonumber(redis.call('HGET', counts, 'pending') or '0') > 0 then redis.call('HINCRBY', counts, 'pending', -1) end
  if ARGV[1] ~= 'miss' then return 0 end
  -- A miss whose window has ended counts in the current window (starting one if there is none), so
  -- a guess timed across the end of a window is not forgotten; during a block there is nothing to add.
  if not own and redis.call('EXISTS', block) == 1 then return 0 end
  redis.call('HSETNX', counts, 'window', ARGV[11])
  local failed = redis.call('HINCRBY', counts, 'failed', 1)
  -- No count lives without an expiry, whatever wrote it first.
  if redis.call('TTL', counts) < 0 then redis.call('EXPIRE', counts, window) end
  if failed < limit or redis.call('EXISTS', block) == 1 then return 0 end
  -- The block key's TTL is the block: it ends by itself, with no job. The list is for admins only,
  -- pruned by score whenever it is written.
  redis.call('SET', block, '1', 'PX', ARGV[4])
  redis.call('DEL', counts)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[5])
  redis.call('ZADD', KEYS[5], tonumber(ARGV[5]) + tonumber(ARGV[4]), id)
  return 1
end

local client = settle(KEYS[1], KEYS[2], tonumber(ARGV[2]), ARGV[6], ARGV[9])
local aggregate = 0
if counted then aggregate = settle(KEYS[3], KEYS[4], tonumber(ARGV[3]), ARGV[7], ARGV[10]) end
return {client, aggregate}
