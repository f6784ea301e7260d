-- Remove job ARGV[2] unless it runs. Answers 1 (removed), 0 (no such job) or the
-- state of a running job, which is left alone.
local state = redis.call('HGET', job_key(ARGV[2]), 'state')
if state == 'running' or state == 'cancelling' then return state end
return remove_job(ARGV[2])
