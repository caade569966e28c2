"""The Lua scripts of the Redis backend, in one place.

Every write and every multi-key read runs as one script, so it is atomic (Redis runs one
script at a time) and costs one round trip. Each script is ``PRELUDE`` (shared helpers) plus
its body; ``ARGV[1]`` is always the key prefix. Job hashes are addressed by id inside the
scripts, so the keys are not all declared in ``KEYS``: Redis Cluster is not supported.

The layout is Agenda v6's (``job:{id}`` hashes whose values are all strings, ``'null'`` for
absent; ``jobs:all``; ``jobs:by_name:{name}``; the global ``jobs:by_next_run_at`` sorted set;
``jobs:single:{name}``). A Node Agenda v6 process keeps maintaining exactly those, so they
remain the source of truth. Our own additions are hints that Agenda-written jobs can do
without:

* ``decl:locked:{name}`` (sorted set, score = lock time in ms): the jobs of a name locked by
  us, so stale locks are found in O(log N + stale) instead of scanning the name. Entries are
  checked against the hash before use (Node may have unlocked or touched the job since).
* ``decl:sweep:{name}`` and ``decl:sweep_gate:{name}`` (expires after 1 s): the cursor of an
  incremental SSCAN of ``jobs:by_name:{name}``, at most one slice a second per name, that adds
  locks written by Node Agenda to ``decl:locked:{name}``. A Node lock on a due job is judged in
  the due scan directly; the sweep is what finds a crashed Node worker's lock on a job that is
  not due (a one-off whose nextRunAt was cleared when its run started).
* ``decl:insert_order`` (counter) and the hash field ``insertOrder``: insertion order as the
  final tie-break (Agenda-written jobs fall back to ``createdAt``, then the id).
* hash fields ``startDate``, ``endDate``, ``skipDays`` (JSON): stored and read back.

Lock fields: Agenda v6 marks a lock with ``lockedAt`` (ISO) and its claim script adds
``lockedAtMs``; we always write both, and judge staleness on the later of the two, so a
``touch()`` from either side (which rewrites ``lockedAt``, and in our case ``lockedAtMs`` too)
keeps a job from being taken over. A hash without a ``lockedAt`` field at all (written by a
later Agenda release that keeps only ``lockedAtMs``) is read and written in that form.
"""

from __future__ import annotations

#: The hash fields a job is read from, in the order the scripts return them (HMGET).
JOB_FIELDS: tuple[str, ...] = (
    "id", "name", "priority", "nextRunAt", "type", "lockedAt", "lockedAtMs", "lastFinishedAt",
    "failedAt", "failCount", "failReason", "repeatTimezone", "lastRunAt", "repeatInterval",
    "data", "repeatAt", "disabled", "progress", "fork", "lastModifiedBy", "debounceStartedAt",
    "startDate", "endDate", "skipDays",
)

PRELUDE = r"""
local P = ARGV[1]
local MAX_SAFE = '9007199254740991'

-- HMGET gives false for a missing field; Agenda writes 'null' for an absent value
local function present(v) return v and v ~= 'null' and v ~= '' end

-- normal forms of stored timing values (W-7): absent = 'null', an interval of digits without
-- leading zeros, JSON re-encoded
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

-- Agenda v6 marks a lock with lockedAt; a hash without that field (written by a later
-- Agenda release) with lockedAtMs
local function is_locked(locked_at, locked_at_ms)
  if locked_at == false then return present(locked_at_ms) end
  return present(locked_at) and true or false
end

-- the lock time: the later of lockedAt (which every touch rewrites) and lockedAtMs
local function lock_time(locked_at, locked_at_ms)
  return math.max(iso_ms(locked_at) or 0, tonumber(locked_at_ms) or 0)
end

-- lock_time(...) <= deadline, parsing lockedAt only when lockedAtMs does not settle it
local function stale(locked_at, locked_at_ms, deadline)
  if (tonumber(locked_at_ms) or 0) > deadline then return false end
  return (iso_ms(locked_at) or 0) <= deadline
end

local function write_lock(key, has_locked_at, ms)
  local iso, text = 'null', 'null'
  if ms then iso, text = ms_iso(ms), fmt_int(ms) end
  if has_locked_at then redis.call('HSET', key, 'lockedAt', iso) end
  redis.call('HSET', key, 'lockedAtMs', text)
end

local function job_key(id) return P .. 'job:' .. id end
local function locked_key(name) return P .. 'decl:locked:' .. name end

-- insertion order: our counter, else Agenda's createdAt, then the id
local function before(a, b)
  if a.created ~= b.created then return a.created < b.created end
  if a.seq ~= b.seq then return a.seq < b.seq end
  return a.id < b.id
end

local JOB_FIELDS = {""" + ", ".join(f"'{name}'" for name in JOB_FIELDS) + r"""}
local function hash_of(id) return redis.call('HMGET', job_key(id), unpack(JOB_FIELDS)) end

-- JSON values from Python are tagged: {o = object}, {a = array} or {s = scalar}, so that an
-- empty object, an empty array and null stay apart (cjson decodes {} and [] alike).
local function is_array(t) return next(t) == nil or t[1] ~= nil end
local function is_object(t) return next(t) == nil or t[1] == nil end

local function same_scalar(h, v)
  if v == cjson.null then return h == cjson.null end
  return type(h) == type(v) and h == v
end

-- PostgreSQL's @> (base.data_contains): objects by subset of keys, arrays by elements
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

local function decode_data(text)
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
"""

