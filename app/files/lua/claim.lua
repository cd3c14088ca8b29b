-- Claim one download use. KEYS: file, tombstone   ARGV: nowMs
-- Returns {'ok'|'burned', field, value, ...} with `uses` already decremented, or {'gone', reason}, or {'missing'}.
-- The request that takes the last use deletes the record (crypto-shred) and marks the tombstone;
-- the caller then drops the blob's liveness key (its id is in the record).
if not is_live(ARGV[1]) then return not_live() end
local uses = redis.call('HINCRBY', KEYS[1], 'uses', -1)
local record = redis.call('HGETALL', KEYS[1])
if uses <= 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], 'burned', 'KEEPTTL')
  table.insert(record, 1, 'burned')
else
  table.insert(record, 1, 'ok')
end
return record
