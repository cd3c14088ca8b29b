-- The sender's delivery receipt. KEYS: file, tombstone, receipt   ARGV: blobPrefix, nowMs, tokenHash
-- Returns {'ok', state, usesLeft, field, value, ...}, {'forbidden'} or {'missing'}.
if redis.call('EXISTS', KEYS[3]) == 0 then return {'missing'} end
if redis.call('HGET', KEYS[3], 'dt') ~= ARGV[3] then return {'forbidden'} end
local state, left = 'active', 0
if is_live(ARGV[2]) then
  left = tonumber(redis.call('HGET', KEYS[1], 'uses'))
else
  state = redis.call('GET', KEYS[2]) or 'expired'
end
local receipt = redis.call('HGETALL', KEYS[3])
table.insert(receipt, 1, left)
table.insert(receipt, 1, state)
table.insert(receipt, 1, 'ok')
return receipt
