-- Give back a use when the server failed before sending the first byte.
-- KEYS: file, tombstone, blob   ARGV: expiresAtMs, field, value, ... (the record as claimed)
-- If the claim burned the record, it is restored as it was, with one use.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], 'uses', 1)
end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HSET', KEYS[1], 'uses', 1)
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PXAT', ARGV[1])
redis.call('SET', KEYS[2], 'expired', 'KEEPTTL')
return 1
