-- The helpers every Redis script starts with (read by ``scripts.py``, which puts this
-- block in front of each script). ARGV[1] is always the key prefix.

-- prelude --
-- Shared helpers: stored values and their normal forms, dates as epoch milliseconds,
-- Agenda v6's score and lock fields, JSON containment, the computed state.
local P = ARGV[1]
local MAX_SAFE = '9007199254740991'

-- HMGET gives false for a missing field; Agenda writes 'null' for an absent value
local function present(v) return v and v ~= 'null' and v ~= '' end

-- normal forms of stored timing values, which a state write compares with the job's (a
-- schedule changed during the run keeps its own nextRunAt): absent = 'null', an interval of
-- digits without leading zeros, JSON re-encoded
local function text_of(v) if present(v) then return v end return 'null' end
local function interval_of(v)
  v = text_of(v)
  return string.match(v, '^0*(%d+)$') or v
end
local function json_of(v)
  if not present(v) then return 'null' end
  local ok, decoded = pcall(cjson.decode, v)
  if ok then return cjson.encode(decoded) end
  return v
end

local function fmt_int(n) return string.format('%d', n) end

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- days since 1970-01-01 of a proleptic Gregorian date and back (H. Hinnant's algorithms)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- 'YYYY-MM-DDTHH:MM:SS.mmmZ' (JavaScript's toISOString) -> epoch ms, nil when absent
local function iso_ms(v)
  if not present(v) then return nil end
  local y, mo, d, h, mi, s, frac = string.match(v,
    '^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.?(%d*)Z$')
  if not y then return nil end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  local ms = tonumber(string.sub(frac .. '000', 1, 3))
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000 + ms
end

local function ms_iso(ms)
  local days = math.floor(ms / 86400000)
  local rest = ms - days * 86400000
  local y, m, d = civil_from_days(days)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rest / 3600000), math.floor(rest / 60000) % 60, math.floor(rest / 1000) % 60,
    rest % 1000)
end

-- Agenda v6's score: time first, then priority (clamped to 0..99) in the fraction
local function score(next_ms, priority)
  if not next_ms then return MAX_SAFE end
  return next_ms + (100 - math.min(math.max(priority, 0), 99)) / 1000
end

-- The lock is lockedAtMs (epoch ms as a decimal string, 'null' when unlocked), the only
-- lock field of @agendajs/redis-backend 3.0.7, read and written alone. A hash that has no
-- lockedAtMs field at all (from before that field) is judged by its ISO lockedAt instead;
-- connect heals such hashes (the heal block of save.lua), and every lock write drops lockedAt.
-- HMGET gives false for a missing field.
local function is_locked(locked_at, locked_at_ms)
  if locked_at_ms == false then return present(locked_at) and true or false end
  return present(locked_at_ms) and true or false
end

-- the lock time in ms (0 when unlocked or unreadable)
local function lock_time(locked_at, locked_at_ms)
  if locked_at_ms == false then return iso_ms(locked_at) or 0 end
  return tonumber(locked_at_ms) or 0
end

local function stale(locked_at, locked_at_ms, deadline)
  return lock_time(locked_at, locked_at_ms) <= deadline
end

-- the stored text of a lock time in ms (nil: unlocked)
local function lock_text(ms)
  if ms then return fmt_int(ms) end
  return 'null'
end

local function write_lock(key, ms)
  redis.call('HSET', key, 'lockedAtMs', lock_text(ms))
  redis.call('HDEL', key, 'lockedAt')
end

local function job_key(id) return P .. 'job:' .. id end
local function locked_key(name) return P .. 'decl:locked:' .. name end
local function due_key(name) return P .. 'decl:due:' .. name end
-- how many members of jobs:by_name:{name} our own writes account for: when the set's size
-- differs, another writer (Node Agenda) added or removed jobs of the name, and the next claim
-- sweeps the name fast until it has seen them all
local function known_key(name) return P .. 'decl:known:' .. name end

-- insertion order: our counter, else Agenda's createdAt, then the id
local function before(a, b)
  if a.created ~= b.created then return a.created < b.created end
  if a.seq ~= b.seq then return a.seq < b.seq end
  return a.id < b.id
end

-- The due index of a name (decl:due:{name}), ours alone: score = nextRunAt in ms, member =
-- the claim order within a millisecond (priority descending, then insertion order as in
-- `before`) and the id: '<2^53 - priority, 17 digits> <createdAt> <insertOrder, 16 digits>
-- <id>'. So its first entries are the claim's first jobs, whatever the backlog. A job is in
-- it exactly while its hash has this name, a nextRunAt, and is neither disabled nor locked.
-- Every script of ours that changes one of those (or the priority: `unindex` first) runs
-- `reindex` after its writes, in the same atomic step; a claim re-checks each entry it reads
-- against the hash (Node Agenda writes the hash and its global set only).
local MAX_PRIORITY = 9007199254740991
local DUE_FIELDS = {'name', 'disabled', 'lockedAt', 'lockedAtMs', 'nextRunAt', 'priority',
  'createdAt', 'insertOrder'}

local function due_member(id, priority, created, seq)
  local p = math.min(math.max(priority, -MAX_PRIORITY), MAX_PRIORITY)
  return string.format('%017d %s %016d %s', MAX_PRIORITY - p, created, seq, id)
end

