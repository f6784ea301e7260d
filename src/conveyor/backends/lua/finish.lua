-- Outcomes of runs, each a compare-and-set on (id, worker, attempts held).
-- ARGV[2], ARGV[3]: seconds to keep succeeded / poisoned and cancelled jobs (0: until
-- pruned); ARGV[4]: seconds to keep counts per minute; ARGV[5]: fields per item; then
-- the items, each: id, worker, attempts held,
-- state, delay, attempts, steps, current_step, progress, result, errors, failed
-- ('' for none). A job asked to cancel while it ran is not run again: a retry
-- outcome ends it cancelled. Answers 1 / 0 per item (written or not).
local keep = {succeeded = tonumber(ARGV[2]), poisoned = tonumber(ARGV[3]),
              cancelled = tonumber(ARGV[3])}
local width = tonumber(ARGV[5])
local out = {}
local ready = {}
local processed, failed = 0, 0
local tallies = {}
local ended = {}
local adds, unleased = {}, {}  -- index entries of the written runs, written at the end
for a = 6, #ARGV, width do
  local id = ARGV[a]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'worker_id', 'attempts', 'state', 'queue', 'priority',
    'unique_key', 'version')
  if holds(f[1], ARGV[a + 1]) and f[2] == ARGV[a + 2] then
    local q, current, state = f[4], f[3], ARGV[a + 3]
    if current == 'cancelling' and (state == 'queued' or state == 'retrying') then
      state = 'cancelled'
    end
    -- One write: fields that become None are written empty.
    local run_at, finished_at = nil, ''
    if FINAL[state] then
      finished_at = SNOW
    else
      run_at = fmt(NOW + tonumber(ARGV[a + 4]))
    end
    local fields = {'state', state, 'attempts', ARGV[a + 5], 'steps', ARGV[a + 6],
      'current_step', ARGV[a + 7], 'progress', ARGV[a + 8], 'result', ARGV[a + 9],
      'errors', ARGV[a + 10], 'worker_id', '', 'lease_until', '', 'finished_at', finished_at,
      'updated_at', SNOW, 'version', f[7] + 1}
    if run_at then
      fields[#fields + 1] = 'run_at'
      fields[#fields + 1] = run_at
    end
    redis.call('HSET', key, unpack(fields))
    unleased[#unleased + 1] = id
    -- move and park of the prelude, deferred (a held job is in no state index).
    if not HELD[current] then redis.call('ZREM', state_key(q, current), id) end
    if not HELD[state] then add_later(adds, state_key(q, state), '0', id) end
    if run_at then
      park_later(adds, q, id, state, f[5], run_at)
      if state == 'queued' then ready[q] = (ready[q] or 0) + 1 end
    else
      release_unique(f[6], id)
      ended[q .. ':' .. state] = {q, state}
    end
    local run_failed = tonumber(ARGV[a + 11])
    processed = processed + 1
    failed = failed + run_failed
    local t = tallies[q]
    if t then
      t[1] = t[1] + 1
      t[2] = t[2] + run_failed
    else
      tallies[q] = {1, run_failed}
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
write_later('ZADD', adds, 2)
write_later('ZREM', {[LEASES] = unleased}, 1)
if processed > 0 then redis.call('HINCRBY', P .. 'counters', 'processed', processed) end
if failed > 0 then redis.call('HINCRBY', P .. 'counters', 'failed', failed) end
if processed > 0 then count_minute(tallies, tonumber(ARGV[4])) end
notify(ready)
-- Retention: a few of the oldest finished jobs past their keeping time go, so that
-- the store stays bounded without a sweeper.
for _, place in pairs(ended) do
  local q, state = place[1], place[2]
  if keep[state] > 0 then remove_finished(q, state, NOW - keep[state], 100, '-') end
end
return out
