-- Delete up to ARGV[4] jobs of queue ARGV[2] in the states ARGV[5..] (running jobs
-- are never named). ARGV[3] = 'drop': once none is left, the queue goes too, but for
-- its running and cancelling jobs, which stay: while any of its jobs is stored, the
-- queue exists by them (P..'dropped'). Answers how many jobs went, or -1 when there is
-- no such queue.
local q, limit = ARGV[2], tonumber(ARGV[4])
if not queue_exists(q) then return -1 end
local count = 0
for k = 5, #ARGV do
  local ids = redis.call('ZRANGE', state_key(q, ARGV[k]), 0, limit - count - 1)
  for _, id in ipairs(ids) do count = count + remove_job(id) end
  if count >= limit then return count end
end
if ARGV[3] == 'drop' then
  redis.call('HDEL', P .. 'queues', q)
  redis.call('SREM', P .. 'paused', q)
  redis.call('DEL', P .. 'wake:' .. q)
  if holds_jobs_of(q) then
    redis.call('SADD', DROPPED, q)
  else
    redis.call('SREM', DROPPED, q)
  end
end
return count
