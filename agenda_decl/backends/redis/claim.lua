-- The Redis scripts that claim, lock and unlock jobs (read by ``scripts.py``; each runs
-- after the prelude block of prelude.lua).

-- claim --
-- ARGV: prefix, name, next_scan_at ms, lock_deadline ms, now ms ('' = Redis TIME),
-- last_modified_by, limit, sweep count. Returns each claimed job (JOB_FIELDS), in order.
--
-- Cost: O(log N + D + S), N = all jobs, D = entries of the global sorted set that come due
-- before next_scan_at and precede the claimed ones (due jobs of every name, including the
-- claimed-but-not-started and disabled ones), S = stale locks of this name; plus, at most
-- once a second per name, a sweep of `sweep count` members of the name. Jobs that are not
-- due are never read (Agenda v6's script read every job of the name on every call).
local name = ARGV[2]
local scan_ms, deadline = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = tonumber(ARGV[5]) or server_ms()
local by, limit, sweep = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local zset, locked_set = P .. 'jobs:by_next_run_at', locked_key(name)

local function peek(id)
  return redis.call('HMGET', job_key(id), 'name', 'disabled', 'lockedAt', 'lockedAtMs')
end

-- 1. adopt the locks Node Agenda wrote on jobs of this name, a slice of the name at a time
local gate = P .. 'decl:sweep_gate:' .. name
if sweep > 0 and redis.call('SET', gate, '1', 'PX', 1000, 'NX') then
  local cursor_key = P .. 'decl:sweep:' .. name
  local page = redis.call('SSCAN', P .. 'jobs:by_name:' .. name,
    redis.call('GET', cursor_key) or '0', 'COUNT', sweep)
  for _, id in ipairs(page[2]) do
    local f = peek(id)
    if f[1] == name and is_locked(f[3], f[4]) then
      redis.call('ZADD', locked_set, 'NX', lock_time(f[3], f[4]), id)
    end
  end
  if page[1] == '0' then
    redis.call('DEL', cursor_key)
  else
    redis.call('SET', cursor_key, page[1])
  end
end

local chosen, seen = {}, {}
local function details(id)
  local g = redis.call('HMGET', job_key(id), 'nextRunAt', 'priority', 'createdAt', 'insertOrder')
  return {id = id, next_ms = iso_ms(g[1]), priority = tonumber(g[2]) or 0,
    created = g[3] or '', seq = tonumber(g[4]) or 0, stale = false}
end
local function choose(job, is_stale)
  if seen[job.id] then return false end
  job.stale = is_stale
  seen[job.id] = true
  table.insert(chosen, job)
  return true
end

-- 2. stale locks, whatever their nextRunAt
for _, id in ipairs(redis.call('ZRANGEBYSCORE', locked_set, '-inf', deadline)) do
  local f = peek(id)
  if f[1] ~= name or not is_locked(f[3], f[4]) then
    redis.call('ZREM', locked_set, id)
  elseif not stale(f[3], f[4], deadline) then
    redis.call('ZADD', locked_set, lock_time(f[3], f[4]), id)  -- touched since
  elseif f[2] ~= 'true' then
    choose(details(id), true)
  end
end

-- 3. due jobs, earliest first, until the room the stale ones left is filled and the last
--    one's millisecond is complete (within one millisecond the true priority and insertion
--    order decide, not the score)
local upper = '(' .. fmt_int(scan_ms + 1)
local room = limit - #chosen
local total = room > 0 and redis.call('ZCOUNT', zset, '-inf', upper) or 0
local found, last_ms, rank = 0, nil, 0
while rank < total do
  local page = redis.call('ZRANGE', zset, rank, math.min(rank + 99, total - 1), 'WITHSCORES')
  for i = 1, #page, 2 do
    local id, ms = page[i], math.floor(tonumber(page[i + 1]))
    if found >= room and ms > last_ms then rank = total; break end
    local f = peek(id)
    if f[1] == name and f[2] ~= 'true' then
      local job, is_stale = nil, false
      if not is_locked(f[3], f[4]) then
        job = details(id)
        if not (job.next_ms and job.next_ms <= scan_ms) then job = nil end
      elseif stale(f[3], f[4], deadline) then
        job, is_stale = details(id), true
      end
      if job and choose(job, is_stale) then found, last_ms = found + 1, ms end
    end
  end
  rank = rank + 100
end

-- 4. claim order: stale locks first (crash recovery never waits for the backlog), then
--    nextRunAt (nulls last), priority desc, insertion order
table.sort(chosen, function(a, b)
  if a.stale ~= b.stale then return a.stale end
  if a.next_ms ~= b.next_ms then
    if a.next_ms == nil then return false end
    if b.next_ms == nil then return true end
    return a.next_ms < b.next_ms
  end
  if a.priority ~= b.priority then return a.priority > b.priority end
  return before(a, b)
end)

local now_iso, claimed = ms_iso(now), {}
for i = 1, math.min(limit, #chosen) do
  local job = chosen[i]
  local key = job_key(job.id)
  write_lock(key, now)
  redis.call('HSET', key, 'lastModifiedBy', by, 'updatedAt', now_iso)
  redis.call('ZADD', locked_set, now, job.id)
  table.insert(claimed, hash_of(job.id))
end
return claimed

-- lock_job --
-- ARGV: prefix, id, name, expected nextRunAt ms ('' = null), now ms ('' = TIME), by.
local id, name, expected = ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = tonumber(ARGV[5]) or server_ms()
local key = job_key(id)
local f = redis.call('HMGET', key, 'name', 'disabled', 'lockedAt', 'lockedAtMs', 'nextRunAt')
if f[1] ~= name or f[2] == 'true' or is_locked(f[3], f[4]) then return nil end
if iso_ms(f[5]) ~= expected then return nil end
write_lock(key, now)
redis.call('HSET', key, 'lastModifiedBy', ARGV[6], 'updatedAt', ms_iso(now))
redis.call('ZADD', locked_key(name), now, id)
return hash_of(id)

-- unlock --
-- ARGV: prefix, '1' to keep the lock of a job without nextRunAt ('0' = always), ids...
for i = 3, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', job_key(id), 'name', 'nextRunAt')
  if f[1] and (ARGV[2] == '0' or present(f[2])) then
    write_lock(job_key(id), nil)
    redis.call('ZREM', locked_key(f[1]), id)
  end
end
return 0
