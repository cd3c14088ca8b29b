-- End a lease and say what still protects the blob. KEYS: blob   ARGV: leaseId, nowMs
return release(KEYS[1], ARGV[1], ARGV[2])
