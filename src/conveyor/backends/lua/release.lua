-- Jobs given back by their lease holder (a worker shutting down): waiting again with
-- the attempt not counted, at their old place in the queue; a job asked to cancel
-- meanwhile ends cancelled. ARGV[2]: fields per job; then per job: id, worker,
-- attempts held, steps, current_step, progress ('' for none). Answers how many.
run_when_out_of_memory()
local width = tonumber(ARGV[2])
local count = 0
local ready = {}
for a = 3, #ARGV, width do
  local id, progress = ARGV[a], ARGV[a + 5]
  local extra = {'steps', ARGV[a + 3], 'current_step', ARGV[a + 4]}
  if progress ~= '' then extra[5], extra[6] = 'progress', progress end
  if give_back(id, ARGV[a + 1], ARGV[a + 2], ready, extra) then
    if progress == '' then redis.call('HDEL', job_key(id), 'progress') end
    count = count + 1
  end
end
notify(ready)
return count
