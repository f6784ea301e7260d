-- Cancel job ARGV[2] (reason ARGV[3]): waiting -> cancelled, the reason joining its
-- errors; running -> cancelling (its worker stops it); otherwise unchanged.
-- Answers the job's fields, or false when there is no such job.
local id = ARGV[2]
local key = job_key(id)
local f = redis.call('HMGET', key, 'state', 'queue', 'run_at', 'attempts', 'errors',
  'unique_key')
local state, q = f[1], f[2]
if not state then return false end
if state == 'running' then
  redis.call('HSET', key, 'state', 'cancelling', 'updated_at', SNOW)
  redis.call('HINCRBY', key, 'version', 1)
elseif state == 'scheduled' or state == 'queued' or state == 'retrying' then
  if state == 'queued' then
    redis.call('ZREM', ready_key(q), ready_member(f[3], id))
  else
    redis.call('ZREM', due_key(q), id)
  end
  redis.call('HSET', key, 'state', 'cancelled', 'finished_at', SNOW, 'updated_at', SNOW,
    'errors', append_error(f[5], error_entry(f[4], nil, 'Cancelled', ARGV[3])))
  redis.call('HINCRBY', key, 'version', 1)
  move(q, id, state, 'cancelled')
  release_unique(f[6], id)
end
return redis.call('HGETALL', key)
