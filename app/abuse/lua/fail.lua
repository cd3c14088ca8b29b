-- Count one failed lookup of a client; block it at the limit.
-- KEYS: failures, block, blocklist   ARGV: windowSeconds, limit, blockMs, blockEndsAtMs, clientId
-- Returns 1 when this failure started a block, else 0.
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if count >= tonumber(ARGV[2]) and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
  return 1
end
return 0
