-- The Redis scripts that claim, lock and unlock jobs (read by ``scripts.py``; each runs
-- after the prelude block of prelude.lua).

-- claim --
-- ARGV: prefix, name, next_scan_at ms, lock_deadline ms, now ms ('' = Redis TIME),
-- last_modified_by, limit, sweep count. Returns each claimed job (JOB_FIELDS), in order.
--
-- Cost: O(log N + limit + S), N = due jobs of the name, S = stale locks of this name (plus
-- the index entries that Node made out of date since, each put right once); plus, at most
-- once a second per name (once in five seconds while the name has due jobs), a sweep of
-- `sweep count` members of the name (ten times that at every claim while the name has jobs
-- Node enqueued that a pass has not seen). Other names' jobs,
-- and this name's jobs that are not due, disabled or locked, are never read (Agenda v6's
-- script read every job of the name on every call).
local name = ARGV[2]
local scan_ms, deadline = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = tonumber(ARGV[5]) or server_ms()
local by, limit, sweep = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local due, locked_set = due_key(name), locked_key(name)

local function peek(id)
  return redis.call('HMGET', job_key(id), 'name', 'disabled', 'lockedAt', 'lockedAtMs')
end

-- a Node process locks without telling us: note its lock, so that it is judged as ours are
-- (f: the job's name, disabled, lockedAt and lockedAtMs, as DUE_FIELDS and peek begin)
local function adopt_lock(id, f)
  if f[1] == name and is_locked(f[3], f[4]) then
    redis.call('ZADD', locked_set, 'NX', lock_time(f[3], f[4]), id)
  end
end

-- adopt_lock and reindex of one job, from one read of its hash
local function catch_up(id)
  local f = redis.call('HMGET', job_key(id), unpack(DUE_FIELDS))
  adopt_lock(id, f)
  index_entry(entry_of(id, name, f), name)
end

-- 1. the jobs Node Agenda wrote or changed (it keeps neither our due index nor our lock index)
--    are brought into both, a slice of the name at a time: at most once a second, or once
--    in five seconds while the name has due jobs (the claim that finds them is the one an
--    enqueue waits for: a slice costs it about ten times a claim of one job, so it is left
--    to the claims that find nothing due, until five seconds have gone by without one); and
--    at every claim, ten slices, while the name has members that our writes do not account
--    for (`foreign`: Node enqueued or removed jobs of it), until a whole pass of the name has
--    gone by with that number unchanged (a pass it changed during starts again).
local by_name = P .. 'jobs:by_name:' .. name
local function sweep_slice(cursor, count)
  local page = redis.call('SSCAN', by_name, cursor, 'COUNT', count)
  for _, id in ipairs(page[2]) do catch_up(id) end
  return page[1]
end
local function sweep_due()
  local gate, busy_gate = P .. 'decl:sweep_gate:' .. name, P .. 'decl:sweep_gate_busy:' .. name
  if #redis.call('ZRANGEBYSCORE', due, '-inf', scan_ms, 'LIMIT', 0, 1) > 0 then
    if redis.call('EXISTS', busy_gate) == 1 then return false end
    redis.call('SET', gate, '1', 'PX', 1000)
  elseif not redis.call('SET', gate, '1', 'PX', 1000, 'NX') then
    return false
  end
  redis.call('SET', busy_gate, '1', 'PX', 5000)
  return true
end
local members = redis.call('SCARD', by_name)
local foreign = members - (tonumber(redis.call('GET', known_key(name))) or 0)
if sweep > 0 and foreign ~= 0 then
  local pass_key = P .. 'decl:catch_up:' .. name
  local pass = redis.call('HMGET', pass_key, 'cursor', 'foreign')
  local cursor = tonumber(pass[2]) == foreign and pass[1] or '0'
  cursor = sweep_slice(cursor, sweep * 10)
  if cursor == '0' then
    redis.call('SET', known_key(name), members)
    redis.call('DEL', pass_key)
  else
    redis.call('HSET', pass_key, 'cursor', cursor, 'foreign', foreign)
  end
elseif sweep > 0 and sweep_due() then
  local cursor_key = P .. 'decl:sweep:' .. name
  local cursor = sweep_slice(redis.call('GET', cursor_key) or '0', sweep)
  if cursor == '0' then
    redis.call('DEL', cursor_key)
  else
    redis.call('SET', cursor_key, cursor)
  end
end

local chosen, seen = {}, {}
local function choose(job, is_stale)
  if seen[job.id] then return false end
  job.stale = is_stale == true
  seen[job.id] = true
  table.insert(chosen, job)
  return true
end

-- 2. stale locks, whatever their nextRunAt; a lock released since (by Node) puts the job
--    back into the due index
for _, id in ipairs(redis.call('ZRANGEBYSCORE', locked_set, '-inf', deadline)) do
  local f = peek(id)
  if f[1] ~= name or not is_locked(f[3], f[4]) then
    redis.call('ZREM', locked_set, id)
    reindex(id, name)
  elseif not stale(f[3], f[4], deadline) then
    redis.call('ZADD', locked_set, lock_time(f[3], f[4]), id)  -- touched since
  elseif f[2] ~= 'true' then
    choose(due_entry(id, name), true)
  end
end

-- 3. the first entries of the name's due index up to next_scan_at, for the room the stale
--    ones left: the due jobs in claim order. An entry that no longer matches its hash (Node
--    changed the job; a stale Node lock is adopted here and taken by step 2 next time) is
--    put right after the pass (not during it: the pages are read by offset).
local room = limit - #chosen
local found, offset, out_of_date = 0, 0, {}
while found < room do
  local page = redis.call('ZRANGEBYSCORE', due, '-inf', scan_ms, 'WITHSCORES', 'LIMIT',
    offset, 100)
  if #page == 0 then break end
  for i = 1, #page, 2 do
    local member, ms = page[i], tonumber(page[i + 1])
    local id = due_id(member)
    local job = id and due_entry(id, name)
    if job and job.eligible and job.member == member and job.next_ms == ms then
      if choose(job, false) then found = found + 1 end
      if found >= room then break end
    else
      table.insert(out_of_date, {member, id})
    end
  end
  offset = offset + 100
end
for _, entry in ipairs(out_of_date) do
  redis.call('ZREM', due, entry[1])
  if entry[2] then catch_up(entry[2]) end
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

local now_iso, now_text, claimed = ms_iso(now), lock_text(now), {}
for i = 1, math.min(limit, #chosen) do
  local job = chosen[i]
  local key = job_key(job.id)
  -- the lock write (write_lock) and the stamps in one HSET; lockedAt only where there is one
  redis.call('HSET', key, 'lockedAtMs', now_text, 'lastModifiedBy', by, 'updatedAt', now_iso)
  if job.iso_lock then redis.call('HDEL', key, 'lockedAt') end
  redis.call('ZADD', locked_set, now, job.id)
  redis.call('ZREM', due, job.member)
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
reindex(id, name)
return hash_of(id)

-- unlock --
-- ARGV: prefix, '1' to keep the lock of a job without nextRunAt ('0' = always), ids...
for i = 3, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', job_key(id), 'name', 'nextRunAt')
  if f[1] and (ARGV[2] == '0' or present(f[2])) then
    write_lock(job_key(id), nil)
    redis.call('ZREM', locked_key(f[1]), id)
    reindex(id, f[1])
  end
end
return 0