# -- claiming ---------------------------------------------------------------------------------

#: ARGV: prefix, name, next_scan_at ms, lock_deadline ms, now ms ('' = Redis TIME),
#: last_modified_by, limit, sweep count. Returns each claimed job (JOB_FIELDS), in order.
#:
#: Cost: O(log N + D + S), N = all jobs, D = entries of the global sorted set that come due
#: before next_scan_at and precede the claimed ones (due jobs of every name, including the
#: claimed-but-not-started and disabled ones), S = stale locks of this name; plus, at most
#: once a second per name, a sweep of `sweep count` members of the name. Jobs that are not
#: due are never read (Agenda v6's script read every job of the name on every call).
CLAIM = r"""
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
local function details(id, f)
  local g = redis.call('HMGET', job_key(id), 'nextRunAt', 'priority', 'createdAt', 'insertOrder')
  return {id = id, next_ms = iso_ms(g[1]), priority = tonumber(g[2]) or 0,
    created = g[3] or '', seq = tonumber(g[4]) or 0, has_locked_at = f[3] ~= false}
end
local function choose(job)
  if seen[job.id] then return false end
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
    choose(details(id, f))
  end
end

-- 3. due jobs, earliest first, until `limit` are found and their millisecond is complete
--    (within one millisecond the true priority and insertion order decide, not the score)
local upper = '(' .. fmt_int(scan_ms + 1)
local total = redis.call('ZCOUNT', zset, '-inf', upper)
local found, last_ms, rank = 0, nil, 0
while rank < total do
  local page = redis.call('ZRANGE', zset, rank, math.min(rank + 99, total - 1), 'WITHSCORES')
  for i = 1, #page, 2 do
    local id, ms = page[i], math.floor(tonumber(page[i + 1]))
    if found >= limit and ms > last_ms then rank = total; break end
    local f = peek(id)
    if f[1] == name and f[2] ~= 'true' then
      local job = nil
      if not is_locked(f[3], f[4]) then
        job = details(id, f)
        if not (job.next_ms and job.next_ms <= scan_ms) then job = nil end
      elseif stale(f[3], f[4], deadline) then
        job = details(id, f)
      end
      if job and choose(job) then found, last_ms = found + 1, ms end
    end
  end
  rank = rank + 100
end

-- 4. claim order: nextRunAt (nulls last), priority desc, insertion order
table.sort(chosen, function(a, b)
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
  write_lock(key, job.has_locked_at, now)
  redis.call('HSET', key, 'lastModifiedBy', by, 'updatedAt', now_iso)
  redis.call('ZADD', locked_set, now, job.id)
  table.insert(claimed, hash_of(job.id))
end
return claimed
"""

#: ARGV: prefix, id, name, expected nextRunAt ms ('' = null), now ms ('' = TIME), by.
LOCK_JOB = r"""
local id, name, expected = ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = tonumber(ARGV[5]) or server_ms()
local key = job_key(id)
local f = redis.call('HMGET', key, 'name', 'disabled', 'lockedAt', 'lockedAtMs', 'nextRunAt')
if f[1] ~= name or f[2] == 'true' or is_locked(f[3], f[4]) then return nil end
if iso_ms(f[5]) ~= expected then return nil end
write_lock(key, f[3] ~= false, now)
redis.call('HSET', key, 'lastModifiedBy', ARGV[6], 'updatedAt', ms_iso(now))
redis.call('ZADD', locked_key(name), now, id)
return hash_of(id)
"""

