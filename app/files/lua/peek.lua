-- Read a record for status (spends nothing). KEYS: file, tombstone   ARGV: nowMs
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('HGET', KEYS[1], 'expires')) > tonumber(ARGV[1]) then
  local record = redis.call('HGETALL', KEYS[1])
  table.insert(record, 1, 'ok')
  return record
end
local reason = redis.call('GET', KEYS[2])
if reason then return {'gone', reason} end
return {'missing'}
