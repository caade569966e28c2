-- The Redis scripts that write jobs (read by ``scripts.py``; each runs after the prelude
-- block of prelude.lua; insert_many after the new_job block of this file, and insert,
-- save_by_id, save_single and save_unique after the new_job and save blocks).

-- save_states --
-- ARGV: prefix, then one JSON array with an array per job: id, name, lock ms ('' =
-- unlocked), nextRunAt ms ('' = null), lock token ms ('' = unfenced), the job's timing
-- (TIMING_ARGS values: repeatInterval, repeatAt, repeatTimezone, startDate ms, endDate ms,
-- skipDays JSON) and STATE_PAIRS field/value pairs, nextRunAt first, all strings (one
-- argument: packing thousands of them costs the client more than the script does).
-- nextRunAt is written only while the stored timing equals the job's, each compared in a
-- normal form (absent = 'null', an interval of digits without leading zeros, dates as ms,
-- skipDays re-encoded); otherwise the schedule was changed during the run and keeps its own
-- nextRunAt. Fencing: a job with a lock token is written only while its stored lock time
-- (lockedAtMs) is the token; otherwise nothing of it is written.
-- Returns the ids not written: no job has them (with this name), or they were fenced out.
local TIMING_ARGS, STATE_PAIRS = 6, 8  -- as codec.state_args sends them, after five values
local now_iso = ms_iso(server_ms())
local first_pair = 6 + TIMING_ARGS
local width = first_pair - 1 + 2 * STATE_PAIRS
local missing = {}  -- or fenced out

local function same_timing(job, f)
  return interval_of(f[4]) == interval_of(job[6]) and text_of(f[5]) == text_of(job[7])
    and text_of(f[6]) == text_of(job[8]) and iso_ms(f[7]) == tonumber(job[9])
    and iso_ms(f[8]) == tonumber(job[10])
    and (f[9] == job[11] or json_of(f[9]) == json_of(job[11]))
end

for _, job in ipairs(cjson.decode(ARGV[2])) do
  local id, name, lock_ms, next_ms = job[1], job[2], tonumber(job[3]), tonumber(job[4])
  local token = tonumber(job[5])
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'name', 'lockedAt', 'priority', 'repeatInterval',
    'repeatAt', 'repeatTimezone', 'startDate', 'endDate', 'skipDays', 'lockedAtMs', 'disabled',
    'nextRunAt', 'createdAt', 'insertOrder')
  if f[1] ~= name or (token and lock_time(f[2], f[10]) ~= token) then
    table.insert(missing, id)
  else
    local same = same_timing(job, f)
    local lock = lock_text(lock_ms)
    -- the fields, updatedAt and the lock (write_lock) in one HSET; lockedAt only if present
    local fields = {unpack(job, same and first_pair or first_pair + 2, width)}
    table.insert(fields, 'updatedAt')
    table.insert(fields, now_iso)
    table.insert(fields, 'lockedAtMs')
    table.insert(fields, lock)
    redis.call('HSET', key, unpack(fields))
    if f[2] then redis.call('HDEL', key, 'lockedAt') end
    if lock_ms then
      redis.call('ZADD', locked_key(name), lock_ms, id)
    else
      redis.call('ZREM', locked_key(name), id)
    end
    local next_text = f[12]
    if same then
      next_text = job[first_pair + 1]
      redis.call('ZADD', P .. 'jobs:by_next_run_at', score(next_ms, tonumber(f[3]) or 0), id)
    end
    -- reindex without reading the hash back: its DUE_FIELDS as they are now
    index_entry(entry_of(id, name, {name, f[11], false, lock, next_text, f[3], f[13], f[14]}),
      name)
  end
end
return missing

