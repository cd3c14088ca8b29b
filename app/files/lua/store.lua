-- Write a new file record, its waiting tombstone, its delivery receipt, and protect its blob until
-- expiry, atomically; the record's protection replaces the upload's lease (when one is named).
-- KEYS: file, tombstone, receipt
-- ARGV: blobPrefix, blobId, expiresAtMs, tombstoneExpiresAtMs, uploadLeaseId or '', field, value, ...
-- Returns 0 when the lookup id is already taken (the caller draws another passphrase; the lease stays).
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
protect(blob_key(ARGV[2]), 'live', ARGV[3])
if ARGV[5] ~= '' then redis.call('ZREM', blob_key(ARGV[2]), ARGV[5]) end
-- The tombstone waits with reason "expired"; a burn or delete overwrites the reason.
redis.call('SET', KEYS[2], 'expired', 'PXAT', ARGV[4])
-- The receipt: what the sender may learn with the delete token (times and counts only), as long as
-- the tombstone lasts. It keeps the token's hash and the blob id, since the record (and its copy) goes
-- at the burn or the expiry, and the sender may still delete what a resume window keeps (delete.lua).
redis.call('HSET', KEYS[3], 'dt', redis.call('HGET', KEYS[1], 'dt'), 'total', redis.call('HGET', KEYS[1], 'total'), 'refused', 0, 'resumes', 0, 'blob', ARGV[2])
redis.call('PEXPIREAT', KEYS[3], ARGV[4])
return 1
