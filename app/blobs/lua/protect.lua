-- Prepended to every script that changes what keeps a blob's bytes from the janitor.
-- A blob's key is a sorted set: the member 'live' scored with its file record's expiry, and one
-- member per lease (a running download or upload) scored with when that lease ends, all in ms.
-- The janitor destroys the bytes only once no member's score is in the future.

-- Adds or moves a member; the key lives at least as long as its latest member.
local function protect(key, member, until_ms)
  redis.call('ZADD', key, until_ms, member)
  if redis.call('PEXPIRETIME', key) < tonumber(until_ms) then redis.call('PEXPIREAT', key, until_ms) end
end

-- Ends a lease; returns what still protects the blob: the members whose score is after now, with scores.
local function release(key, lease, now_ms)
  redis.call('ZREM', key, lease)
  return redis.call('ZRANGEBYSCORE', key, '(' .. now_ms, '+inf', 'WITHSCORES')
end
