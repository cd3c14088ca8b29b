-- Delete with the delete token's hash. KEYS: file, tombstone, receipt   ARGV: blobPrefix, tokenHash, nowMs
-- Returns {'deleted', blobId}, {'forbidden'}, {'gone', reason} or {'missing'}.
-- Dropping the blob's 'live' protection stops new downloads at once; running ones keep their leases.
-- The sender's delete also ends every resume window of this file (docs/FORMAT.md).
if not is_live(ARGV[3]) then
  -- A burned or expired file is still its sender's to delete while something still keeps its bytes:
  -- a resume window (anyone holding a download's capability could still fetch the file), or a burning
  -- download that may yet fail before its first byte and give its use back (refund.lua restores only a
  -- tombstone that still says 'burned'). The receipt keeps the token's hash and the blob id (since the
  -- upload; a receipt written before that has it since the burn only). Once nothing protects the blob
  -- (the windows are over, the bytes shredded), the end is history and answers as before (410), as
  -- does a wrong token.
  local reason = redis.call('GET', KEYS[2])
  if (reason == 'burned' or reason == 'expired') and redis.call('HGET', KEYS[3], 'dt') == ARGV[2] then
    local ended = redis.call('HGET', KEYS[3], 'blob')
    if ended and #redis.call('ZRANGEBYSCORE', blob_key(ended), '(' .. ARGV[3], '+inf', 'LIMIT', 0, 1) > 0 then
      redis.call('DEL', KEYS[1]) -- an expired record Redis has not removed yet
      redis.call('SET', KEYS[2], 'deleted', 'KEEPTTL')
      redis.call('ZREM', blob_key(ended), 'live', 'resume')
      return {'deleted', ended}
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