-- the due entry of a job from the values of its DUE_FIELDS, in order (`iso_lock`: the hash
-- has an ISO lockedAt, which a lock write deletes)
local function entry_of(id, name, f)
  local job = {id = id, next_ms = iso_ms(f[5]), priority = tonumber(f[6]) or 0,
    created = f[7] or '', seq = tonumber(f[8]) or 0, iso_lock = f[3] ~= false}
  job.member = due_member(id, job.priority, job.created, job.seq)
  job.eligible = f[1] == name and f[2] ~= 'true' and not is_locked(f[3], f[4])
    and job.next_ms ~= nil
  return job
end

local function due_entry(id, name)
  return entry_of(id, name, redis.call('HMGET', job_key(id), unpack(DUE_FIELDS)))
end

-- put a job's due entry in or out of its name's due index
local function index_entry(job, name)
  if job.eligible then
    redis.call('ZADD', due_key(name), job.next_ms, job.member)
  else
    redis.call('ZREM', due_key(name), job.member)
  end
end

local function due_id(member) return string.match(member, '^%d+ [^ ]* %d+ (.+)$') end

local function unindex(id, name)
  redis.call('ZREM', due_key(name), due_entry(id, name).member)
end

local function reindex(id, name) index_entry(due_entry(id, name), name) end

-- the hash fields a job is read from, in the order the scripts return them (HMGET); the
-- same list as scripts.JOB_FIELDS on the Python side (lockedAt only for hashes not healed
-- yet; noData is ours, see decode_data)
local JOB_FIELDS = {'id', 'name', 'priority', 'nextRunAt', 'type', 'lockedAt', 'lockedAtMs',
  'lastFinishedAt', 'failedAt', 'failCount', 'failReason', 'repeatTimezone', 'lastRunAt',
  'repeatInterval', 'data', 'repeatAt', 'disabled', 'progress', 'fork', 'lastModifiedBy',
  'debounceStartedAt', 'startDate', 'endDate', 'skipDays', 'noData'}
local function hash_of(id) return redis.call('HMGET', job_key(id), unpack(JOB_FIELDS)) end

-- JSON values from Python are tagged: {o = object}, {a = array} or {s = scalar}, so that an
-- empty object, an empty array and null stay apart (cjson decodes {} and [] alike).
local function is_array(t) return next(t) == nil or t[1] ~= nil end
local function is_object(t) return next(t) == nil or t[1] == nil end

local function same_scalar(h, v)
  if v == cjson.null then return h == cjson.null end
  return type(h) == type(v) and h == v
end

-- PostgreSQL's @> (_job_data.data_contains): objects by subset of keys, arrays by elements
local function contains(h, n)
  if n.o then
    if type(h) ~= 'table' or not is_object(h) then return false end
    for k, sub in pairs(n.o) do
      if h[k] == nil or not contains(h[k], sub) then return false end
    end
    return true
  elseif n.a then
    if type(h) ~= 'table' or not is_array(h) then return false end
    for _, sub in ipairs(n.a) do
      local found = false
      for _, item in ipairs(h) do
        if contains(item, sub) then found = true; break end
      end
      if not found then return false end
    end
    return true
  end
  return same_scalar(h, n.s)
end

local function equals(h, n)
  if n.o then
    if type(h) ~= 'table' or not is_object(h) then return false end
    local count = 0
    for k, sub in pairs(n.o) do
      count = count + 1
      if h[k] == nil or not equals(h[k], sub) then return false end
    end
    for _ in pairs(h) do count = count - 1 end
    return count == 0
  elseif n.a then
    if type(h) ~= 'table' or not is_array(h) or #h ~= #n.a then return false end
    for i, sub in ipairs(n.a) do
      if not equals(h[i], sub) then return false end
    end
    return true
  end
  return same_scalar(h, n.s)
end

-- A job saved without data stores '{}', as Node does (its unique scan reads every job's
-- data as an object), and our field noData = 'true' says that this '{}' is no data: the job
-- reads back as null, as in every other store. A '{}' without it (Node's) is an empty object.
local function is_no_data(text, no_data) return no_data == 'true' and text == '{}' end

local function decode_data(text, no_data)
  if is_no_data(text, no_data) then return cjson.null end
  local ok, value = pcall(cjson.decode, text or '{}')
  if ok then return value end
  return nil
end

-- the computed state, as agenda_decl._model.compute_job_state
local function repeating(interval)
  return present(interval) and not (string.match(interval, '^%d+$') and tonumber(interval) == 0)
end

local function state_of(j, now)
  if j.locked then return 'running' end
  if j.failed_ms and (not j.finished_ms or j.failed_ms >= j.finished_ms) then return 'failed' end
  if j.repeating then return 'repeating' end
  if j.next_ms then
    if j.next_ms > now then return 'scheduled' end
    return 'queued'
  end
  return 'completed'
end

-- a repeating job has an interval or a time of day (repeatAt), as in compute_job_state
local STATE_FIELDS = {'name', 'disabled', 'lockedAt', 'lockedAtMs', 'failedAt',
  'lastFinishedAt', 'repeatInterval', 'nextRunAt', 'repeatAt'}

local function state_row(id, f)
  return {id = id, name = f[1], disabled = f[2] == 'true', locked = is_locked(f[3], f[4]),
    failed_ms = iso_ms(f[5]), finished_ms = iso_ms(f[6]),
    repeating = repeating(f[7]) or present(f[9]), next_ms = iso_ms(f[8])}
end
