-- Read a record for status (spends nothing). KEYS: file, tombstone, receipt   ARGV: blobPrefix, nowMs
if not is_live(ARGV[2]) then return not_live() end
local record = redis.call('HGETALL', KEYS[1])
table.insert(record, 1, 'ok')
return record
