-- Prepended to every script of the Redis backend (see redis_scripts.py).
--
-- ARGV[1] is the key prefix, "{<namespace>}:": every key of a namespace carries the
-- same hash tag, so each script touches one cluster slot. KEYS[1] is a key of that
-- slot, for routing only.
--
-- Times are seconds since the epoch from Redis' own clock (TIME), written with six
-- decimals: Lua turns a number given to redis.call into text with 14 significant
-- digits, which would round a time to a tenth of a millisecond. That conversion
-- is a sprintf: constant arguments are given as text ('0', not 0).
--
-- Keys (P = the prefix):
--   P..'job:'..id                 hash, the job's fields (absent or empty = None)
--   P..'queue:'..q..':ready'      zset of queued jobs: score priority, member
--                                 run_at in microseconds (16 digits) .. id, so that
--                                 ties order by run_at, then id (FIFO)
--   P..'queue:'..q..':due'        zset of scheduled and retrying jobs by run_at
--   P..'queue:'..q..':'..state    zset per waiting or final state (all scores 0,
--                                 members ids, so in id order: the listing index,
--                                 and for final states what prune and retention
--                                 read, oldest first)
--   P..'leases'                   zset of running and cancelling jobs by the end of
--                                 their lease: their only index (there are as many
--                                 as workers run at once)
-- Every job is in exactly one of the state indexes and the lease set.
--   P..'queues'                   hash queue -> created_at;  P..'paused' set
--   P..'dropped'                  set of queues dropped while some of their jobs
--                                 ran (those stay): such a queue exists by its
--                                 stored jobs, as on the SQL stores, until none is
--                                 left or it has its entry in P..'queues' again
--   P..'unique'                   hash unique key -> id of the active job holding it
--   P..'unique:'..k               zset of every stored job carrying unique key k, in
--                                 any state (all scores 0, members ids: newest
--                                 last); its entry goes with the job (remove_job)
--   P..'counters'                 hash processed / failed
--   P..'workers', P..'workers:started'   hashes worker id -> JSON / start time
--   P..'wake:'..q                 list of wake-up tokens: one per job made ready, at
--                                 most WAKE_TOKENS; an idle worker waits on its
--                                 queues' lists with BLPOP, so each token wakes one
--   P..'waiters'                  hash worker id -> JSON [lease seconds, until, queues]:
--                                 a worker blocked in wait that a new job may be
--                                 handed to (ready.lua registers it; a hand-off uses
--                                 it up, the worker's next claim removes it)
--   P..'waiting:'..q              list of the ids of workers registered on q, oldest
--                                 at the right (an id whose registration is gone is
--                                 dropped when reached)
--   P..'handoff:'..w              list of jobs handed to worker w, each the JSON of
--                                 [clock, lease_until, JOB_FIELDS values]: claimed
--                                 for w, and only there until w takes them ('stop'
--                                 ends a wait that is cancelled)
--   P..'minute:'..m               hash of the minute starting at m (epoch seconds, a
--                                 multiple of 60): 'p:'..q, 'f:'..q runs of queue q
--                                 ended / failed in it, 'd:'..q its queued jobs as
--                                 sampled; expires keep_counts after m
--   P..'none'                     never exists: the key of the writes that change
--                                 nothing (refuse_when_out_of_memory)
local P = ARGV[1]
local NOW, SNOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000
  -- What fmt(NOW) gives, from TIME's two parts, without a string.format (a sprintf
  -- in Redis' Lua, on every script call).
  SNOW = t[1] .. '.' .. string.sub('00000' .. t[2], -6)
end

-- Out of memory (maxmemory reached, noeviction), Redis refuses a script only at its
-- first write, and only if that write is one that may take memory (HSET, ZADD, ...): a
-- script whose first write takes none (HDEL, ZREM, RPOP, DEL) runs whole. Scripts for
-- which it matters say so first, with a write that changes nothing.
-- Refused: what starts work (a job claimed then could neither keep its lease nor have
-- its outcome written), as an enqueue is.
local function refuse_when_out_of_memory()
  redis.call('SETRANGE', P .. 'none', '0', '')  -- (an empty SETRANGE makes no key)
end
-- Run whole: what keeps the running jobs (their leases, a job given back), which takes
-- no more memory; a lease that ran out would have its job run twice once Redis has
-- memory again.
local function run_when_out_of_memory()
  redis.call('DEL', P .. 'none')
end

local function fmt(t)
  return string.format('%.6f', t)
end

-- The hash fields a claim answers per job, in this order (JOB_FIELDS in redis_rows.py).
local JOB_FIELDS = {'id', 'queue', 'priority', 'state', 'run_at', 'attempts', 'max_attempts',
  'retry', 'timeout', 'steps', 'current_step', 'progress', 'result', 'errors', 'unique_key',
  'metadata', 'tenant', 'version', 'created_at', 'started_at', 'finished_at', 'updated_at',
  'worker_id', 'lease_until'}
local F_STATE, F_ATTEMPTS, F_VERSION, F_STARTED_AT = 4, 6, 18, 20

local ACTIVE = {scheduled = true, queued = true, running = true, retrying = true,
                cancelling = true}
local FINAL = {succeeded = true, poisoned = true, cancelled = true}
local HELD = {running = true, cancelling = true}

local LEASES = P .. 'leases'
local function job_key(id) return P .. 'job:' .. id end
local function ready_key(q) return P .. 'queue:' .. q .. ':ready' end
local function due_key(q) return P .. 'queue:' .. q .. ':due' end
local function state_key(q, state) return P .. 'queue:' .. q .. ':' .. state end

-- The smallest id of a job created at time t (ids are UUIDv7: milliseconds first).
local function id_floor(t)
  local hex = string.format('%012x', math.floor(t * 1000))
  return string.sub(hex, 1, 8) .. '-' .. string.sub(hex, 9, 12) .. '-0000-0000-000000000000'
end

local function ready_member(run_at, id)
  -- A time as the scripts write it (ten digits, a point, six): its digits are the
  -- microseconds, without a string.format.
  if #run_at == 17 and string.byte(run_at, 11) == 46 then
    return string.sub(run_at, 1, 10) .. string.sub(run_at, 12) .. id
  end
  return string.format('%016d', math.floor(tonumber(run_at) * 1000000 + 0.5)) .. id
end

-- Move a job's id from one state index to another (running and cancelling jobs are
-- in the lease set instead: the caller adds or removes the lease).
local function move(q, id, from, to)
  if from and not HELD[from] then redis.call('ZREM', state_key(q, from), id) end
  if to and not HELD[to] then redis.call('ZADD', state_key(q, to), '0', id) end
