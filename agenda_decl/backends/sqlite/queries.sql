-- The SQL of the SQLite store, one named block per statement (read by ``queries.py``).
--
-- The table is modelled on Agenda v6's PostgreSQL table (same column and index names), plus
-- start_date, end_date and skip_days, which SQLite persists. Instants are INTEGER
-- milliseconds since the Unix epoch (UTC), so they sort and compare correctly in SQL.
--
-- {table} is the validated, double-quoted table name and {prefix} the bare validated name
-- used in index names; {state} is the state_case block; {where} and {order} are built from
-- the fragments of ``queries.py``. All are filled in by ``queries.render`` (so a literal
-- brace is written twice). Every value is a bound parameter.

-- create_table --
-- repeat_interval has no declared type on purpose: a column without one keeps each value
-- as given, so 5000 comes back as the integer 5000 and "5 minutes" as text.
CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    next_run_at INTEGER,
    type TEXT NOT NULL DEFAULT 'normal' CHECK (type IN ('normal', 'single')),
    locked_at INTEGER,
    last_finished_at INTEGER,
    failed_at INTEGER,
    fail_count INTEGER DEFAULT NULL,
    fail_reason TEXT,
    repeat_timezone TEXT,
    last_run_at INTEGER,
    repeat_interval CHECK (typeof(repeat_interval) IN ('null', 'integer', 'text')),
    data TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(data)),
    repeat_at TEXT,
    disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    progress REAL,
    fork INTEGER NOT NULL DEFAULT 0 CHECK (fork IN (0, 1)),
    last_modified_by TEXT,
    debounce_started_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    start_date INTEGER,
    end_date INTEGER,
    skip_days TEXT CHECK (skip_days IS NULL OR json_valid(skip_days))
)

-- create_single_job_idx --
-- Two indexes of Agenda's PostgreSQL table, by its names (its find_and_lock_idx is replaced
-- by the two claim indexes below, its next_run_at_idx by the two job-list indexes).
CREATE UNIQUE INDEX IF NOT EXISTS "{prefix}_single_job_idx" ON {table} (name)
    WHERE type = 'single'

-- create_locked_at_idx --
CREATE INDEX IF NOT EXISTS "{prefix}_locked_at_idx" ON {table} (locked_at)
    WHERE locked_at IS NOT NULL