-- new_job --
-- What storing a new job writes, for every insert: its hash (null processor fields,
-- createdAt and updatedAt, our insertOrder, noData when it has no data, then the field pairs
-- pairs[first..last]) and its entries in jobs:all, jobs:by_name:{name} and
-- jobs:by_next_run_at. A batch passes the insert order it reserved and a `later` table
-- (new_jobs) that collects the set and sorted-set entries, written by add_later in one
-- command per key afterwards (a command per job and key cost the script more than the
-- entries themselves).
local function store_new_job(id, name, next_ms, priority, now_iso, no_data, pairs, first, last,
                             order, later)
  local key = job_key(id)
  order = order or redis.call('INCR', P .. 'decl:insert_order')
  -- one HSET for the whole hash (unpack last: it expands only there)
  redis.call('HSET', key, 'id', id, 'lockedAtMs', 'null',
    'lastFinishedAt', 'null', 'failedAt', 'null', 'failCount', 'null', 'failReason', 'null',
    'lastRunAt', 'null', 'progress', 'null', 'createdAt', now_iso, 'updatedAt', now_iso,
    'insertOrder', order, unpack(pairs, first, last))
  if no_data then redis.call('HSET', key, 'noData', 'true') end
  if later then
    later.add('SADD', P .. 'jobs:all', id)
    later.add('SADD', P .. 'jobs:by_name:' .. name, id)
    later.add('ZADD', P .. 'jobs:by_next_run_at', score(next_ms, priority), id)
    return order
  end
  redis.call('SADD', P .. 'jobs:all', id)
  if redis.call('SADD', P .. 'jobs:by_name:' .. name, id) == 1 then
    redis.call('INCR', known_key(name))
  end
  redis.call('ZADD', P .. 'jobs:by_next_run_at', score(next_ms, priority), id)
  return order
end

