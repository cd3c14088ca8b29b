-- Lease a blob for a resumed download, only while the resume window that keeps it is open, atomically.
-- KEYS: resume record, the file's tombstone, blob   ARGV: leaseId, leaseUntilMs, nowMs
-- Returns 'ok' (leased), 'deleted' (the sender deleted the file: nothing of it is resumed) or 'ended'
-- (the record or its window is over: the capability opens nothing).
-- A resume needs no live record, so this is what keeps the janitor's rule (blobs.usecases.ts): once
-- its check found nothing protecting the blob (the delete dropped 'resume', or the window's end
-- passed its score), no lease may be added, or a resume would read bytes being destroyed.
if redis.call('GET', KEYS[2]) == 'deleted' then return 'deleted' end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'ended' end
local window_end = tonumber(redis.call('ZSCORE', KEYS[3], 'resume') or '0')
if window_end <= tonumber(ARGV[3]) then return 'ended' end
protect(KEYS[3], ARGV[1], ARGV[2])
return 'ok'