-- create_next_run_at_desc_idx --
-- The job list's order by next run, descending (the dashboard's default): walked forward it
-- gives next_run_at DESC NULLS LAST (NULL is SQLite's smallest value) with rowid ascending
-- as the tie-break, exactly order_by's, so a page is a walk of skip + limit entries (no sort)
-- and a filter stops as soon as the page is full. Full, not partial: the order needs the
-- NULL rows too. It also serves queue_size's range (next_run_at < ?), which is why it
-- replaces the partial next_run_at_idx of older files (see drop_next_run_at_idx).
CREATE INDEX IF NOT EXISTS "{prefix}_next_run_at_desc_idx" ON {table} (next_run_at DESC)

-- create_next_run_at_asc_idx --
-- The same ascending: SQLite puts NULL first in an ascending index, so NULLS LAST is spelled
-- (next_run_at IS NULL), next_run_at by order_by, and this index has those expressions.
CREATE INDEX IF NOT EXISTS "{prefix}_next_run_at_asc_idx" ON {table}
    ((next_run_at IS NULL), next_run_at)

-- create_failed_idx --
-- The jobs whose last run may have failed (failed_at is set: the state filter "failed" adds
-- that term, see queries.STATE_IMPLIES), per name, newest end first: the overview's newest
-- failure of a name is one seek, and a list of failed jobs reads only these. Partial, so
-- only failed jobs cost a write here.
CREATE INDEX IF NOT EXISTS "{prefix}_failed_idx" ON {table} (name, last_finished_at DESC)
    WHERE failed_at IS NOT NULL

-- drop_next_run_at_idx --
-- The partial index (next_run_at) WHERE next_run_at IS NOT NULL of files made before
-- next_run_at_desc_idx: that one covers all it served, so it would only cost writes.
DROP INDEX IF EXISTS "{prefix}_next_run_at_idx"

-- drop_find_and_lock_idx --
-- The find-and-lock index (name, next_run_at, priority DESC, locked_at, disabled) of files
-- made before the claim read claim_due_idx and claim_stale_idx: no statement reads it any
-- more, and it holds every job, so each claim and each end write paid two updates of a
-- large tree for nothing.
DROP INDEX IF EXISTS "{prefix}_find_and_lock_idx"

-- create_claim_due_idx --
-- The claim's due jobs in the claim's order (rowid, the last tie-break, follows in every
-- index), holding only waiting jobs: a claim reads the rows it takes and no others, not the
-- completed jobs of its name, not another name's backlog, not a run of jobs that share one
-- next_run_at (the find-and-lock index has locked_at and disabled between priority and rowid,
-- so such a run would be sorted whole).
CREATE INDEX IF NOT EXISTS "{prefix}_claim_due_idx" ON {table} (name, next_run_at, priority DESC)
    WHERE disabled = 0 AND locked_at IS NULL AND next_run_at IS NOT NULL

-- create_claim_stale_idx --
-- The claim's expired locks of one name: only locked rows, so a name with a million
-- completed jobs costs nothing here.
CREATE INDEX IF NOT EXISTS "{prefix}_claim_stale_idx" ON {table} (name, locked_at)
    WHERE disabled = 0 AND locked_at IS NOT NULL

-- schema_objects --
-- Which of the given table and index names exist already.
SELECT name FROM sqlite_master WHERE name IN (SELECT value FROM json_each(?))

-- state_case --
-- compute_job_state in SQL, evaluated against one bound :now. An interval is truthy unless
-- it is NULL, '' or 0 (the column keeps integers and text apart, so '0' is truthy); a time of
-- day unless it is NULL or ''.
CASE
    WHEN locked_at IS NOT NULL THEN 'running'
    WHEN failed_at IS NOT NULL
        AND (last_finished_at IS NULL OR failed_at >= last_finished_at) THEN 'failed'
    WHEN (repeat_interval IS NOT NULL AND repeat_interval <> '' AND repeat_interval <> 0)
        OR COALESCE(repeat_at, '') <> ''
        THEN 'repeating'
    WHEN next_run_at > :now THEN 'scheduled'
    WHEN next_run_at IS NOT NULL THEN 'queued'
    ELSE 'completed'
END

-- select_by_id --
SELECT *, rowid AS row_order FROM {table} WHERE id = ?

-- select_by_ids --
-- The rows of the given ids (a JSON array), as insert_jobs reads its batch back.
SELECT *, rowid AS row_order FROM {table} WHERE id IN (SELECT value FROM json_each(?))

-- select_single --
SELECT *, rowid AS row_order FROM {table} WHERE name = ? AND type = 'single' LIMIT 1

-- insert --
INSERT INTO {table} (
    id, created_at, updated_at,
    name, priority, next_run_at, type, repeat_timezone, repeat_interval, data, repeat_at,
    disabled, debounce_started_at, last_modified_by, fork, start_date, end_date, skip_days
) VALUES (
    :id, :stamp, :stamp,
    :name, :priority, :next_run_at, :type, :repeat_timezone, :repeat_interval, :data, :repeat_at,
    :disabled, :debounce_started_at, :last_modified_by, :fork, :start_date, :end_date, :skip_days
)
{returning}

-- update_saved --
-- Every field save_job writes, matched on id and name (the processor fields stay as
-- stored).
UPDATE {table} SET
    updated_at = :stamp,
    name = :name, priority = :priority, next_run_at = :next_run_at, type = :type,
    repeat_timezone = :repeat_timezone, repeat_interval = :repeat_interval, data = :data,
    repeat_at = :repeat_at, disabled = :disabled, debounce_started_at = :debounce_started_at,
    last_modified_by = :last_modified_by, fork = :fork, start_date = :start_date,
    end_date = :end_date, skip_days = :skip_days
WHERE id = :id AND name = :name
RETURNING *, rowid AS row_order

-- update_state --
-- Exactly the _model.STATE_FIELDS; next_run_at only while the stored timing is the job's
-- (_model.TIMING_FIELDS, compared in the stored form: IS is equality with NULL equal to
-- NULL, and json() makes both skip_days texts compact). Fenced (:lock_token, integer ms like
-- locked_at, NULL = unfenced): applied only while the stored lock is the token.
UPDATE {table} SET
    updated_at = :stamp,
    locked_at = :locked_at,
    next_run_at = CASE
        WHEN repeat_interval IS :repeat_interval AND repeat_at IS :repeat_at
            AND repeat_timezone IS :repeat_timezone AND start_date IS :start_date
            AND end_date IS :end_date AND json(skip_days) IS json(:skip_days)
        THEN :next_run_at ELSE next_run_at END,
    last_run_at = :last_run_at,
    progress = :progress, fail_reason = :fail_reason, fail_count = :fail_count,
    failed_at = :failed_at, last_finished_at = :last_finished_at,
    last_modified_by = :last_modified_by
WHERE id = :id AND name = :name AND (:lock_token IS NULL OR locked_at = :lock_token)

-- claim_stale --
-- The claim, first step: jobs of the name whose lock went stale (a worker died or a run
-- outlived lock_lifetime), whatever their next_run_at, so crash recovery never waits behind
-- a backlog of due jobs. Few rows are locked at a time: claim_stale_idx (name, locked_at)
-- finds them (the name alone would read every completed job of the name). Run inside BEGIN IMMEDIATE with claim_due (no other connection writes in between).
-- RETURNING order is arbitrary: the caller re-sorts on (next_run_at nulls last, priority
-- desc, row_order).
-- Both claim steps pick and update their rows by rowid, which every index holds: by id,
-- each row would be found again through the id index (random UUIDs spread over an index of
-- every job), so a claim of 50 jobs cost 0.50 ms beside 10,000 jobs and 0.66 ms beside 110,000,
-- whatever their name; by rowid, 0.47 ms in both.
UPDATE {table} SET locked_at = :now, last_modified_by = :by, updated_at = :now
WHERE rowid IN (
    SELECT rowid FROM {table}
    WHERE name = :name AND disabled = 0 AND locked_at <= :lock_deadline
    ORDER BY next_run_at IS NULL, next_run_at, priority DESC, rowid
    LIMIT :limit
)
RETURNING *, rowid AS row_order

-- claim_due --
-- The claim, second step: unlocked jobs due within the scan window, for the room the stale
-- ones left (claim_due_idx gives them in order, with no sort: rowid follows its columns).
UPDATE {table} SET locked_at = :now, last_modified_by = :by, updated_at = :now
WHERE rowid IN (
    SELECT rowid FROM {table}
    WHERE name = :name AND disabled = 0 AND locked_at IS NULL AND next_run_at <= :next_scan_at
    ORDER BY next_run_at, priority DESC, rowid
    LIMIT :limit
)
RETURNING *, rowid AS row_order

-- lock --
UPDATE {table} SET locked_at = :now, last_modified_by = :by, updated_at = :now
WHERE id = :id AND name = :name AND locked_at IS NULL AND disabled = 0
  AND next_run_at IS :next_run_at
RETURNING *, rowid AS row_order

-- unlock --
UPDATE {table} SET locked_at = NULL WHERE id = ? AND next_run_at IS NOT NULL

-- unlock_many --
UPDATE {table} SET locked_at = NULL WHERE id IN (SELECT value FROM json_each(?))

-- distinct_names --
SELECT DISTINCT name FROM {table} ORDER BY name

-- queue_size --
SELECT COUNT(*) AS size FROM {table} WHERE next_run_at < ?

-- overview --
-- The jobs per name, state and pause, one count each (repository.get_jobs_overview adds
-- them up per name): a third cheaper than eight sums per row over the same scan.
SELECT name, {state} AS state, disabled, COUNT(*) AS jobs FROM {table}
GROUP BY name, state, disabled ORDER BY name

-- data_element --
-- One element of the array at {path} of the JSON text {doc} satisfies {clause} (a fragment
-- built by queries.data_sql about the json_each row {each}; values are parameters).
EXISTS (SELECT 1 FROM json_each({doc}, {path}) AS {each} WHERE {clause})

-- select_page --
SELECT *, rowid AS row_order, {state} AS state FROM {table} WHERE {where}
ORDER BY {order} LIMIT :limit OFFSET :skip

-- count --
SELECT COUNT(*) AS total FROM {table} WHERE {where}

-- delete --
DELETE FROM {table} WHERE {where}

-- set_disabled --
UPDATE {table} SET disabled = :disabled, updated_at = :stamp WHERE {where}

-- select_unique --
SELECT *, rowid AS row_order FROM {table} WHERE {where} ORDER BY rowid

-- next_name --
-- The change watcher's walk over the names of waiting jobs, one index seek per name (a skip
-- scan of claim_due_idx, whose predicate it repeats): no read of the rows of any one name.
SELECT min(name) AS name FROM {table}
WHERE disabled = 0 AND locked_at IS NULL AND next_run_at IS NOT NULL AND name > ?

-- first_waiting --
-- The unlocked job of one name that is due first (an index seek): what the change watcher
-- announces for that name.
SELECT id, name, next_run_at, priority FROM {table}
WHERE name = :name AND disabled = 0 AND next_run_at IS NOT NULL AND locked_at IS NULL
ORDER BY next_run_at LIMIT 1