-- The entries a batch of new jobs adds, per command and key, in the order added; written by
-- write() in commands of at most 4,000 arguments (Lua's unpack has a limit). The members a
-- jobs:by_name SADD added count as known (decl:known, see the claim's sweep).
local function new_jobs()
  local batch, keys = {}, {}
  -- one member, or (ZADD) a score and a member
  local function add(command, key, first, second)
    local entry = batch[key]
    if not entry then
      entry = {command = command, args = {}}
      batch[key] = entry
      table.insert(keys, key)
    end
    local args = entry.args
    args[#args + 1] = first
    if second ~= nil then args[#args + 1] = second end
  end
  local function write()
    local by_name = P .. 'jobs:by_name:'
    for _, key in ipairs(keys) do
      local entry, added = batch[key], 0
      for i = 1, #entry.args, 4000 do
        added = added + redis.call(entry.command, key,
          unpack(entry.args, i, math.min(i + 3999, #entry.args)))
      end
      if key:sub(1, #by_name) == by_name and added > 0 then
        redis.call('INCRBY', known_key(key:sub(#by_name + 1)), added)
      end
    end
  end
  return {add = add, write = write}
end

-- insert_many --
-- Insert new jobs (no id, not single, no unique key) under the ids the caller made, then
-- announce them. ARGV: prefix, now ms ('' = TIME), one JSON array of groups of jobs that
-- differ only in id and data, each [shape, members]: shape is the jobs' common row (id,
-- name, nextRunAt ms ('' = null), priority, noData ('true' or ''), disabled ('true' or ''),
-- then the field pairs of every non-processor field, whose data value is a placeholder) and
-- members lists id, data text, id, data text... (a now_many batch is one group: its shared
-- fields are sent and decoded once, not per job); then one JSON array of [channel, payload]
-- messages to PUBLISH once the jobs are stored (so the enqueue and its notification are one
-- round trip). A job whose id exists is one this very batch stored before (the caller
-- repeats the call when the reply was lost): it is not written again, and a batch with no
-- new job publishes nothing. Returns how many jobs were new.
local now_iso = ms_iso(tonumber(ARGV[2]) or server_ms())
local new = 0
local groups = cjson.decode(ARGV[3])
local count = 0
for _, group in ipairs(groups) do count = count + #group[2] / 2 end
-- the batch's insert orders, reserved at once (a job skipped below leaves a gap: harmless)
local order = redis.call('INCRBY', P .. 'decl:insert_order', count) - count
local later = new_jobs()
for _, group in ipairs(groups) do
  local job, members = group[1], group[2]
  local data_at
  for k = 7, #job - 1, 2 do
    if job[k] == 'data' then data_at = k + 1 end
  end
  local name, next_ms, priority = job[2], tonumber(job[3]), tonumber(job[4])
  local no_data, indexed = job[5] == 'true', next_ms and job[6] ~= 'true'
  for i = 1, #members, 2 do
    order = order + 1
    local id = members[i]
    if redis.call('EXISTS', job_key(id)) == 0 then
      job[1], job[data_at] = id, members[i + 1]
      store_new_job(id, name, next_ms, priority, now_iso, no_data, job, 7, #job, order, later)
      -- the due entry without reading the hash back: a new job is unlocked, and its entry is
      -- made of what was just written
      if indexed then later.add('ZADD', due_key(name), next_ms, due_member(id, priority,
        now_iso, order)) end
      new = new + 1
    end
  end
end
later.write()
if new > 0 then
  for _, message in ipairs(cjson.decode(ARGV[4])) do
    redis.call('PUBLISH', message[1], message[2])
  end
end
return new

-- save --
-- The shared body of the save scripts. ARGV: prefix, name, id (existing, or a fresh uuid
-- for an insert), nextRunAt ms ('' = null), priority, now ms ('' = TIME), options JSON
-- (noData = true: the job has no data, stored as '{}' plus our noData field; see
-- decode_data), then the field pairs of every non-processor field (nextRunAt and
-- debounceStartedAt may be overridden below).
local name, id, priority = ARGV[2], ARGV[3], tonumber(ARGV[5])
local next_ms = tonumber(ARGV[4])
local now = tonumber(ARGV[6]) or server_ms()
local opts = cjson.decode(ARGV[7])
local now_iso = ms_iso(now)

local function set_fields(key, next_text, debounce_text)
  redis.call('HSET', key, unpack(ARGV, 8))
  redis.call('HSET', key, 'updatedAt', now_iso)
  if opts.noData then
    redis.call('HSET', key, 'noData', 'true')
  else
    redis.call('HDEL', key, 'noData')
  end
  if next_text then redis.call('HSET', key, 'nextRunAt', next_text) end
  if debounce_text then redis.call('HSET', key, 'debounceStartedAt', debounce_text) end
end

local function iso_or_null(ms) if ms then return ms_iso(ms) end return 'null' end

local function insert(single, next_text, debounce_text)
  store_new_job(id, name, next_ms, priority, now_iso, opts.noData, ARGV, 8, #ARGV)
  if next_text then redis.call('HSET', job_key(id), 'nextRunAt', next_text) end
  if debounce_text then redis.call('HSET', job_key(id), 'debounceStartedAt', debounce_text) end
  if single then redis.call('SET', P .. 'jobs:single:' .. name, id) end
  reindex(id, name)
  return hash_of(id)
end

local function update(existing, next_text, debounce_text)
  unindex(existing, name)  -- its entry goes with the old priority
  set_fields(job_key(existing), next_text, debounce_text)
  redis.call('ZADD', P .. 'jobs:by_next_run_at', score(next_ms, priority), existing)
  reindex(existing, name)
  return hash_of(existing)
end

-- insert --
-- Insert a new job (no id, not single, no unique key) under the id the caller made. A job
-- with that id exists only if this very insert ran before (the caller repeats it when the
-- reply was lost): then nothing is written again.
if redis.call('EXISTS', job_key(id)) == 0 then insert(false) end
return 1  -- the job is exactly what the caller sent: nothing to read back

-- save_by_id --
-- Update by id; nil when no job has this id and name. Keeps ``jobs:single:{name}`` pointing
-- at the job when its type becomes 'single' (and away from it when it stops being single).
if redis.call('HGET', job_key(id), 'name') ~= name then return nil end
local pointer_key = P .. 'jobs:single:' .. name
local pointer = redis.call('GET', pointer_key)
if opts.type == 'single' then
  if not pointer or redis.call('EXISTS', job_key(pointer)) == 0 then
    redis.call('SET', pointer_key, id)
  end
elseif pointer == id then
  redis.call('DEL', pointer_key)
end
return update(id)

-- save_single --
-- Upsert of a 'single' job by name; a due incoming nextRunAt keeps a stored one, unless the
-- timing (repeatInterval, repeatAt, repeatTimezone, startDate, endDate, skipDays, in their
-- normal forms) differs from the stored one: then the job follows its new schedule.
local incoming = {}
for i = 8, #ARGV, 2 do incoming[ARGV[i]] = ARGV[i + 1] end
local function same_timing(f)
  return interval_of(f[4]) == interval_of(incoming.repeatInterval)
    and text_of(f[5]) == text_of(incoming.repeatAt)
    and text_of(f[6]) == text_of(incoming.repeatTimezone)
    and iso_ms(f[7]) == iso_ms(incoming.startDate) and iso_ms(f[8]) == iso_ms(incoming.endDate)
    and (f[9] == incoming.skipDays or json_of(f[9]) == json_of(incoming.skipDays))
end
local existing = redis.call('GET', P .. 'jobs:single:' .. name)
if existing then
  local f = redis.call('HMGET', job_key(existing), 'name', 'type', 'nextRunAt',
    'repeatInterval', 'repeatAt', 'repeatTimezone', 'startDate', 'endDate', 'skipDays')
  if f[1] == name and f[2] == 'single' then
    if next_ms and next_ms <= now and present(f[3]) and same_timing(f) then
      next_ms = iso_ms(f[3])
      return update(existing, f[3])
    end
    return update(existing)
  end
end
return insert(true)

-- save_unique --
-- Upsert on a unique key. opts: {keys = [{path = [...], value = tagged} | {field, text}],
-- never = bool, insertOnly = bool, debounce = {delay, maxWait, strategy} | absent}.
-- Scans the jobs of the name (as Agenda v6 does): O(jobs of the name).
local function matches(id)
  local f = redis.call('HMGET', job_key(id), 'name', 'data', 'noData')
  if f[1] ~= name then return false end
  local data = nil
  for _, key in ipairs(opts.keys) do
    if key.path then
      if data == nil then data = decode_data(f[2], f[3]) end
      if data == nil then return false end
      local value = data
      for _, part in ipairs(key.path) do
        if type(value) == 'table' and value[part] ~= nil then value = value[part]
        else value = cjson.null; break end
      end
      if not equals(value, key.value) then return false end
    elseif redis.call('HGET', job_key(id), key.field) ~= key.text then
      return false
    end
  end
  return true
end

local best = nil
if not opts.never then
  for _, candidate in ipairs(redis.call('SMEMBERS', P .. 'jobs:by_name:' .. name)) do
    if matches(candidate) then
      local f = redis.call('HMGET', job_key(candidate), 'createdAt', 'insertOrder')
      local row = {id = candidate, created = f[1] or '', seq = tonumber(f[2]) or 0}
      if not best or before(row, best) then best = row end
    end
  end
end

local debounce = opts.debounce
if best and opts.insertOnly and not debounce then return hash_of(best.id) end
if not debounce then
  if best then return update(best.id) end
  return insert(false)
end

-- debounce: backends.base.debounce_outcome, in Lua so that read and write are one atomic step
local started = now
local stored_next = nil
if best then
  local f = redis.call('HMGET', job_key(best.id), 'nextRunAt', 'debounceStartedAt')
  stored_next = iso_ms(f[1])
  started = iso_ms(f[2]) or now
end
local debounce_ms = started
if not best then
  if debounce.strategy ~= 'leading' then next_ms = now + debounce.delay end
elseif debounce.strategy == 'leading' then
  next_ms = stored_next
elseif debounce.maxWait and now - started >= debounce.maxWait then
  next_ms, debounce_ms = now, nil
else
  next_ms = now + debounce.delay
end
if best then return update(best.id, iso_or_null(next_ms), iso_or_null(debounce_ms)) end
return insert(false, iso_or_null(next_ms), iso_or_null(debounce_ms))

-- heal --
-- Bring hashes written by agenda-decl 0.1 (or by an Agenda that marked locks with lockedAt)
-- to the form of @agendajs/redis-backend 3.0.7. ARGV: prefix, ids... For each hash:
-- * lockedAt is deleted. Its time is carried into lockedAtMs only when the hash has no
--   lockedAtMs field at all (a lock from before that field). A hash with lockedAtMs 'null'
--   and an ISO lockedAt was unlocked by a writer that knows lockedAtMs only (Node 3.x, after
--   agenda-decl 0.1 had claimed it too; 0.1 always wrote both fields alike): that lockedAt
--   is a leftover, and carrying it over would make a finished job stale-locked and run it
--   again.
-- * data 'null' (0.1's form of no data, on which Node's unique scan throws) becomes '{}'
--   with noData = 'true': it still reads back as no data.
-- * the job is put into (or out of) the due index of its name (reindex), which jobs written
--   by Node Agenda or by an agenda-decl from before that index lack.
-- Returns the number of hashes changed.
local changed = 0
for i = 2, #ARGV do
  local key = job_key(ARGV[i])
  local f = redis.call('HMGET', key, 'name', 'lockedAt', 'lockedAtMs', 'data')
  if f[1] then
    local touched = false
    if f[2] ~= false then
      if f[3] == false then
        local ms = iso_ms(f[2])
        redis.call('HSET', key, 'lockedAtMs', ms and fmt_int(ms) or 'null')
      end
      redis.call('HDEL', key, 'lockedAt')
      touched = true
    end
    if f[4] == 'null' then
      redis.call('HSET', key, 'data', '{}', 'noData', 'true')
      touched = true
    end
    if touched then changed = changed + 1 end
    reindex(ARGV[i], f[1])
  end
end
return changed