#: ARGV: prefix, '1' to keep the lock of a job without nextRunAt ('0' = always), ids...
UNLOCK = r"""
for i = 3, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', job_key(id), 'name', 'lockedAt', 'nextRunAt')
  if f[1] and (ARGV[2] == '0' or present(f[3])) then
    write_lock(job_key(id), f[2] ~= false, nil)
    redis.call('ZREM', locked_key(f[1]), id)
  end
end
return 0
"""

# -- writing ----------------------------------------------------------------------------------

#: ARGV: prefix, then one JSON array with an array per job: id, name, lock ms ('' =
#: unlocked), nextRunAt ms ('' = null), lock token ms ('' = unfenced), the job's timing
#: (TIMING_ARGS: repeatInterval, repeatAt, repeatTimezone, startDate ms, endDate ms, skipDays
#: JSON) and STATE_PAIRS
#: field/value pairs, nextRunAt first, all strings (one argument: packing thousands of them
#: costs the client more than the script does). nextRunAt is written only while the stored
#: timing equals the job's, each compared in a normal form (absent = 'null', an interval of
#: digits without leading zeros, dates as ms, skipDays re-encoded); otherwise the schedule was
#: changed during the run and keeps its own nextRunAt (W-7). Fencing: a job with a lock token
#: is written only while its stored lock time (lock_time of lockedAt and lockedAtMs) is the
#: token; otherwise nothing of it is written. Returns the ids not written: no job has them
#: (with this name), or they were fenced out.
TIMING_ARGS = 6
STATE_PAIRS = 8
SAVE_STATES = r"""
local now_iso = ms_iso(server_ms())
local first_pair = 6 + """ + str(TIMING_ARGS) + r"""
local width = first_pair - 1 + 2 * """ + str(STATE_PAIRS) + r"""
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
    'repeatAt', 'repeatTimezone', 'startDate', 'endDate', 'skipDays', 'lockedAtMs')
  if f[1] ~= name or (token and lock_time(f[2], f[10]) ~= token) then
    table.insert(missing, id)
  else
    local same = same_timing(job, f)
    redis.call('HSET', key, unpack(job, same and first_pair or first_pair + 2, width))
    redis.call('HSET', key, 'updatedAt', now_iso)
    write_lock(key, f[2] ~= false, lock_ms)
    if lock_ms then
      redis.call('ZADD', locked_key(name), lock_ms, id)
    else
      redis.call('ZREM', locked_key(name), id)
    end
    if same then
      redis.call('ZADD', P .. 'jobs:by_next_run_at', score(next_ms, tonumber(f[3]) or 0), id)
    end
  end
end
return missing
"""

#: The shared body of the save scripts. ARGV: prefix, name, id (existing, or a fresh uuid
#: for an insert), nextRunAt ms ('' = null), priority, now ms ('' = TIME), options JSON, then
#: the field pairs of every non-processor field (nextRunAt and debounceStartedAt may be
#: overridden below).
_SAVE = r"""
local name, id, priority = ARGV[2], ARGV[3], tonumber(ARGV[5])
local next_ms = tonumber(ARGV[4])
local now = tonumber(ARGV[6]) or server_ms()
local opts = cjson.decode(ARGV[7])
local now_iso = ms_iso(now)

local function set_fields(key, next_text, debounce_text)
  redis.call('HSET', key, unpack(ARGV, 8))
  redis.call('HSET', key, 'updatedAt', now_iso)
  if next_text then redis.call('HSET', key, 'nextRunAt', next_text) end
  if debounce_text then redis.call('HSET', key, 'debounceStartedAt', debounce_text) end
end

local function iso_or_null(ms) if ms then return ms_iso(ms) end return 'null' end

local function insert(single, next_text, debounce_text)
  local key = job_key(id)
  redis.call('HSET', key, 'id', id, 'lockedAt', 'null', 'lockedAtMs', 'null',
    'lastFinishedAt', 'null', 'failedAt', 'null', 'failCount', 'null', 'failReason', 'null',
    'lastRunAt', 'null', 'progress', 'null', 'createdAt', now_iso,
    'insertOrder', redis.call('INCR', P .. 'decl:insert_order'))
  set_fields(key, next_text, debounce_text)
  redis.call('SADD', P .. 'jobs:all', id)
  redis.call('SADD', P .. 'jobs:by_name:' .. name, id)
  redis.call('ZADD', P .. 'jobs:by_next_run_at', score(next_ms, priority), id)
  if single then redis.call('SET', P .. 'jobs:single:' .. name, id) end
  return hash_of(id)
end

local function update(existing, next_text, debounce_text)
  set_fields(job_key(existing), next_text, debounce_text)
  redis.call('ZADD', P .. 'jobs:by_next_run_at', score(next_ms, priority), existing)
  return hash_of(existing)
end
"""

