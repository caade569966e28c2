-- The Redis scripts that read or change many jobs at once (read by ``scripts.py``; each
-- runs after the prelude block of prelude.lua, and modify and rows after the candidates
-- block of this file too).

-- candidates --
-- Candidate ids for remove/disable/enable: id, else ids, else the name sets, else all.
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

-- modify --
-- ARGV: prefix, action ('remove' | 'disable' | 'enable'), spec JSON {id, ids, names,
-- notNames, data (tagged)}; every given criterion applies. Returns the number matched.
local action, spec = ARGV[2], cjson.decode(ARGV[3])
local names, not_names = name_set(spec.names), name_set(spec.notNames)
local now_iso = ms_iso(server_ms())
local count = 0
for _, id in ipairs(candidate_ids(spec)) do
  local key = job_key(id)
  local name = redis.call('HGET', key, 'name')
  local ok = name and (not names or names[name]) and not (not_names and not_names[name])
  if ok and spec.data then
    local g = redis.call('HMGET', key, 'data', 'noData')
    local data = decode_data(g[1], g[2])
    ok = data ~= nil and contains(data, spec.data)
  end
  if ok then
    count = count + 1
    if action == 'remove' then
      unindex(id, name)
      redis.call('DEL', key)
      redis.call('SREM', P .. 'jobs:all', id)
      if redis.call('SREM', P .. 'jobs:by_name:' .. name, id) == 1 then
        redis.call('DECR', known_key(name))
      end
      redis.call('ZREM', P .. 'jobs:by_next_run_at', id)
      redis.call('ZREM', locked_key(name), id)
      local pointer_key = P .. 'jobs:single:' .. name
      if redis.call('GET', pointer_key) == id then redis.call('DEL', pointer_key) end
    else
      redis.call('HSET', key, 'disabled', action == 'disable' and 'true' or 'false',
        'updatedAt', now_iso)
      reindex(id, name)
    end
  end
end
return count

-- rows --
-- ARGV: prefix, spec JSON {names, includeDisabled, state, data (tagged), needData, now,
-- countOnly}, then either 'ids' and the ids of one slice, or 'scan', a set's key (after the
-- prefix), an SSCAN cursor and a count: one slice of that set. Filters them and returns what
-- the client sorts by as one JSON array (decoded in C by the client, much faster than a
-- reply of many values), per match: [id, state, nextRunAt ms, lastRunAt ms, lastFinishedAt
-- ms, priority, name, createdAt, insertOrder, data text], null for an absent value; with
-- countOnly, the number of matches instead; a scan puts the next cursor first. Bounded work:
-- one slice per call (``listing.py`` asks for at most ROWS_SLICE).
local spec = cjson.decode(ARGV[2])
local now = spec.now
local names = name_set(spec.names)
local need_data = spec.needData or spec.data ~= nil
-- with a filter on data, or on name over ids of any name (the walk of the next-run index),
-- those are read first and the rest only for a match
local prefilter = spec.data ~= nil or (names ~= nil and ARGV[3] == 'ids')
local FIELDS = {'name', 'disabled', 'lockedAt', 'lockedAtMs', 'failedAt', 'lastFinishedAt',
  'repeatInterval', 'nextRunAt', 'repeatAt', 'lastRunAt', 'priority', 'createdAt',
  'insertOrder', 'data', 'noData'}  -- STATE_FIELDS first, in their order (state_row)
if not need_data then FIELDS[14], FIELDS[15] = nil, nil end

local ids, cursor = {}, nil
if ARGV[3] == 'scan' then
  local page = redis.call('SSCAN', P .. ARGV[4], ARGV[5], 'COUNT', tonumber(ARGV[6]))
  cursor, ids = page[1], page[2]
else
  for i = 4, #ARGV do table.insert(ids, ARGV[i]) end
end

local function matches_data(text, no_data)
  if not spec.data then return true end
  local decoded = decode_data(text, no_data)
  return decoded ~= nil and contains(decoded, spec.data)
end

local rows, count = {}, 0
for _, id in ipairs(ids) do
  local key = job_key(id)
  local f = nil
  if prefilter then
    local g = redis.call('HMGET', key, 'name', 'data', 'noData')
    if g[1] and (not names or names[g[1]]) and matches_data(g[2], g[3]) then
      f = redis.call('HMGET', key, unpack(FIELDS))
    end
  else
    f = redis.call('HMGET', key, unpack(FIELDS))
  end
  local j = f and f[1] and state_row(id, f)
  if j and (spec.includeDisabled or not j.disabled) then
    j.state = state_of(j, now)
    local wanted = spec.state == nil or (spec.state == 'paused' and j.disabled)
      or j.state == spec.state
    if wanted and not prefilter then wanted = matches_data(f[14], f[15]) end
    if wanted then
      count = count + 1
      if not spec.countOnly then
        -- a job without data sorts with the missing values (last), as in the SQL stores
        local data = cjson.null
        if need_data and not is_no_data(f[14], f[15]) then data = f[14] or '{}' end
        table.insert(rows, {id, j.state, j.next_ms or cjson.null, iso_ms(f[10]) or cjson.null,
          j.finished_ms or cjson.null, tonumber(f[11]) or 0, f[1], f[12] or '',
          tonumber(f[13]) or 0, data})
      end
    end
  end
end
local answer = count
-- an empty Lua table encodes as {}, which the client reads as no rows as well
if not spec.countOnly then answer = cjson.encode(rows) end
if cursor then return {cursor, answer} end
return answer

-- read --
-- ARGV: prefix, then ids. The hashes of those jobs (JOB_FIELDS), in order; a job gone since
-- the client chose it has false for its name.
local out = {}
for i = 2, #ARGV do table.insert(out, hash_of(ARGV[i])) end
return out

-- overview --
-- ARGV: prefix, now (ms), then the ids of one slice of jobs:all. Counts by name and state:
-- {name, total, running, scheduled, queued, completed, failed, repeating, paused, name, ...};
-- the client adds the slices up.
local now = tonumber(ARGV[2])
local by_name, order = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
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

-- queue_size --
-- ARGV: prefix. Jobs whose nextRunAt is strictly before the Redis clock (ZCOUNT).
return redis.call('ZCOUNT', P .. 'jobs:by_next_run_at', '-inf', '(' .. fmt_int(server_ms()))
