-- Notes a download's completion or a resume on the receipt. KEYS: file, tombstone, receipt
-- ARGV: blobPrefix, nowMs, downloadNumber, event ('completed'|'resumed'|'resumed_to_end')
if ARGV[4] ~= 'completed' then
  if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
  redis.call('HINCRBY', KEYS[3], 'resumes', 1)
  note('resumed', ARGV[2])
end
if ARGV[4] ~= 'resumed' then note('c' .. ARGV[3], ARGV[2]) end
return 1
