-- Write a resume record and protect its blob until the window ends, atomically.
-- KEYS: resume record   ARGV: blobPrefix, blobId, windowEndMs, field, value, ...
-- One 'resume' member stands for every resume record of the blob (they all belong to one file):
-- scored with the latest window end, dropped by the sender's delete.
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
local blob = ARGV[1] .. ARGV[2]
local current = tonumber(redis.call('ZSCORE', blob, 'resume') or '0')
if tonumber(ARGV[3]) > current then protect(blob, 'resume', ARGV[3]) end
return 1
