-- Pause (ARGV[3] = '1') or resume queue ARGV[2]. Answers 0 when there is no such queue.
local q = ARGV[2]
if redis.call('HEXISTS', P .. 'queues', q) == 0 then
  if not queue_exists(q) then return 0 end
  -- A queue that exists by its jobs alone (dropped while some ran) gets its entry
  -- back, as the SQL stores write its row again.
  redis.call('HSET', P .. 'queues', q, SNOW)
  redis.call('SREM', DROPPED, q)
end
if ARGV[3] == '1' then
  redis.call('SADD', P .. 'paused', q)
else
  redis.call('SREM', P .. 'paused', q)
  notify({[q] = 1})
end
return 1