end

-- Put a job that is now waiting where claims look: ready (queued) or due (later).
local function park(q, id, state, priority, run_at)
  if state == 'queued' then
    redis.call('ZADD', ready_key(q), priority, ready_member(run_at, id))
  else
    redis.call('ZADD', due_key(q), run_at, id)
  end
end

-- Index entries of a batch of jobs, written at the end of a script with one command
-- per key: each redis.call costs about as much again as the command it runs. `adds`
-- and `rems` map a key to its members (ZADD: score, member, score, member, ...).
local CHUNK = 1000  -- members per command: Lua's unpack takes a few thousand values
local function add_later(adds, key, score, member)
  local list = adds[key]
  if not list then list = {}; adds[key] = list end
  list[#list + 1] = score
  list[#list + 1] = member
end
local function rem_later(rems, key, member)
  local list = rems[key]
  if not list then list = {}; rems[key] = list end
  list[#list + 1] = member
end
-- Run `command` (ZADD or ZREM) for each key of `batch`, `width` values per member.
local function write_later(command, batch, width)
  local step = CHUNK * width
  for key, list in pairs(batch) do
    for i = 1, #list, step do
      redis.call(command, key, unpack(list, i, math.min(i + step - 1, #list)))
    end
  end
end
-- park, for a batch: the ZADD of a job made waiting goes into `adds`.
local function park_later(adds, q, id, state, priority, run_at)
  if state == 'queued' then
    add_later(adds, ready_key(q), priority, ready_member(run_at, id))
  else
    add_later(adds, due_key(q), run_at, id)
  end
end

-- Whether a job whose worker_id field reads `current` is held by `worker` (a field
-- that is absent or empty is None: nobody holds the job).
local function holds(current, worker)
  return current and current ~= '' and current == worker
end

local function release_unique(unique_key, id)
  if unique_key and unique_key ~= '' and redis.call('HGET', P .. 'unique', unique_key) == id then
    redis.call('HDEL', P .. 'unique', unique_key)
  end
end

-- The errors JSON array with one more entry (entry: a JSON object as text).
local function append_error(errors, entry)
  if not errors or errors == '' or errors == '[]' then
    return '[' .. entry .. ']'
  end
  return string.sub(errors, 1, -2) .. ',' .. entry .. ']'
end

local function error_entry(attempt, step, kind, message)
  local step_part = ''
  if step then step_part = ',"step":' .. cjson.encode(step) end
  return '{"attempt":' .. attempt .. step_part .. ',"at":' .. SNOW .. ',"type":"' .. kind
    .. '","message":' .. cjson.encode(message) .. '}'
end

-- Remove a job that is not running, and every index entry of it.
local function remove_job(id)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'run_at', 'unique_key')
  local state, q = f[1], f[2]
  if not state then return 0 end
  redis.call('DEL', key)
  redis.call('ZREM', state_key(q, state), id)
  if state == 'queued' then
    redis.call('ZREM', ready_key(q), ready_member(f[3], id))
  elseif state == 'scheduled' or state == 'retrying' then
    redis.call('ZREM', due_key(q), id)
  end
  release_unique(f[4], id)
  if f[4] and f[4] ~= '' then redis.call('ZREM', P .. 'unique:' .. f[4], id) end
  return 1
end

-- Remove up to `limit` jobs of queue q in final state `state` that finished before
-- `before`. Candidates come from the state index in id order, oldest first: the ids
-- conveyor makes are in time order, so those of jobs that finished before `before`
-- lie below the first id made after it (a job finishes after it is made); ids given
-- by hand may sort anywhere, and those above every id conveyor has made (a day past
-- now) are looked at next. `after` (an id, or '-') resumes a scan. Answers how many
-- went and the last id looked at ('' when the scan is done).
local function remove_finished(q, state, before, limit, after)
  local index = state_key(q, state)
  local cut = id_floor(before + 60)
  local above = id_floor(NOW + 86400)
  local ids
  if after == '-' or after < cut then
    local start = '-'
    if after ~= '-' then start = '(' .. after end
    ids = redis.call('ZRANGEBYLEX', index, start, '(' .. cut, 'LIMIT', 0, limit)
    if #ids < limit then
      local more = redis.call('ZRANGEBYLEX', index, '(' .. above, '+', 'LIMIT', 0,
        limit - #ids)
      for _, id in ipairs(more) do ids[#ids + 1] = id end
    end
  else
    local start = after
    if start < above then start = above end
    ids = redis.call('ZRANGEBYLEX', index, '(' .. start, '+', 'LIMIT', 0, limit)
  end
  local count = 0
  for _, id in ipairs(ids) do
    local finished_at = redis.call('HGET', job_key(id), 'finished_at')
    if finished_at and finished_at ~= '' and tonumber(finished_at) < before then
      count = count + remove_job(id)
    end
  end
  return count, ids[#ids] or ''
end

-- A queue exists by its entry in P..'queues', or by its jobs: one dropped while some
-- of its jobs ran (see queue_jobs.lua) is in P..'dropped' and exists while any of its
-- jobs is stored, as on the SQL stores. Its held jobs are found in the lease set, read
-- job by job (as many as workers run at once); the others in its state indexes.
local DROPPED = P .. 'dropped'
local INDEXED = {'scheduled', 'queued', 'retrying', 'succeeded', 'poisoned', 'cancelled'}

-- The number of running and cancelling jobs of each queue: queue -> {state -> n}.
local function held_counts()
  local held = {}
  for _, id in ipairs(redis.call('ZRANGE', LEASES, 0, -1)) do
    local f = redis.call('HMGET', job_key(id), 'queue', 'state')
    if f[1] then
      local counts = held[f[1]]
      if not counts then counts = {}; held[f[1]] = counts end
      counts[f[2]] = (counts[f[2]] or 0) + 1
    end
  end
  return held
end

-- Whether a running or cancelling job of queue q is in the lease set.
local function holds_jobs_of(q)
  for _, id in ipairs(redis.call('ZRANGE', LEASES, 0, -1)) do
    if redis.call('HGET', job_key(id), 'queue') == q then return true end
  end
  return false
end

-- Whether queue q exists. A dropped queue found without jobs is forgotten.
local function queue_exists(q)
  if redis.call('HEXISTS', P .. 'queues', q) == 1 then return true end
  if redis.call('SISMEMBER', DROPPED, q) == 0 then return false end
  for _, state in ipairs(INDEXED) do
    if redis.call('ZCARD', state_key(q, state)) > 0 then return true end
  end
  if holds_jobs_of(q) then return true end
  redis.call('SREM', DROPPED, q)
  return false
end

local WAKE_TOKENS = 64

-- Wake-ups for jobs made ready: `queues` maps a queue to how many.
local function notify(queues)
  for q, count in pairs(queues) do
    local tokens = {}
    for i = 1, math.min(count, WAKE_TOKENS) do tokens[i] = '1' end
    local wake = P .. 'wake:' .. q
    -- LPUSH answers the list's length: trimmed only when over (rarely: a worker
    -- that is not blocked yet takes the tokens with its claim).
    if redis.call('LPUSH', wake, unpack(tokens)) > WAKE_TOKENS then
      redis.call('LTRIM', wake, '0', '63')  -- WAKE_TOKENS - 1
    end
  end
end

-- Undo the claim of job `id` held by `worker` that never ran there (handed over too
-- late, or given back by a worker that stops): waiting again at its place, the
-- attempt not counted; a job asked to cancel meanwhile ends cancelled. `attempts`
-- (or nil): the attempts the holder saw, to match. `extra`: more field / value pairs
-- to write. `ready` as for notify. Answers whether it did.
local function give_back(id, worker, attempts, ready, extra)
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'worker_id', 'attempts', 'state', 'queue', 'priority',
    'run_at', 'unique_key')
  if not holds(f[1], worker) or (attempts and f[2] ~= attempts) then return false end
  local q, current = f[4], f[3]
  local state = 'queued'
  if current == 'cancelling' then state = 'cancelled' end
  local fields = {'state', state, 'updated_at', SNOW}
  for _, value in ipairs(extra or {}) do fields[#fields + 1] = value end
  redis.call('HSET', key, unpack(fields))
  redis.call('HINCRBY', key, 'attempts', -1)
  redis.call('HDEL', key, 'worker_id', 'lease_until')
  redis.call('HINCRBY', key, 'version', 1)
  redis.call('ZREM', LEASES, id)
  move(q, id, current, state)
  if state == 'cancelled' then
    redis.call('HSET', key, 'finished_at', SNOW)
    release_unique(f[7], id)
  else
    park(q, id, state, f[5], f[6])
    ready[q] = (ready[q] or 0) + 1
  end
  return true
end

-- Hand-offs: a job enqueued while a worker blocks in wait goes to that worker,
-- claimed, in the answer to its BLPOP (one round trip, not a wake-up and a claim).
-- enqueue.lua makes them; ready.lua registers the waiting worker. Here what several
-- scripts share (each script runs the whole prelude on every call).
local WAITERS = P .. 'waiters'
local function handoff_key(worker) return P .. 'handoff:' .. worker end

-- Jobs handed to `worker` that it did not take (its wait ended first): given back,
-- the list emptied.
local function take_back_handed(worker, ready)
  local key = handoff_key(worker)
  local items = redis.call('LRANGE', key, 0, -1)
  if #items == 0 then return end
  redis.call('DEL', key)
  for _, item in ipairs(items) do
    if item ~= 'stop' then give_back(cjson.decode(item)[3][1], worker, nil, ready) end
  end
end

-- Counts per queue and minute: `tallies` maps a queue to {processed, failed}; kept
-- `keep` seconds after the minute starts (an expiry in the past removes the key).
local function minute_key(m) return P .. 'minute:' .. string.format('%d', m) end
local MINUTE = math.floor(NOW / 60) * 60

local function count_minute(tallies, keep)
  local key = minute_key(MINUTE)
  local fresh = false
  for q, t in pairs(tallies) do
    if redis.call('HINCRBY', key, 'p:' .. q, t[1]) == t[1] then fresh = true end
    if t[2] > 0 then redis.call('HINCRBY', key, 'f:' .. q, t[2]) end
  end
  -- Set once, when the key (or a queue's field of it) is new: a later batch in the
  -- same minute leaves the expiry as it is.
  if fresh then redis.call('EXPIREAT', key, MINUTE + math.floor(keep)) end
end
