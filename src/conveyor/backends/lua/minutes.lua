-- Counts per queue and minute, for the minutes starting at or after ARGV[2] and kept
-- (ARGV[3]: seconds kept after a minute starts), of queue ARGV[4] ('' for every
-- queue). Answers one row per minute and queue, oldest first: minute, queue,
-- processed, failed, depth ('' when not sampled). Looks at each minute's key in turn:
-- at most keep / 60 of them (1,500 for 25 hours).
local first = math.max(math.ceil(tonumber(ARGV[2]) / 60) * 60,
  math.floor((NOW - tonumber(ARGV[3])) / 60) * 60)
local only = ARGV[4]
local out = {}
for m = first, MINUTE, 60 do
  local key = minute_key(m)
  if only ~= '' then
    local f = redis.call('HMGET', key, 'p:' .. only, 'f:' .. only, 'd:' .. only)
    if f[1] or f[3] then
      out[#out + 1] = {m, only, f[1] or '0', f[2] or '0', f[3] or ''}
    end
  else
    local fields = redis.call('HGETALL', key)
    local rows = {}
    for i = 1, #fields, 2 do
      local kind, q = string.sub(fields[i], 1, 1), string.sub(fields[i], 3)
      local row = rows[q]
      if not row then
        row = {m, q, '0', '0', ''}
        rows[q] = row
      end
      if kind == 'p' then
        row[3] = fields[i + 1]
      elseif kind == 'f' then
        row[4] = fields[i + 1]
      else
        row[5] = fields[i + 1]
      end
    end
    -- Queues in byte order here too (the caller sorts again: Lua compares by locale)
    local names = {}
    for q in pairs(rows) do names[#names + 1] = q end
    table.sort(names)
    for _, q in ipairs(names) do out[#out + 1] = rows[q] end
  end
end
return out
