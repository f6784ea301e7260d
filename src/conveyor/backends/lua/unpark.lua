-- Worker ARGV[2] no longer waits (its wait was cancelled, or it stops): its
-- registration goes, and so does every job handed to it that it did not take: those
-- in its hand-off list and the ids ARGV[4..] (taken, but not kept), all given back.
-- ARGV[3] = '1' also pushes 'stop' to the list, which ends a BLPOP still blocked on it.
local worker = ARGV[2]
redis.call('HDEL', WAITERS, worker)
local ready = {}
take_back_handed(worker, ready)
for k = 4, #ARGV do give_back(ARGV[k], worker, nil, ready) end
if ARGV[3] == '1' then redis.call('RPUSH', handoff_key(worker), 'stop') end
notify(ready)
return 1
