-- Claim one download use. KEYS: file, tombstone   ARGV: nowMs
-- Returns {'ok'|'burned', field, value, ...} with `uses` already decremented, or {'gone', reason}, or {'missing'}.
-- The request that takes the last use deletes the record (crypto-shred) and marks the tombstone;
-- the caller then drops the blob's liveness key (its id is in the record).
if redis.call('EXISTS', KEYS[1]) == 0 then
  local reason = redis.call('GET', KEYS[2])
  if reason then return {'gone', reason} end
  return {'missing'}
end
if tonumber(redis.call('HGET', KEYS[1], 'expires')) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {'gone', 'expired'}
end
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
