-- Delete with the delete token's hash. KEYS: file, tombstone   ARGV: tokenHash, nowMs
-- Returns {'deleted', blobId}, {'forbidden'}, {'gone', reason} or {'missing'}.
if not is_live(ARGV[2]) then return not_live() end
if redis.call('HGET', KEYS[1], 'dt') ~= ARGV[1] then return {'forbidden'} end
local blob = redis.call('HGET', KEYS[1], 'blob')
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], 'deleted', 'KEEPTTL')
return {'deleted', blob}
