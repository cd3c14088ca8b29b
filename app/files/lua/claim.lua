-- Claim one download use and lease the blob for that download, atomically.
-- KEYS: file, tombstone, receipt, purge epoch   ARGV: blobPrefix, nowMs, leaseId, leaseUntilMs
-- Returns {'ok'|'burned', field, value, ...} with `uses` already decremented and 'download' (this
-- download's number) and 'epoch' (the purge epoch, for refund.lua and resume-store.lua) appended, or
-- {'gone', reason}, or {'missing'}.
-- The request that takes the last use deletes the record (crypto-shred), marks the tombstone and
-- drops the blob's 'live' protection; its own lease keeps the bytes until that download ends.
if not is_live(ARGV[2]) then
  -- A download asked for after the end: the receipt counts it (nothing else about it).
  if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HINCRBY', KEYS[3], 'refused', 1) end
  return not_live()
end
local uses = redis.call('HINCRBY', KEYS[1], 'uses', -1)
-- Download number n (1-based) started now, from the receipt's counter `n`, which only goes up: a
-- refund gives its use back but never its number, so no two downloads share one (total - uses did,
-- after a refund). A receipt written before the counter existed starts it where that numbering was.
local n = tonumber(redis.call('HGET', KEYS[1], 'total')) - uses
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSETNX', KEYS[3], 'n', n - 1)
  n = redis.call('HINCRBY', KEYS[3], 'n', 1)
end
note('s' .. n, ARGV[2])
local record = redis.call('HGETALL', KEYS[1])
local blobId = redis.call('HGET', KEYS[1], 'blob')
local blob = blob_key(blobId)
protect(blob, ARGV[3], ARGV[4])
if uses <= 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], 'burned', 'KEEPTTL')
  redis.call('ZREM', blob, 'live')
  -- The sender's delete of a burned file needs the blob id (delete.lua); the record is gone.
  note('blob', blobId)
  table.insert(record, 1, 'burned')
else
  table.insert(record, 1, 'ok')
end
table.insert(record, 'download')
table.insert(record, n)
table.insert(record, 'epoch')
table.insert(record, redis.call('GET', KEYS[4]) or '0')
return record
