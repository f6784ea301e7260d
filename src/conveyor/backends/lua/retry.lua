-- Poisoned or cancelled job ARGV[2], as last read at version ARGV[3], back to queued
-- now with attempts reset and the steps ARGV[4] (pending again from the failed one).
-- Answers {'ok', fields}, {'missing'}, {'state', state} (not retryable),
-- {'changed'} (the version moved since it was read) or {'unique', holder}.
local id = ARGV[2]
local key = job_key(id)
local f = redis.call('HMGET', key, 'state', 'version', 'queue', 'priority', 'unique_key')
local state, q = f[1], f[3]
if not state then return {'missing'} end
if state ~= 'poisoned' and state ~= 'cancelled' then return {'state', state} end
if f[2] ~= ARGV[3] then return {'changed'} end
local unique_key = f[5]
if unique_key and unique_key ~= '' then
  local holder = redis.call('HGET', P .. 'unique', unique_key)
  if holder and holder ~= id and ACTIVE[redis.call('HGET', job_key(holder), 'state') or ''] then
    return {'unique', holder}
  end
  redis.call('HSET', P .. 'unique', unique_key, id)
end
redis.call('HSET', key, 'state', 'queued', 'attempts', 0, 'run_at', SNOW, 'steps', ARGV[4],
  'updated_at', SNOW)
redis.call('HDEL', key, 'finished_at', 'worker_id', 'lease_until')
redis.call('HINCRBY', key, 'version', 1)
move(q, id, state, 'queued')
park(q, id, 'queued', f[4], SNOW)
notify({[q] = 1})
return {'ok', redis.call('HGETALL', key)}
