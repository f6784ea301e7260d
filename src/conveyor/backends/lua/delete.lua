-- Remove job ARGV[2] unless it runs or, when ARGV[3] is 'only', unless it is in one of
-- the states ARGV[4..]. Answers 1 (removed), 0 (no such job) or the state of a job left
-- alone.
local state = redis.call('HGET', job_key(ARGV[2]), 'state')
if state == 'running' or state == 'cancelling' then return state end
if state and ARGV[3] == 'only' then
  local wanted = false
  for k = 4, #ARGV do
    if ARGV[k] == state then wanted = true end
  end
  if not wanted then return state end
end
return remove_job(ARGV[2])
