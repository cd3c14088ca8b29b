-- One-time preview: mark it and return the record. KEYS: file, tombstone   ARGV: nowMs
-- Returns {'ok', ...}, {'used'}, {'gone', reason} or {'missing'}.
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('HGET', KEYS[1], 'expires')) > tonumber(ARGV[1]) then
  if redis.call('HSETNX', KEYS[1], 'previewed', '1') == 0 then return {'used'} end
  local record = redis.call('HGETALL', KEYS[1])
  table.insert(record, 1, 'ok')
  return record
end
local reason = redis.call('GET', KEYS[2])
if reason then return {'gone', reason} end
return {'missing'}
