-- End a lease and say what still protects the blob. KEYS: blob   ARGV: leaseId, nowMs
-- Returns the members whose score is after now, with their scores.
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES')
