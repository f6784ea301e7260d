-- Running jobs whose lease ran out (at most ARGV[2]): waiting again (the claim counted
-- the attempt), poisoned when attempts are spent, cancelled when a cancel was asked.
-- The lost run counts as processed and failed, as a raising task would, also in the
-- counts per minute (kept ARGV[3] seconds). A job handed to a worker that never took
-- it is only given back (not counted): waiting again, or cancelled when a cancel was
-- asked. Answers the fields of the recovered jobs and of those given back cancelled
-- (the worker calls back for the jobs a recovery finishes).

-- Whether job `id`, leased to `worker`, still sits in the worker's hand-off list
-- (it never reached the worker); if so it leaves the list.
local function undelivered(id, worker)
  local key = handoff_key(worker)
  for _, item in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if item ~= 'stop' and cjson.decode(item)[3][1] == id then
      redis.call('LREM', key, 1, item)
      return true
    end
  end
  return false
end

-- The name of step `index` (0-based) of a job's steps JSON, or nil. Never an error: an
-- error here would end the script after the job left the lease set, its only index,
-- and leave it running for good. cjson reads at most 1,000 levels of nesting, and
-- arguments and results may go deeper.
local function step_name(steps, index)
  local ok, decoded = pcall(cjson.decode, steps)
  local step = ok and type(decoded) == 'table' and decoded[index + 1]
  return type(step) == 'table' and step.name or nil
end

local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. SNOW, 'LIMIT', 0,
  tonumber(ARGV[2]))
local out = {}
local lost = 0
local ready = {}
local tallies = {}
for _, id in ipairs(expired) do
  redis.call('ZREM', LEASES, id)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'state', 'attempts', 'max_attempts', 'worker_id', 'steps',
    'current_step', 'errors', 'queue', 'priority', 'unique_key')
  local current, q = f[1], f[8]
  if f[4] and f[4] ~= '' and undelivered(id, f[4]) then
    -- Handed to a worker that died (or stopped) waiting: it never ran, and costs
    -- no attempt.
    if give_back(id, f[4], nil, ready) and current == 'cancelling' then
      out[#out + 1] = redis.call('HGETALL', key)
    end
  elseif current == 'running' or current == 'cancelling' then
    local state = 'queued'
    if current == 'cancelling' then
      state = 'cancelled'
    elseif tonumber(f[2]) >= tonumber(f[3]) then
      state = 'poisoned'
    end
    local entry = error_entry(f[2], step_name(f[5], tonumber(f[6])), 'LeaseExpired',
      'lease expired: worker ' .. (f[4] or '?') .. ' stopped heartbeating')
    redis.call('HSET', key, 'state', state, 'errors', append_error(f[7], entry),
      'updated_at', SNOW)
    redis.call('HDEL', key, 'worker_id', 'lease_until')
    redis.call('HINCRBY', key, 'version', 1)
    move(q, id, current, state)
    if state == 'queued' then
      redis.call('HSET', key, 'run_at', SNOW)
      park(q, id, state, f[9], SNOW)
      ready[q] = (ready[q] or 0) + 1
    else
      redis.call('HSET', key, 'finished_at', SNOW)
      release_unique(f[10], id)
    end
    local t = tallies[q] or {0, 0}
    tallies[q] = {t[1] + 1, t[2] + 1}
    out[#out + 1] = redis.call('HGETALL', key)
    lost = lost + 1
  end
end
if lost > 0 then
  redis.call('HINCRBY', P .. 'counters', 'processed', lost)
  redis.call('HINCRBY', P .. 'counters', 'failed', lost)
  count_minute(tallies, tonumber(ARGV[3]))
end
notify(ready)
return out
