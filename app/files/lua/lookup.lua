-- Prepended (after the blobs' protect.lua) to every script on a file record: store, claim, refund,
-- peek, preview, delete, receipt, finish. KEYS[1] is the file record, KEYS[2] its tombstone, KEYS[3] its
-- delivery receipt; ARGV[1] is the prefix of blob keys, so a script can reach the blob key named by
-- the record's `blob` field.

-- True while the record exists and its expiry (ms) is after `now`; PEXPIREAT removes it soon after.
local function is_live(now)
  return redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('HGET', KEYS[1], 'expires')) > tonumber(now)
end

-- The answer for a key with no live record: {'gone', reason} while its tombstone lasts, else {'missing'}.
local function not_live()
  local reason = redis.call('GET', KEYS[2])
  if reason then return {'gone', reason} end
  return {'missing'}
end

local function blob_key(blob)
  return ARGV[1] .. blob
end

-- Notes an event on the receipt while it lasts (it lives as long as the tombstone; never re-created).
local function note(field, value)
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], field, value) end
end
