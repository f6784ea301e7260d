-- New jobs. ARGV[2]: fields per job, 12 or 2 (see below for what may go with it). With
-- 12, the jobs follow, each: id,
-- queue, task, priority, run_at (0: now), max_attempts, retry, timeout, steps,
-- unique_key, metadata, tenant ('' for none). With 2, the jobs are alike (a batch of
-- one task with the same options, none with a unique key): ARGV[3..14] are the first
-- job's 12 fields, which they all share but for id and steps, and each job follows
-- as its id and steps (a sixth of the arguments to send, parse and read). Answers the
-- clock, then per job its state when stored, or '=' and the id of the job returned
-- in its place: the active job holding its unique key, or (sent again, below) the job
-- itself.
--
-- A job id stored already, or named twice in the batch, refuses the whole call before
-- anything is written (a script's writes are not undone by an error): the answer is
-- then {'taken', id} or {'twice', id} instead of the clock. ARGV[2] may say more:
--   'r12'      the batch sent again after a lost answer (its first sending may have
--              stored it): a stored id is this batch's job, answered as it is now;
--   '12+n@t'   the first call of a batch sent as several in one MULTI/EXEC, t a token
--              new for this sending: the last n arguments are the ids of the later
--              calls' jobs, checked here too, since this call's jobs are written before
--              the later calls run; a refusal is left as the key P..'refused:'..t;
--   '12@t'     a later call of that batch: with that key it answers {'refused'}.
--   'o12'      one job, stored only if no stored job, finished or not, carries its
--              unique key (Backend.enqueue_once); 'ro12' sent again.
--
-- A job's hash is written at once (a later job of the batch may read it through its
-- unique key); the index entries of the batch are added at the end, a few commands
-- for all of them: each redis.call costs about as much again as the command it runs.
-- A job ready now goes to a worker blocked in wait on its queue if there is one,
-- claimed for it (hand_off), and into no index.

-- A worker registered on queue q that a job made ready on q now can be handed to:
-- its id and lease seconds, or nil. Its registration is used up (one job per wait).
-- Nil too when q is paused, or a queue the worker waits on has ready jobs: those
-- come first (strict order), and their wake-up tokens wake it.
local function take_waiter(q)
  local waiting = P .. 'waiting:' .. q
  while true do
    local worker = redis.call('RPOP', waiting)
    if not worker then return nil end
    local registration = redis.call('HGET', WAITERS, worker)
    if registration then
      local r = cjson.decode(registration)
      if tonumber(r[2]) < NOW then
        redis.call('HDEL', WAITERS, worker)  -- its wait is over: it claims anyway
      else
        local first = redis.call('SISMEMBER', P .. 'paused', q) == 1
        for _, wq in ipairs(r[3]) do
          if first then break end
          first = redis.call('ZCARD', ready_key(wq)) > 0
            and redis.call('SISMEMBER', P .. 'paused', wq) == 0
        end
        if first then
          redis.call('RPUSH', waiting, worker)  -- keeps its turn
          return nil
        end
        redis.call('HDEL', WAITERS, worker)
        return worker, r[1]
      end
    end
  end
end

-- Claim a new job for `worker`. `fields`: the job's hash as the enqueue is about to
-- write it (name, value, ...; queued, attempts 0, version 1), to which the claim's
-- changes are made here, so that one HSET writes both. The job enters the lease set,
-- and the worker's hand-off list gets it as a claim answers it (the fields before).
local CLAIMED = {state = 'running', attempts = '1', version = '2'}
local function hand_off(id, worker, lease, fields)
  local lease_until = fmt(NOW + tonumber(lease))
  local named = {}
  for i = 1, #fields, 2 do
    local name = fields[i]
    named[name] = fields[i + 1]
    if CLAIMED[name] then fields[i + 1] = CLAIMED[name] end
  end
  local v = {}
  for i, name in ipairs(JOB_FIELDS) do v[i] = named[name] or false end
  local n = #fields
  fields[n + 1], fields[n + 2] = 'worker_id', worker
  fields[n + 3], fields[n + 4] = 'lease_until', lease_until
  fields[n + 5], fields[n + 6] = 'started_at', SNOW
  redis.call('ZADD', LEASES, lease_until, id)
  redis.call('RPUSH', handoff_key(worker), cjson.encode({SNOW, lease_until, v}))
