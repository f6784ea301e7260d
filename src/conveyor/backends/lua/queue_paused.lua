-- Pause (ARGV[3] = '1') or resume queue ARGV[2]. Answers 0 when there is no such queue.
local q = ARGV[2]
if redis.call('HEXISTS', P .. 'queues', q) == 0 then return 0 end
if ARGV[3] == '1' then
  redis.call('SADD', P .. 'paused', q)
else
  redis.call('SREM', P .. 'paused', q)
  notify({[q] = 1})
end
return 1
