-- Delete with the delete token's hash. KEYS: file, tombstone   ARGV: tokenHash, nowMs
-- Returns {'deleted', blobId}, {'forbidden'}, {'gone', reason} or {'missing'}.
if redis.call('EXISTS', KEYS[1]) == 0 or tonumber(redis.call('HGET', KEYS[1], 'expires')) <= tonumber(ARGV[2]) then
  local reason = redis.call('GET', KEYS[2])
  if reason then return {'gone', reason} end
  return {'missing'}
end
if redis.call('HGET', KEYS[1], 'dt') ~= ARGV[1] then return {'forbidden'} end
local blob = redis.call('HGET', KEYS[1], 'blob')
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], 'deleted', 'KEEPTTL')
return {'deleted', blob}
