-- Jobs given back by their lease holder (a worker shutting down): waiting again with
-- the attempt not counted, at their old place in the queue; a job asked to cancel
-- meanwhile ends cancelled. ARGV[2]: fields per job; then per job: id, worker,
-- attempts held, steps, current_step, progress ('' for none). Answers how many.
local width = tonumber(ARGV[2])
local count = 0
local ready = {}
local known = {}
for a = 3, #ARGV, width do
  local id = ARGV[a]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'worker_id', 'attempts', 'state', 'queue', 'priority',
    'run_at', 'unique_key')
  if holds(f[1], ARGV[a + 1]) and f[2] == ARGV[a + 2] then
    local q, current = f[4], f[3]
    local state = 'queued'
    if current == 'cancelling' then state = 'cancelled' end
    redis.call('HSET', key, 'state', state, 'steps', ARGV[a + 3],
      'current_step', ARGV[a + 4], 'updated_at', SNOW)
    redis.call('HINCRBY', key, 'attempts', -1)
    redis.call('HDEL', key, 'worker_id', 'lease_until')
    if ARGV[a + 5] == '' then
      redis.call('HDEL', key, 'progress')
    else
      redis.call('HSET', key, 'progress', ARGV[a + 5])
    end
    redis.call('HINCRBY', key, 'version', 1)
    redis.call('ZREM', LEASES, id)
    keep_queue(q, known)
    move(q, id, current, state)
    if state == 'cancelled' then
      redis.call('HSET', key, 'finished_at', SNOW)
      release_unique(f[7], id)
    else
      park(q, id, state, f[5], f[6])
      ready[q] = (ready[q] or 0) + 1
    end
    count = count + 1
  end
end
notify(ready)
return count