#: Insert a new job (no id, not single, no unique key).
INSERT = _SAVE + r"""
insert(false)
return 1  -- the job is exactly what the caller sent: nothing to read back
"""

#: Update by id; nil when no job has this id and name. Keeps ``jobs:single:{name}`` pointing
#: at the job when its type becomes 'single' (and away from it when it stops being single).
SAVE_BY_ID = _SAVE + r"""
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
"""

#: Upsert of a 'single' job by name; a due incoming nextRunAt keeps a stored one, unless the
#: timing (repeatInterval, repeatAt, repeatTimezone, startDate, endDate, skipDays, in their
#: normal forms) differs from the stored one: then the job follows its new schedule.
SAVE_SINGLE = _SAVE + r"""
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
"""

#: Upsert on a unique key. opts: {keys = [{path = [...], value = tagged} | {field, text}],
#: never = bool, insertOnly = bool, debounce = {delay, maxWait, strategy} | absent}.
#: Scans the jobs of the name (as Agenda v6 does): O(jobs of the name).
SAVE_UNIQUE = _SAVE + r"""
local function matches(id)
  local f = redis.call('HMGET', job_key(id), 'name', 'data')
  if f[1] ~= name then return false end
  local data = nil
  for _, key in ipairs(opts.keys) do
    if key.path then
      if data == nil then data = decode_data(f[2]) end
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

-- debounce: base.debounce_outcome, in Lua so that read and write are one atomic step
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
"""

# -- matching many jobs -----------------------------------------------------------------------

#: Candidate ids for remove/disable/enable/query: id, else ids, else the name sets, else all.
_CANDIDATES = r"""
local function candidate_ids(spec)
  if spec.id then return {spec.id} end
  local ids, seen = {}, {}
  local function add(list)
    for _, id in ipairs(list) do
      if not seen[id] then seen[id] = true; table.insert(ids, id) end
    end
  end
  if spec.ids then
    add(spec.ids)
  elseif spec.names then
    for _, n in ipairs(spec.names) do add(redis.call('SMEMBERS', P .. 'jobs:by_name:' .. n)) end
  else
    return redis.call('SMEMBERS', P .. 'jobs:all')
  end
  return ids
end

local function name_set(list)
  if not list then return nil end
  local set = {}
  for _, n in ipairs(list) do set[n] = true end
  return set
end
"""

#: ARGV: prefix, action ('remove' | 'disable' | 'enable'), spec JSON {id, ids, names,
#: notNames, data (tagged)}; every given criterion applies. Returns the number matched.
MODIFY = PRELUDE + _CANDIDATES + r"""
local action, spec = ARGV[2], cjson.decode(ARGV[3])
local names, not_names = name_set(spec.names), name_set(spec.notNames)
local now_iso = ms_iso(server_ms())
local count = 0
for _, id in ipairs(candidate_ids(spec)) do
  local key = job_key(id)
  local name = redis.call('HGET', key, 'name')
  local ok = name and (not names or names[name]) and not (not_names and not_names[name])
  if ok and spec.data then
    local data = decode_data(redis.call('HGET', key, 'data'))
    ok = data ~= nil and contains(data, spec.data)
  end
  if ok then
    count = count + 1
    if action == 'remove' then
      redis.call('DEL', key)
      redis.call('SREM', P .. 'jobs:all', id)
      redis.call('SREM', P .. 'jobs:by_name:' .. name, id)
      redis.call('ZREM', P .. 'jobs:by_next_run_at', id)
      redis.call('ZREM', locked_key(name), id)
      local pointer_key = P .. 'jobs:single:' .. name
      if redis.call('GET', pointer_key) == id then redis.call('DEL', pointer_key) end
    else
      redis.call('HSET', key, 'disabled', action == 'disable' and 'true' or 'false',
        'updatedAt', now_iso)
    end
  end
end
return count
"""