end

local resend, once, width, later, token =
  string.match(ARGV[2], '^(r?)(o?)(%d+)%+?(%d*)@?(.*)$')
resend, once, width = resend == 'r', once == 'o', tonumber(width)
local refused_key = token ~= '' and P .. 'refused:' .. token
if refused_key and later == '' and redis.call('EXISTS', refused_key) == 1 then
  return {'refused'}
end
local last = #ARGV - (tonumber(later) or 0)  -- ARGV index of the last job
-- A refusal of this call, the id that causes it; also for the calls after it.
local function refuse(why, id)
  if refused_key then redis.call('SET', refused_key, id, 'PX', '60000') end
  return {why, id}
end
local first, alike = 3, nil  -- ARGV index of the first job; the shared fields
if width == 2 then
  alike = {unpack(ARGV, 3, 14)}
  first = 15
end
-- Whether any of the batch's ids is stored already: one EXISTS per CHUNK ids, so a new
-- batch (the usual case) skips the check job by job. Then, only if one is, which.
local replayed = false
do
  local keys, seen = {}, {}
  local function check(id, at_end)
    if seen[id] then return refuse('twice', id) end
    seen[id] = true
    keys[#keys + 1] = job_key(id)
    if #keys == CHUNK or at_end then
      if redis.call('EXISTS', unpack(keys)) > 0 then replayed = true end
      keys = {}
    end
  end
  for a = first, last, width do
    local twice = check(ARGV[a], a + width > last and last == #ARGV)
    if twice then return twice end
  end
  for a = last + 1, #ARGV do
    local twice = check(ARGV[a], a == #ARGV)
    if twice then return twice end
  end
  if replayed and not resend then
    for a = first, last, width do
      if redis.call('EXISTS', job_key(ARGV[a])) == 1 then return refuse('taken', ARGV[a]) end
    end
    for a = last + 1, #ARGV do
      if redis.call('EXISTS', job_key(ARGV[a])) == 1 then return refuse('taken', ARGV[a]) end
    end
  end
end

local out = {SNOW}
local ready = {}
local known = {}
local adds = {}
local unwatched = {}  -- queues with no worker waiting to be handed a job

-- The entry lists (see add_later) of each queue's ready index and queued state index,
-- which most jobs of a batch go into, by queue: their keys are made once per queue and
-- batch, not per job, and so is the start of the ready member of a job ready now.
local ready_lists, queued_lists = {}, {}
local now_member = ready_member(SNOW, '')

for a = first, last, width do
  local id, q, task, priority, run_at, max_attempts, retry, timeout, steps, unique_key,
    metadata, tenant
  if alike then
    id, steps = ARGV[a], ARGV[a + 1]
    q, task, priority, run_at, max_attempts = alike[2], alike[3], alike[4], alike[5], alike[6]
    retry, timeout, unique_key, metadata, tenant = alike[7], alike[8], '', alike[11], alike[12]
  else
    id, q, task, priority, run_at, max_attempts, retry, timeout, steps, unique_key, metadata,
      tenant = unpack(ARGV, a, a + 11)
  end
  local key = job_key(id)
  local holder
  if replayed and redis.call('EXISTS', key) == 1 then  -- (only when sent again)
    holder = id
  elseif unique_key ~= '' then
    holder = redis.call('HGET', P .. 'unique', unique_key)
    if once then
      -- Backend.enqueue_once: the key's newest stored job, in any state (as
      -- find_unique.lua finds it), all in this one script: nothing runs in between.
      local newest = redis.call('ZREVRANGEBYLEX', P .. 'unique:' .. unique_key, '+', '-',
        'LIMIT', 0, 1)[1]
      if holder and (not newest or holder > newest) then newest = holder end
      holder = newest and redis.call('EXISTS', job_key(newest)) == 1 and newest or nil
    elseif holder and not ACTIVE[redis.call('HGET', job_key(holder), 'state') or ''] then
      holder = nil
    end
  end
  if holder then
    out[#out + 1] = '=' .. holder
  else
    local at = tonumber(run_at)
    local state, srun_at = 'queued', SNOW
    if at > 0 then
      if at > NOW then state = 'scheduled' end
      srun_at = fmt(at)
    end
    local fields = {'id', id, 'queue', q, 'priority', priority, 'state', state,
      'run_at', srun_at, 'attempts', '0', 'max_attempts', max_attempts, 'steps', steps,
      'current_step', '0', 'version', '1', 'created_at', SNOW, 'updated_at', SNOW}
    -- Fields written only when given, one test each (a loop over a table of their
    -- names and offsets cost about 0.5 us a job).
    local n = #fields
    if task ~= '' then fields[n + 1] = 'task'; fields[n + 2] = task; n = n + 2 end
    if retry ~= '' then fields[n + 1] = 'retry'; fields[n + 2] = retry; n = n + 2 end
    if timeout ~= '' then fields[n + 1] = 'timeout'; fields[n + 2] = timeout; n = n + 2 end
    if unique_key ~= '' then
      fields[n + 1] = 'unique_key'; fields[n + 2] = unique_key; n = n + 2
    end
    if metadata ~= '' then fields[n + 1] = 'metadata'; fields[n + 2] = metadata; n = n + 2 end
    if tenant ~= '' then fields[n + 1] = 'tenant'; fields[n + 2] = tenant end
    -- The first write of a call that stores a job: HSETNX is one Redis refuses when
    -- out of memory (maxmemory, noeviction), and Redis checks only a script's first
    -- write. Were take_waiter's RPOP first (a write Redis lets through), the whole
    -- enqueue would be stored past maxmemory, without limit.
    if not known[q] then
      redis.call('HSETNX', P .. 'queues', q, SNOW)
      known[q] = true
    end
    local worker, lease
    if state == 'queued' and not unwatched[q] then
      worker, lease = take_waiter(q)
      unwatched[q] = not worker
    end
    -- Answered as queued, as stored: the hand-off is a claim that follows.
    if worker then hand_off(id, worker, lease, fields) end
    redis.call('HSET', key, unpack(fields))
    if unique_key ~= '' then
      redis.call('HSET', P .. 'unique', unique_key, id)
      redis.call('ZADD', P .. 'unique:' .. unique_key, '0', id)
    end
    if state == 'queued' and not worker then
      -- park and move of the prelude, deferred: the ready index, then the state index.
      local ready_list, queued_list = ready_lists[q], queued_lists[q]
      if not ready_list then
        local ready_at, queued_in = ready_key(q), state_key(q, 'queued')
        adds[ready_at] = adds[ready_at] or {}
        adds[queued_in] = adds[queued_in] or {}
        ready_list, queued_list = adds[ready_at], adds[queued_in]
        ready_lists[q], queued_lists[q] = ready_list, queued_list
      end
      local n = #ready_list
      ready_list[n + 1] = priority
      ready_list[n + 2] = srun_at == SNOW and now_member .. id or ready_member(srun_at, id)
      n = #queued_list
      queued_list[n + 1], queued_list[n + 2] = '0', id
      ready[q] = (ready[q] or 0) + 1
    elseif not worker then
      park_later(adds, q, id, state, priority, srun_at)
      add_later(adds, state_key(q, state), '0', id)
    end
    out[#out + 1] = state
  end
end
write_later('ZADD', adds, 2)
notify(ready)
return out
