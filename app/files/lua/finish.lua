-- A download's end, in one step: note it on the receipt, then end its lease on the blob.
-- KEYS: file, tombstone, receipt
-- ARGV: blobPrefix, nowMs, downloadNumber, event, blobId, leaseId
-- event: 'completed' (every byte sent), 'resumed' or 'resumed_to_end' (a resume, or one that sent
-- the file's last byte), or '' (nothing to note). The receipt is never re-created once gone.
-- Returns what still protects the blob (release() of protect.lua).
local event = ARGV[4]
if event ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  if event ~= 'completed' then
    redis.call('HINCRBY', KEYS[3], 'resumes', 1)
    note('resumed', ARGV[2])
  end
  if event ~= 'resumed' then note('c' .. ARGV[3], ARGV[2]) end
end
return release(blob_key(ARGV[5]), ARGV[6], ARGV[2])