#: ARGV: prefix, spec JSON {id, ids, names, includeDisabled, state, data (tagged),
#: sort = [[key, dir], ...], skip, limit}. Filters, computes states, sorts and pages in one
#: pass over the candidates (O(candidates), blocking Redis meanwhile, like any script).
#: Returns {total, state, hash, state, hash, ...} for the page.
QUERY = PRELUDE + _CANDIDATES + r"""
local spec = cjson.decode(ARGV[2])
local now = server_ms()
local names = name_set(spec.names)
local need_data = spec.data ~= nil
for _, s in ipairs(spec.sort) do if s[1] == 'data' then need_data = true end end

local rows = {}
for _, id in ipairs(candidate_ids(spec)) do
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'name', 'disabled', 'lockedAt', 'lockedAtMs', 'failedAt',
    'lastFinishedAt', 'repeatInterval', 'nextRunAt', 'repeatAt', 'lastRunAt', 'priority',
    'createdAt', 'insertOrder')  -- STATE_FIELDS first, in their order (state_row)
  local j = f[1] and (not names or names[f[1]]) and state_row(id, f)
  if j and (spec.includeDisabled or not j.disabled) then
    j.state = state_of(j, now)
    local wanted = spec.state == nil or (spec.state == 'paused' and j.disabled)
      or j.state == spec.state
    if wanted and need_data then
      j.data = redis.call('HGET', key, 'data') or '{}'
      if spec.data then
        local data = decode_data(j.data)
        wanted = data ~= nil and contains(data, spec.data)
      end
    end
    if wanted then
      j.next_run_at, j.last_finished_at = j.next_ms, j.finished_ms
      j.last_run_at, j.priority = iso_ms(f[10]), tonumber(f[11]) or 0
      j.created, j.seq = f[12] or '', tonumber(f[13]) or 0
      table.insert(rows, j)
    end
  end
end

-- explicit keys in order, nulls last either way, then insertion order
table.sort(rows, function(a, b)
  for _, s in ipairs(spec.sort) do
    local x, y = a[s[1]], b[s[1]]
    if x ~= y then
      if x == nil then return false end
      if y == nil then return true end
      if s[2] == 'desc' then return x > y end
      return x < y
    end
  end
  return before(a, b)
end)

local out = {#rows}
local last = #rows
if spec.limit > 0 then last = math.min(last, spec.skip + spec.limit) end
for i = spec.skip + 1, last do
  table.insert(out, rows[i].state)
  table.insert(out, hash_of(rows[i].id))
end
return out
"""

#: ARGV: prefix. One pass over all jobs: {name, total, running, scheduled, queued, completed,
#: failed, repeating, paused, name, ...}.
OVERVIEW = PRELUDE + r"""
local now = server_ms()
local by_name, order = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'jobs:all')) do
  local f = redis.call('HMGET', job_key(id), unpack(STATE_FIELDS))
  if f[1] then
    local j = state_row(id, f)
    local entry = by_name[j.name]
    if not entry then
      entry = {total = 0, running = 0, scheduled = 0, queued = 0, completed = 0, failed = 0,
        repeating = 0, paused = 0}
      by_name[j.name] = entry
      table.insert(order, j.name)
    end
    local state = state_of(j, now)
    entry.total = entry.total + 1
    entry[state] = entry[state] + 1
    if j.disabled then entry.paused = entry.paused + 1 end
  end
end
local out = {}
for _, n in ipairs(order) do
  local e = by_name[n]
  for _, v in ipairs({n, e.total, e.running, e.scheduled, e.queued, e.completed, e.failed,
      e.repeating, e.paused}) do
    table.insert(out, v)
  end
end
return out
"""

#: ARGV: prefix. Jobs whose nextRunAt is strictly before the Redis clock (ZCOUNT).
QUEUE_SIZE = PRELUDE + r"""
return redis.call('ZCOUNT', P .. 'jobs:by_next_run_at', '-inf', '(' .. fmt_int(server_ms()))
"""

#: ARGV: channel, payload, channel, payload, ... (no prefix: this one runs on the channel's
#: client). Publishes them in order with one command.
PUBLISH_MANY = r"""
for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end
return 0
"""

CLAIM = PRELUDE + CLAIM
LOCK_JOB = PRELUDE + LOCK_JOB
UNLOCK = PRELUDE + UNLOCK
SAVE_STATES = PRELUDE + SAVE_STATES
INSERT = PRELUDE + INSERT
SAVE_BY_ID = PRELUDE + SAVE_BY_ID
SAVE_SINGLE = PRELUDE + SAVE_SINGLE
SAVE_UNIQUE = PRELUDE + SAVE_UNIQUE
