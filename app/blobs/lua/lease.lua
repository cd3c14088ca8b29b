-- Take or renew a lease on a blob. KEYS: blob   ARGV: leaseId, untilMs
protect(KEYS[1], ARGV[1], ARGV[2])
return 1
