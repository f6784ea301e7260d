-- New jobs. ARGV[2]: fields per job; then the jobs, each: id, queue, task, priority,
-- run_at (0: now), max_attempts, retry, timeout, steps, unique_key, metadata, tenant
-- ('' for none). Answers the clock, then per job its state when stored, or '=' and the
-- id of the job returned in its place: the active job holding its unique key, or the
-- job itself when its id is stored already (a batch sent again after a lost answer).
local width = tonumber(ARGV[2])
-- Fields written only when given: their offset in a job's arguments.
local OPTIONAL = {task = 2, retry = 6, timeout = 7, unique_key = 9, metadata = 10, tenant = 11}
local out = {SNOW}
local ready = {}
local known = {}
for a = 3, #ARGV, width do
  local id, q = ARGV[a], ARGV[a + 1]
  local key = job_key(id)
  local unique_key = ARGV[a + 9]
  local holder
  if redis.call('EXISTS', key) == 1 then
    holder = id
  elseif unique_key ~= '' then
    holder = redis.call('HGET', P .. 'unique', unique_key)
    if holder and not ACTIVE[redis.call('HGET', job_key(holder), 'state') or ''] then
      holder = nil
    end
  end
  if holder then
    out[#out + 1] = '=' .. holder
  else
    local run_at = tonumber(ARGV[a + 4])
    if run_at <= 0 then run_at = NOW end
    local state = 'queued'
    if run_at > NOW then state = 'scheduled' end
    local srun_at = fmt(run_at)
    local fields = {'id', id, 'queue', q, 'priority', ARGV[a + 3], 'state', state,
      'run_at', srun_at, 'attempts', 0, 'max_attempts', ARGV[a + 5], 'steps', ARGV[a + 8],
      'current_step', 0, 'version', 1, 'created_at', SNOW, 'updated_at', SNOW}
    for name, offset in pairs(OPTIONAL) do
      local value = ARGV[a + offset]
      if value ~= '' then
        fields[#fields + 1] = name
        fields[#fields + 1] = value
      end
    end
    redis.call('HSET', key, unpack(fields))
    if unique_key ~= '' then
      redis.call('HSET', P .. 'unique', unique_key, id)
      redis.call('ZADD', P .. 'unique:' .. unique_key, 0, id)
    end
    if not known[q] then
      redis.call('HSETNX', P .. 'queues', q, SNOW)
      known[q] = true
    end
    park(q, id, state, ARGV[a + 3], srun_at)
    move(q, id, nil, state)
    if state == 'queued' then ready[q] = (ready[q] or 0) + 1 end
    out[#out + 1] = state
  end
end
notify(ready)
return out
