-- A running job's steps, current step and progress, written by its lease holder:
-- ARGV[2] id, [3] worker, [4] attempts held, [5] steps, [6] current_step,
-- [7] progress ('' for none). Answers the clock, or false when the lease is gone.
local key = job_key(ARGV[2])
local f = redis.call('HMGET', key, 'worker_id', 'attempts')
if not holds(f[1], ARGV[3]) or f[2] ~= ARGV[4] then return false end
redis.call('HSET', key, 'steps', ARGV[5], 'current_step', ARGV[6], 'updated_at', SNOW)
if ARGV[7] == '' then
  redis.call('HDEL', key, 'progress')
else
  redis.call('HSET', key, 'progress', ARGV[7])
end
redis.call('HINCRBY', key, 'version', 1)
return SNOW
