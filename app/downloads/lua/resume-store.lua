-- Write a resume record and protect its blob until the window ends, atomically.
-- KEYS: resume record, the file's tombstone, purge epoch, purge running
-- ARGV: blobPrefix, blobId, windowEndMs, claimEpoch, field, value, ...
-- Returns 1, or 0 (nothing written) when the sender has deleted the file: the delete ends every
-- resume window (delete.lua drops the 'resume' member), and a download claimed just before it, whose
-- first chunk verified just after, must not open a new one (a fresh wrapped copy of the data key,
-- and bytes kept for the window). A burn ('burned') still gets its record: that is what finishes it.
-- One 'resume' member stands for every resume record of the blob (they all belong to one file):
-- scored with the latest window end, dropped by the sender's delete.
if redis.call('GET', KEYS[2]) == 'deleted' then return 0 end
-- Nor after an `admin purge` that began since the claim, or while one runs: it ends every resume
-- window, and its passes may be past this one.
if redis.call('EXISTS', KEYS[4]) == 1 or (redis.call('GET', KEYS[3]) or '0') ~= ARGV[4] then return 0 end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
local blob = ARGV[1] .. ARGV[2]
local current = tonumber(redis.call('ZSCORE', blob, 'resume') or '0')
if tonumber(ARGV[3]) > current then protect(blob, 'resume', ARGV[3]) end
return 1
