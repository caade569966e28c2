-- The Redis scripts that read or change many jobs at once (read by ``scripts.py``; each
-- runs after the prelude block of prelude.lua, and modify and query after the candidates
-- block of this file too).

-- candidates --
-- Candidate ids for remove/disable/enable/query: id, else ids, else the name sets, else all.
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
-- countOnly}, then the ids of one slice (``listing.py`` sends at most ROWS_SLICE). Filters
-- them and returns what the client sorts by, per match: {id, state, nextRunAt ms, lastRunAt
-- ms, lastFinishedAt ms, priority (text), name, createdAt, insertOrder, data text}, false for
-- an absent value; with countOnly, the number of matches. Bounded work: one slice per call.
local spec = cjson.decode(ARGV[2])
local now = spec.now
local names = name_set(spec.names)
local need_data = spec.needData or spec.data ~= nil
local out, count = {}, 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = job_key(id)
  local f = redis.call('HMGET', key, 'name', 'disabled', 'lockedAt', 'lockedAtMs', 'failedAt',
    'lastFinishedAt', 'repeatInterval', 'nextRunAt', 'repeatAt', 'lastRunAt', 'priority',
    'createdAt', 'insertOrder')  -- STATE_FIELDS first, in their order (state_row)
  local j = f[1] and (not names or names[f[1]]) and state_row(id, f)
  if j and (spec.includeDisabled or not j.disabled) then
    j.state = state_of(j, now)
    local wanted = spec.state == nil or (spec.state == 'paused' and j.disabled)
      or j.state == spec.state
    local data = false
    if wanted and need_data then
      local g = redis.call('HMGET', key, 'data', 'noData')
      -- a job without data sorts with the missing values (last), as in the SQL stores
      if not is_no_data(g[1], g[2]) then data = g[1] or '{}' end
      if spec.data then
        local decoded = decode_data(g[1], g[2])
        wanted = decoded ~= nil and contains(decoded, spec.data)
      end
    end
    if wanted then
      count = count + 1
      if not spec.countOnly then
        for _, v in ipairs({id, j.state, j.next_ms or false, iso_ms(f[10]) or false,
            j.finished_ms or false, tostring(tonumber(f[11]) or 0), f[1], f[12] or '',
            tostring(tonumber(f[13]) or 0), data}) do
          table.insert(out, v)
        end
      end
    end
  end
end
if spec.countOnly then return count end
return out

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
