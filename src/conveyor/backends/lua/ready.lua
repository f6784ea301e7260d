-- For a waiting worker on queues ARGV[5..]: whether one that is not paused has a job
-- ready now (1/0), the earliest run_at of their scheduled and retrying jobs ('' for
-- none) and the clock. With a worker id in ARGV[2] ('' for none) and nothing ready,
-- the worker is registered for hand-offs (see hand_off) for the next ARGV[4] seconds,
-- with its lease of ARGV[3] seconds: in the same step as the check, so that a job
-- enqueued after it goes to the worker, and one enqueued before is seen here.
local worker = ARGV[2]
local queues = {}
for k = 5, #ARGV do queues[#queues + 1] = ARGV[k] end
if worker ~= '' then
  -- Normally empty: the claim after each wait takes back what came too late for it.
  local back = {}
  take_back_handed(worker, back)
  notify(back)
end
local ready, next_due = 0, nil
for _, q in ipairs(queues) do
  if ready == 0 and redis.call('ZCARD', ready_key(q)) > 0
      and redis.call('SISMEMBER', P .. 'paused', q) == 0 then
    ready = 1
  end
  local first = redis.call('ZRANGE', due_key(q), 0, 0, 'WITHSCORES')
  if first[2] and (not next_due or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
end
if worker ~= '' and ready == 0 then
  redis.call('HSET', WAITERS, worker,
    cjson.encode({ARGV[3], fmt(NOW + tonumber(ARGV[4])), queues}))
  for _, q in ipairs(queues) do
    local waiting = P .. 'waiting:' .. q
    redis.call('LREM', waiting, 0, worker)
    redis.call('LPUSH', waiting, worker)
  end
end
return {ready, next_due and fmt(next_due) or '', SNOW}
