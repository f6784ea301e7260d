-- Delete up to ARGV[3] jobs of queue ARGV[4] in final state ARGV[5] that finished
-- before ARGV[2], looking at ids after ARGV[6] ('-': from the oldest). Answers how
-- many went and the last id looked at ('' when the scan is done).
local count, last = remove_finished(ARGV[4], ARGV[5], tonumber(ARGV[2]), tonumber(ARGV[3]),
  ARGV[6])
return {count, last}
