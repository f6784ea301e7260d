-- For a waiting worker on queues ARGV[2..]: whether one that is not paused has a job
-- ready now (1/0), the earliest run_at of their scheduled and retrying jobs ('' for
-- none) and the clock.
local ready, next_due = 0, nil
for k = 2, #ARGV do
  local q = ARGV[k]
  if ready == 0 and redis.call('ZCARD', ready_key(q)) > 0
      and redis.call('SISMEMBER', P .. 'paused', q) == 0 then
    ready = 1
  end
  local first = redis.call('ZRANGE', due_key(q), 0, 0, 'WITHSCORES')
  if first[2] and (not next_due or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
end
return {ready, next_due and fmt(next_due) or '', SNOW}
