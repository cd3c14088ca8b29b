-- One-time preview: mark it, note it on the receipt, and return the record.
-- KEYS: file, tombstone, receipt   ARGV: blobPrefix, nowMs
-- Returns {'ok', ...}, {'used'}, {'gone', reason} or {'missing'}.
if not is_live(ARGV[2]) then return not_live() end
if redis.call('HSETNX', KEYS[1], 'previewed', '1') == 0 then return {'used'} end
note('preview', ARGV[2])
local record = redis.call('HGETALL', KEYS[1])
table.insert(record, 1, 'ok')
return record
