-- Delete with the delete token's hash. KEYS: file, tombstone, receipt   ARGV: blobPrefix, tokenHash, nowMs
-- Returns {'deleted', blobId}, {'forbidden'}, {'gone', reason} or {'missing'}.
-- Dropping the blob's 'live' protection stops new downloads at once; running ones keep their leases.
-- The sender's delete also ends every resume window of this file (docs/FORMAT.md).
if not is_live(ARGV[3]) then
  -- A burned file is still its sender's to delete while something still keeps its bytes: the burning
  -- download may yet fail before its first byte and give its use back (refund.lua restores only a
  -- tombstone that still says 'burned'), and its resume window keeps the bytes. The receipt keeps the
  -- token's hash and, since the burn, the blob id. Once nothing protects the blob (the window is over,
  -- the bytes shredded), the burn is history and answers as before (410 burned), as does a wrong token.
  if redis.call('GET', KEYS[2]) == 'burned' and redis.call('HGET', KEYS[3], 'dt') == ARGV[2] then
    local burnt = redis.call('HGET', KEYS[3], 'blob')
    if burnt and #redis.call('ZRANGEBYSCORE', blob_key(burnt), '(' .. ARGV[3], '+inf', 'LIMIT', 0, 1) > 0 then
      redis.call('SET', KEYS[2], 'deleted', 'KEEPTTL')
      redis.call('ZREM', blob_key(burnt), 'live', 'resume')
      return {'deleted', burnt}
    end
  end
  return not_live()
end
if redis.call('HGET', KEYS[1], 'dt') ~= ARGV[2] then return {'forbidden'} end
local blob = redis.call('HGET', KEYS[1], 'blob')
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], 'deleted', 'KEEPTTL')
redis.call('ZREM', blob_key(blob), 'live', 'resume')
return {'deleted', blob}
