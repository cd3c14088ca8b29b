-- Give back exactly the use that one claim took, when the server failed before its first byte.
-- KEYS: file, tombstone, receipt, purge epoch, purge running
-- ARGV: blobPrefix, nowMs, burnedByThisClaim ('1'|'0'), blobId, expiresAtMs, downloadNumber, claimEpoch, field, value, ... (the record as claimed)
-- A refunded download never started for its client: its start (its own number, which claim.lua never
-- gives out again) leaves the receipt too.
-- Returns 1 when the use was given back, 0 when the file has since gone by other means and stays gone.
-- An `admin purge` since the claim, or one running now, ends every refund: its passes may already have
-- gone past this file, which must not come back after it.
if redis.call('EXISTS', KEYS[5]) == 1 or (redis.call('GET', KEYS[4]) or '0') ~= ARGV[7] then return 0 end
if ARGV[3] == '0' then
  -- The record outlived this claim: give the use back only while it is still live. A file deleted,
  -- burned by another request or expired in the meantime stays gone.
  if not is_live(ARGV[2]) then return 0 end
  redis.call('HINCRBY', KEYS[1], 'uses', 1)
  redis.call('HDEL', KEYS[3], 's' .. ARGV[6])
  return 1
end
-- This claim burned the record. Since then a burned key answers 410 to every recipient, but its
-- sender may have deleted it (delete.lua marks the tombstone 'deleted'): restore it exactly only while
-- the tombstone still says 'burned', and unless its time is up. The download number stays spent.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('GET', KEYS[2]) ~= 'burned' then return 0 end
if tonumber(ARGV[5]) <= tonumber(ARGV[2]) then return 0 end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HSET', KEYS[1], 'uses', 1)
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
protect(blob_key(ARGV[4]), 'live', ARGV[5])
redis.call('SET', KEYS[2], 'expired', 'KEEPTTL')
redis.call('HDEL', KEYS[3], 's' .. ARGV[6])
return 1
