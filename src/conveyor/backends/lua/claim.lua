-- Take up to ARGV[4] ready jobs for worker ARGV[2], leased for ARGV[3] seconds, from
-- the queues ARGV[5..] in that order (paused ones skipped). Due scheduled and
-- retrying jobs of those queues are made ready first. Answers the clock, then each
-- claimed job's JOB_FIELDS as they were before the claim (HMGET): the caller applies
-- what a claim changes (state running, worker, lease, attempts + 1, version + 1,
-- started_at if unset, updated_at), which saves a read per job here.
refuse_when_out_of_memory()
local worker, lease, left = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local lease_until = fmt(NOW + lease)
local out = {SNOW, lease_until}
local adds, rems = {}, {}  -- the claimed jobs' index entries, written at the end
-- The worker waits no more: no job is handed to it now. One handed to it after its
-- wait ended is given back, at its place, and claimed below like the others.
redis.call('HDEL', WAITERS, worker)
do
  local back = {}
  take_back_handed(worker, back)
  notify(back)
end
for k = 5, #ARGV do
  local q = ARGV[k]
  local due = redis.call('ZRANGEBYSCORE', due_key(q), '-inf', SNOW, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    local key = job_key(id)
    redis.call('ZREM', due_key(q), id)
    local f = redis.call('HMGET', key, 'state', 'priority', 'run_at', 'version')
    if f[1] == 'scheduled' or f[1] == 'retrying' then
      redis.call('HSET', key, 'state', 'queued', 'updated_at', SNOW, 'version', f[4] + 1)
      move(q, id, f[1], 'queued')
      park(q, id, 'queued', f[2], f[3])
    end
  end
  if left > 0 and redis.call('SISMEMBER', P .. 'paused', q) == 0 then
    local popped = redis.call('ZPOPMIN', ready_key(q), left)
    local queued = state_key(q, 'queued')
    for m = 1, #popped, 2 do
      local id = string.sub(popped[m], 17)
      local key = job_key(id)
      -- An absent field reads false, which the answer carries as nil.
      local v = redis.call('HMGET', key, unpack(JOB_FIELDS))
      if v[F_STATE] == 'queued' then
        local started = v[F_STARTED_AT]
        if not started or started == '' then started = SNOW end
        redis.call('HSET', key, 'state', 'running', 'worker_id', worker,
          'lease_until', lease_until, 'updated_at', SNOW, 'started_at', started,
          'attempts', v[F_ATTEMPTS] + 1, 'version', v[F_VERSION] + 1)
        add_later(adds, LEASES, lease_until, id)
        rem_later(rems, queued, id)
        out[#out + 1] = v
        left = left - 1
      end
    end
    -- Nothing left to wake anyone for.
    if redis.call('ZCARD', ready_key(q)) == 0 then redis.call('DEL', P .. 'wake:' .. q) end
  end
end
write_later('ZADD', adds, 2)
write_later('ZREM', rems, 1)
return out
