-- Delete up to ARGV[3] jobs of each final state ARGV[4..] that finished before
-- ARGV[2]. Answers how many.
local count = 0
for k = 4, #ARGV do
  local old = redis.call('ZRANGEBYSCORE', finished_key(ARGV[k]), '-inf', '(' .. ARGV[2],
    'LIMIT', 0, tonumber(ARGV[3]))
  for _, id in ipairs(old) do count = count + remove_job(id) end
end
return count
