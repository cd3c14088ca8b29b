-- Delete with the delete token's hash. KEYS: file, tombstone, receipt   ARGV: blobPrefix, tokenHash, nowMs
-- Returns {'deleted', blobId}, {'forbidden'}, {'gone', reason} or {'missing'}.
-- Dropping the blob's 'live' protection stops new downloads at once; running ones keep their leases.
if not is_live(ARGV[3]) then return not_live() end
if redis.call('HGET', KEYS[1], 'dt') ~= ARGV[2] then return {'forbidden'} end
local blob = redis.call('HGET', KEYS[1], 'blob')
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], 'deleted', 'KEEPTTL')
-- The sender's delete also ends every resume window of this file (docs/FORMAT.md).
redis.call('ZREM', blob_key(blob), 'live', 'resume')
return {'deleted', blob}
