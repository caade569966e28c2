-- The SQL of the PostgreSQL store, one named block per statement (read by ``queries.py``).
--
-- The table, its columns and types, its four indexes and its updated_at trigger are exactly
-- those @agendajs/postgres-backend 3.0.6 creates (its schema.js), so a Node Agenda 6.2.6
-- process can share the table whichever side creates it; indexes of our own keep claims
-- (claim_due_idx) and the job list (next_run_desc_idx, next_run_asc_idx, failed_idx,
-- name_idx) flat, and Node ignores them. skip_days is JSONB (a JSON array of weekday
-- numbers), as Node writes it.
--
-- {table} (and, in the schema, {index}, {trigger}, {function}) are psycopg.sql.Identifier
-- placeholders; {state} is the state_case block; {where}, {state_filter}, {order} and
-- {conditions} are composed by the repository from fixed fragments. All are filled in by
-- ``queries.render`` (so a literal brace is written twice). Every value is a bound parameter
-- (%(name)s or %s).

-- create_table --
CREATE TABLE IF NOT EXISTS {table} (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    next_run_at TIMESTAMPTZ,
    type VARCHAR(10) NOT NULL DEFAULT 'normal' CHECK (type IN ('normal', 'single')),
    locked_at TIMESTAMPTZ,
    last_finished_at TIMESTAMPTZ,
    failed_at TIMESTAMPTZ,
    fail_count INTEGER DEFAULT NULL,
    fail_reason TEXT,
    repeat_timezone VARCHAR(100),
    last_run_at TIMESTAMPTZ,
    repeat_interval VARCHAR(255),
    data JSONB DEFAULT '{{}}'::jsonb,
    repeat_at VARCHAR(255),
    disabled BOOLEAN DEFAULT FALSE,
    progress REAL,
    fork BOOLEAN DEFAULT FALSE,
    last_modified_by VARCHAR(255),
    debounce_started_at TIMESTAMPTZ,
    start_date TIMESTAMPTZ,
    end_date TIMESTAMPTZ,
    skip_days JSONB,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
)

-- add_columns --
-- The columns tables of earlier Agenda releases lack: Node's own migrations (start_date,
-- end_date, skip_days), plus debounce_started_at. Nullable and without defaults, so adding
-- them to a large table is instant.
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS debounce_started_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS start_date TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS end_date TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS skip_days JSONB

-- migrate_skip_days --
-- agenda-decl 0.1 made skip_days INTEGER[]; Node writes and reads JSONB. The conversion
-- keeps every value (an array becomes the same JSON array, NULL stays NULL) but rewrites the
-- table under an ACCESS EXCLUSIVE lock: nothing reads or writes it meanwhile.
ALTER TABLE {table} ALTER COLUMN skip_days TYPE jsonb USING to_jsonb(skip_days)

-- create_find_and_lock_idx --
-- The indexes are spelled as Agenda writes them; the claim repeats the disabled = FALSE
-- predicate so the planner can use the partial index.
CREATE INDEX IF NOT EXISTS {index} ON {table}
    (name, next_run_at, priority DESC, locked_at, disabled) WHERE disabled = FALSE

-- create_single_job_idx --
CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} (name) WHERE type = 'single'

-- create_locked_at_idx --
CREATE INDEX IF NOT EXISTS {index} ON {table} (locked_at) WHERE locked_at IS NOT NULL

-- create_next_run_at_idx --
CREATE INDEX IF NOT EXISTS {index} ON {table} (next_run_at)
    WHERE next_run_at IS NOT NULL

-- create_claim_due_idx --
-- Not Node's: the claim's due jobs in the claim's full order, holding only waiting jobs
-- (unlocked, with a next run), so a claim reads the rows it takes and no others: not the
-- completed jobs of its name, not another name's backlog, not a run of jobs that share one
-- next_run_at (the find-and-lock index leaves created_at, id to a sort of the whole run).
-- Node ignores it; its own four indexes are unchanged.
CREATE INDEX IF NOT EXISTS {index} ON {table}
    (name, next_run_at, priority DESC, created_at, id)
    WHERE disabled = FALSE AND locked_at IS NULL AND next_run_at IS NOT NULL

-- create_next_run_desc_idx --
-- Not Node's, like the two below: the job list's order by next run, descending, exactly as
-- query_jobs spells it (next_run_at DESC NULLS LAST, then insertion order: created_at, id),
-- so a page is a walk of the index to its limit instead of a sort of every match, and a
-- state filter seeks the range of next_run_at its state implies (queries.STATE_IMPLIES).
-- The walk that picks a page's ids reads no row (id is in the index).
CREATE INDEX IF NOT EXISTS {index} ON {table} (next_run_at DESC NULLS LAST, created_at, id)

-- create_next_run_asc_idx --
-- The same, ascending (ASC is NULLS LAST already): a backward walk of the other index would
-- give the nulls first and insertion order reversed.
CREATE INDEX IF NOT EXISTS {index} ON {table} (next_run_at, created_at, id)

-- create_failed_idx --
-- Only the jobs that ever failed, per name, newest end first: the overview's newest failure
-- of a name is one seek, and a list of failed jobs reads only them.
CREATE INDEX IF NOT EXISTS {index} ON {table}
    (name, last_finished_at DESC NULLS LAST, created_at, id) WHERE failed_at IS NOT NULL

-- create_name_idx --
-- The jobs of one name in next-run order (disabled included, so the enabled ones are counted
-- without reading a row): the overview's next run of a name is one seek, and a count of a
-- name's jobs (a full page's total) reads only this index, where the table has no other
-- index on the name that holds every job (find_and_lock_idx holds the enabled ones only,
-- as disabled = FALSE, which "disabled IS NOT TRUE" does not imply).
CREATE INDEX IF NOT EXISTS {index} ON {table} (name, next_run_at, created_at, id)
    INCLUDE (disabled)

-- trigger_function --
CREATE OR REPLACE FUNCTION {function}() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql

-- existing_schema --
-- What of the schema exists already, each column with its type (pg_type.typname, what
-- information_schema calls udt_name: 'jsonb', '_int4' for integer[]). Agenda re-runs every
-- DDL statement (and drops and re-creates the trigger) on each connect, which takes table
-- locks and races between processes starting together; we create only what is missing.
SELECT to_regclass(%(table)s) IS NOT NULL AS has_table,
    COALESCE((SELECT jsonb_object_agg(a.attname, t.typname)
              FROM pg_attribute AS a JOIN pg_type AS t ON t.oid = a.atttypid
              WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0
                AND NOT a.attisdropped), '{}'::jsonb) AS columns,
    ARRAY(SELECT c.relname::text FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
          WHERE i.indrelid = to_regclass(%(table)s)) AS indexes,
    EXISTS(SELECT 1 FROM pg_trigger
           WHERE tgrelid = to_regclass(%(table)s) AND tgname = %(trigger)s) AS has_trigger

-- create_trigger --
CREATE TRIGGER {trigger} BEFORE UPDATE ON {table}
FOR EACH ROW EXECUTE FUNCTION {function}()

-- schema_lock --
-- Serializes schema creation between processes of ours (concurrent CREATE ... IF NOT EXISTS
-- can still fail on a catalog unique index).
SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))

-- state_case --
-- compute_job_state in SQL, against one bound now. An interval or a time of day is truthy
-- unless it is NULL or '' (the columns are text).
CASE
    WHEN locked_at IS NOT NULL THEN 'running'
    WHEN failed_at IS NOT NULL
        AND (last_finished_at IS NULL OR failed_at >= last_finished_at) THEN 'failed'
    WHEN COALESCE(repeat_interval, '') <> '' OR COALESCE(repeat_at, '') <> '' THEN 'repeating'
    WHEN next_run_at > %(now)s::timestamptz THEN 'scheduled'
    WHEN next_run_at IS NOT NULL THEN 'queued'
    ELSE 'completed'
END

-- server_now --
SELECT date_trunc('milliseconds', clock_timestamp()) AS now

-- table_present --
-- Whether the jobs table exists (%(table)s: its quoted name), as the search path finds it.
SELECT to_regclass(%(table)s) IS NOT NULL AS present

-- read_only_session --
-- Every later statement of a read-only session is refused by the server if it writes.
SET default_transaction_read_only = on

-- select_by_id --
SELECT * FROM {table} WHERE id = %s

-- insert --
INSERT INTO {table} (
    name, priority, next_run_at, type, repeat_timezone, repeat_interval, data, repeat_at,
    disabled, fork, last_modified_by, debounce_started_at, start_date, end_date, skip_days
) VALUES (
    %(name)s, %(priority)s, %(next_run_at)s::timestamptz, %(type)s, %(repeat_timezone)s,
    %(repeat_interval)s, %(data)s::jsonb, %(repeat_at)s, %(disabled)s, %(fork)s,
    %(last_modified_by)s, %(debounce_started_at)s::timestamptz, %(start_date)s::timestamptz,
    %(end_date)s::timestamptz, %(skip_days)s::jsonb
) RETURNING *

-- insert_many --
-- Every plain insert, of one job or many. A row whose id exists is skipped: the statement
-- is repeated after a lost reply, and a repeat must not store a job twice (the caller reads
-- skipped rows back by id).
-- Plain inserts requested together, as one statement. The caller chooses the ids (random
-- UUIDs, as gen_random_uuid() would, handed out in ascending order so that the
-- created_at, id tie-break keeps the batch's order) and matches RETURNING rows by id.
-- {returning} is id: the caller knows what it stored (queries.inserted).
-- A column whose value is the same in every row (most of them: one job, or a now_many batch,
-- whose jobs share name, priority, due time...) comes as one value, %(<column>_all)s, and
-- its array as NULL, which unnest pads with NULLs; the other columns come as arrays, with a
-- NULL <column>_all. psycopg dumps an array element by element in Python, the largest part
-- of a bulk insert's own cost.
INSERT INTO {table} (
    id, name, priority, next_run_at, type, repeat_timezone, repeat_interval, data, repeat_at,
    disabled, fork, last_modified_by, debounce_started_at, start_date, end_date, skip_days
)
SELECT id, COALESCE(name, %(name_all)s), COALESCE(priority, %(priority_all)s::integer),
    COALESCE(next_run_at, %(next_run_at_all)s::timestamptz), COALESCE(type, %(type_all)s),
    COALESCE(repeat_timezone, %(repeat_timezone_all)s),
    COALESCE(repeat_interval, %(repeat_interval_all)s), COALESCE(data, %(data_all)s::jsonb),
    COALESCE(repeat_at, %(repeat_at_all)s), COALESCE(disabled, %(disabled_all)s::boolean),
    COALESCE(fork, %(fork_all)s::boolean), COALESCE(last_modified_by, %(last_modified_by_all)s),
    COALESCE(debounce_started_at, %(debounce_started_at_all)s::timestamptz),
    COALESCE(start_date, %(start_date_all)s::timestamptz),
    COALESCE(end_date, %(end_date_all)s::timestamptz),
    COALESCE(skip_days, %(skip_days_all)s::jsonb)
FROM unnest(
    %(id)b::uuid[], %(name)b::text[], %(priority)b::integer[], %(next_run_at)b::timestamptz[],
    %(type)b::text[], %(repeat_timezone)b::text[], %(repeat_interval)b::text[],
    %(data)b::jsonb[], %(repeat_at)b::text[], %(disabled)b::boolean[], %(fork)b::boolean[],
    %(last_modified_by)b::text[], %(debounce_started_at)b::timestamptz[],
    %(start_date)b::timestamptz[], %(end_date)b::timestamptz[], %(skip_days)b::jsonb[]
) AS v(id, name, priority, next_run_at, type, repeat_timezone, repeat_interval, data,
       repeat_at, disabled, fork, last_modified_by, debounce_started_at, start_date, end_date,
       skip_days)
ON CONFLICT (id) DO NOTHING
RETURNING {returning}

-- announced_insert --
-- {insert} (insert_many) and its NOTIFY in one statement, so an enqueue costs one round
-- trip: each row given a payload (one per job name and batch: _model.wake_ups) is announced
-- on the jobs channel once inserted. NOTIFY goes out at commit, so no listener hears of a row
-- it cannot read yet; a row a repeated attempt skips (an earlier attempt, whose reply was
-- lost, stored and announced it) is not announced again. pg_notify returns void: cast to
-- text, it is an empty column of the result.
WITH inserted AS (
{insert}
)
SELECT inserted.*,
    CASE WHEN n.payload IS NOT NULL THEN pg_notify(%(channel)s, n.payload)::text END AS notified
FROM inserted
LEFT JOIN unnest(%(id)b::uuid[], %(payload)b::text[]) AS n(id, payload) ON n.id = inserted.id

-- insert_one --
-- One job (a lone now(), save or create, the enqueue a web request makes): insert_many and
-- announced_insert for a single row, spelled with VALUES, its NOTIFY's payload one value
-- (NULL: not announced). The arrays of the unnest form and the join of the payloads cost a
-- lone insert 0.05-0.2 ms more, on the server and in psycopg, of a round trip of about 1
-- (bench/HISTORY.md); a repeated attempt skips the row as insert_many does.
WITH inserted AS (
    INSERT INTO {table} (
        id, name, priority, next_run_at, type, repeat_timezone, repeat_interval, data,
        repeat_at, disabled, fork, last_modified_by, debounce_started_at, start_date,
        end_date, skip_days
    ) VALUES (
        %(id)s, %(name)s, %(priority)s::integer, %(next_run_at)s::timestamptz, %(type)s,
        %(repeat_timezone)s, %(repeat_interval)s, %(data)s::jsonb, %(repeat_at)s,
        %(disabled)s::boolean, %(fork)s::boolean, %(last_modified_by)s,
        %(debounce_started_at)s::timestamptz,
        %(start_date)s::timestamptz, %(end_date)s::timestamptz, %(skip_days)s::jsonb
    )
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT inserted.id,
    CASE WHEN %(payload)s::text IS NOT NULL
         THEN pg_notify(%(channel)s, %(payload)s)::text END AS notified
FROM inserted

-- update_saved --
UPDATE {table} SET
    name = %(name)s, priority = %(priority)s, next_run_at = %(next_run_at)s::timestamptz,
    type = %(type)s, repeat_timezone = %(repeat_timezone)s,
    repeat_interval = %(repeat_interval)s, data = %(data)s::jsonb, repeat_at = %(repeat_at)s,
    disabled = %(disabled)s, fork = %(fork)s, last_modified_by = %(last_modified_by)s,
    debounce_started_at = %(debounce_started_at)s::timestamptz,
    start_date = %(start_date)s::timestamptz, end_date = %(end_date)s::timestamptz,
    skip_days = %(skip_days)s::jsonb
WHERE id = %(id)s AND name = %(match_name)s
RETURNING *

-- upsert_single --
-- The atomic upsert of a single job on the partial unique index. The CASE is
-- base.single_next_run_at: a due incoming time does not replace a pending stored one,
-- unless the timing (_model.TIMING_FIELDS) changed (the stored values are the row's
-- before the update).
INSERT INTO {table} AS stored (
    name, priority, next_run_at, type, repeat_timezone, repeat_interval, data, repeat_at,
    disabled, fork, last_modified_by, debounce_started_at, start_date, end_date, skip_days
) VALUES (
    %(name)s, %(priority)s, %(next_run_at)s::timestamptz, %(type)s, %(repeat_timezone)s,
    %(repeat_interval)s, %(data)s::jsonb, %(repeat_at)s, %(disabled)s, %(fork)s,
    %(last_modified_by)s, %(debounce_started_at)s::timestamptz, %(start_date)s::timestamptz,
    %(end_date)s::timestamptz, %(skip_days)s::jsonb
)
ON CONFLICT (name) WHERE type = 'single' DO UPDATE SET
    priority = EXCLUDED.priority, type = EXCLUDED.type,
    repeat_timezone = EXCLUDED.repeat_timezone, repeat_interval = EXCLUDED.repeat_interval,
    data = EXCLUDED.data, repeat_at = EXCLUDED.repeat_at, disabled = EXCLUDED.disabled,
    fork = EXCLUDED.fork, last_modified_by = EXCLUDED.last_modified_by,
    debounce_started_at = EXCLUDED.debounce_started_at, start_date = EXCLUDED.start_date,
    end_date = EXCLUDED.end_date, skip_days = EXCLUDED.skip_days,
    next_run_at = CASE
        WHEN EXCLUDED.next_run_at <= COALESCE(
                %(now)s::timestamptz, date_trunc('milliseconds', clock_timestamp()))
            AND stored.next_run_at IS NOT NULL
            AND stored.repeat_interval IS NOT DISTINCT FROM EXCLUDED.repeat_interval
            AND stored.repeat_at IS NOT DISTINCT FROM EXCLUDED.repeat_at
            AND stored.repeat_timezone IS NOT DISTINCT FROM EXCLUDED.repeat_timezone
            AND stored.start_date IS NOT DISTINCT FROM EXCLUDED.start_date
            AND stored.end_date IS NOT DISTINCT FROM EXCLUDED.end_date
            AND stored.skip_days IS NOT DISTINCT FROM EXCLUDED.skip_days
        THEN stored.next_run_at
        ELSE EXCLUDED.next_run_at
    END
RETURNING *

-- unique_lock --
-- Serializes the read-decide-write of unique/debounced saves of one job name.
SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))

-- select_unique --
-- {conditions} are built from the unique key by the repository (bound values only). The
-- first match in insertion order is the one updated (Agenda updates every match).
SELECT * FROM {table} WHERE name = %s AND {conditions}
ORDER BY created_at, id LIMIT 1 FOR UPDATE

-- update_state --
-- next_run_at is written only while the stored timing is the job's (_model.TIMING_FIELDS):
-- a schedule changed during the run keeps its own next run. Fenced (lock_token truncated to
-- ms, NULL = unfenced): applied only while the stored lock, at millisecond precision, is the
-- token.
UPDATE {table} SET
    locked_at = %(locked_at)s,
    next_run_at = CASE
        WHEN repeat_interval IS NOT DISTINCT FROM %(repeat_interval)s::text
            AND repeat_at IS NOT DISTINCT FROM %(repeat_at)s::text
            AND repeat_timezone IS NOT DISTINCT FROM %(repeat_timezone)s::text
            AND start_date IS NOT DISTINCT FROM %(start_date)s::timestamptz
            AND end_date IS NOT DISTINCT FROM %(end_date)s::timestamptz
            AND skip_days IS NOT DISTINCT FROM %(skip_days)s::jsonb
        THEN %(next_run_at)s::timestamptz ELSE next_run_at END,
    last_run_at = %(last_run_at)s,
    progress = %(progress)s, fail_reason = %(fail_reason)s, fail_count = %(fail_count)s,
    failed_at = %(failed_at)s, last_finished_at = %(last_finished_at)s,
    last_modified_by = %(last_modified_by)s
WHERE id = %(id)s AND name = %(name)s
  AND (%(lock_token)s::timestamptz IS NULL
       OR date_trunc('milliseconds', locked_at) = %(lock_token)s::timestamptz)

-- update_states --
-- save_job_states: the state fields of many jobs in one statement, sent binary: the ids as
-- one array, every other column as one array (one element per job) or, when every job has
-- the same value, as that value (%(<column>_all)s, its array NULL, which unnest pads with
-- NULLs), as insert_many does: psycopg dumps an array element by element, and most state
-- columns of a batch are alike (a name, NULL failure fields, NULL timing of one-off jobs).
-- RETURNING tells which jobs were written (the others are gone or fenced out: lock_token
-- as in update_state). next_run_at as in update_state. The ids come and go as text
-- (canonical, checked by the caller): a UUID made and read back in Python, twice per job,
-- cost more than the casts here.
UPDATE {table} AS t SET
    locked_at = v.locked_at,
    next_run_at = CASE
        WHEN t.repeat_interval IS NOT DISTINCT FROM v.repeat_interval
            AND t.repeat_at IS NOT DISTINCT FROM v.repeat_at
            AND t.repeat_timezone IS NOT DISTINCT FROM v.repeat_timezone
            AND t.start_date IS NOT DISTINCT FROM v.start_date
            AND t.end_date IS NOT DISTINCT FROM v.end_date
            AND t.skip_days IS NOT DISTINCT FROM v.skip_days
        THEN v.next_run_at ELSE t.next_run_at END,
    last_run_at = v.last_run_at,
    progress = v.progress, fail_reason = v.fail_reason, fail_count = v.fail_count,
    failed_at = v.failed_at, last_finished_at = v.last_finished_at,
    last_modified_by = %(last_modified_by)s
FROM (
    SELECT id::uuid AS id, COALESCE(name, %(name_all)s) AS name,
        COALESCE(locked_at, %(locked_at_all)s::timestamptz) AS locked_at,
        COALESCE(next_run_at, %(next_run_at_all)s::timestamptz) AS next_run_at,
        COALESCE(last_run_at, %(last_run_at_all)s::timestamptz) AS last_run_at,
        COALESCE(progress, %(progress_all)s::real) AS progress,
        COALESCE(fail_reason, %(fail_reason_all)s::text) AS fail_reason,
        COALESCE(fail_count, %(fail_count_all)s::integer) AS fail_count,
        COALESCE(failed_at, %(failed_at_all)s::timestamptz) AS failed_at,
        COALESCE(last_finished_at, %(last_finished_at_all)s::timestamptz) AS last_finished_at,
        COALESCE(repeat_interval, %(repeat_interval_all)s::text) AS repeat_interval,
        COALESCE(repeat_at, %(repeat_at_all)s::text) AS repeat_at,
        COALESCE(repeat_timezone, %(repeat_timezone_all)s::text) AS repeat_timezone,
        COALESCE(start_date, %(start_date_all)s::timestamptz) AS start_date,
        COALESCE(end_date, %(end_date_all)s::timestamptz) AS end_date,
        COALESCE(skip_days, %(skip_days_all)s::jsonb) AS skip_days,
        COALESCE(lock_token, %(lock_token_all)s::timestamptz) AS lock_token
    FROM unnest(
        %(id)b::text[], %(name)b::text[], %(locked_at)b::timestamptz[],
        %(next_run_at)b::timestamptz[], %(last_run_at)b::timestamptz[], %(progress)b::real[],
        %(fail_reason)b::text[], %(fail_count)b::integer[], %(failed_at)b::timestamptz[],
        %(last_finished_at)b::timestamptz[], %(repeat_interval)b::text[],
        %(repeat_at)b::text[], %(repeat_timezone)b::text[], %(start_date)b::timestamptz[],
        %(end_date)b::timestamptz[], %(skip_days)b::jsonb[], %(lock_token)b::timestamptz[]
    ) AS u(id, name, locked_at, next_run_at, last_run_at, progress, fail_reason, fail_count,
           failed_at, last_finished_at, repeat_interval, repeat_at, repeat_timezone,
           start_date, end_date, skip_days, lock_token)
) AS v
WHERE t.id = v.id AND t.name = v.name
  AND (v.lock_token IS NULL OR date_trunc('milliseconds', t.locked_at) = v.lock_token)
RETURNING t.id::text AS id

-- claim --
-- Claim up to limit jobs in one statement: first the jobs of the name whose lock went stale
-- (a worker died or a run outlived lock_lifetime), whatever their next_run_at, so crash
-- recovery never waits behind a backlog of due jobs (the partial locked_at index finds
-- them: few rows are locked at a time); then, for the room left, unlocked due jobs
-- (claim_due_idx gives them in order, reading no completed job and no other name's). The row locks of FOR UPDATE plus SKIP LOCKED
-- give concurrent claimers different rows; a row another claimer has just committed is
-- re-checked against the WHERE clause, so it is not taken twice. RETURNING order is
-- arbitrary: the caller re-sorts, stale ones (claimed_stale) first. {claimed} is every column
-- in a fixed order (queries.CLAIM_COLUMNS): the caller reads the rows as tuples. now NULL
-- stamps with the database clock.
WITH stale AS (
    SELECT id FROM {table}
    WHERE name = %(name)s AND disabled = FALSE AND locked_at <= %(lock_deadline)s
    ORDER BY next_run_at ASC NULLS LAST, priority DESC, created_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id FROM {table}
    WHERE name = %(name)s AND disabled = FALSE
      AND locked_at IS NULL AND next_run_at <= %(next_scan_at)s
    ORDER BY next_run_at ASC, priority DESC, created_at, id
    LIMIT %(limit)s - (SELECT COUNT(*) FROM stale)
    FOR UPDATE SKIP LOCKED
), picked AS (
    -- The LIMIT changes no result: it tells the planner how few rows come (the one of due
    -- is an expression it cannot read), so it joins them on the primary key, not by hash.
    SELECT id, TRUE AS stale FROM stale UNION ALL SELECT id, FALSE FROM due
    LIMIT %(limit)s
)
UPDATE {table} AS t
SET locked_at = COALESCE(%(now)s::timestamptz, date_trunc('milliseconds', clock_timestamp())),
    last_modified_by = %(by)s
FROM picked
WHERE t.id = picked.id
RETURNING {claimed}, picked.stale AS claimed_stale

-- lock --
-- Agenda compares next_run_at = $3, so a null one never locks; the reference store
-- matches null to null.
UPDATE {table}
SET locked_at = COALESCE(%(now)s::timestamptz, date_trunc('milliseconds', clock_timestamp())),
    last_modified_by = %(by)s
WHERE id = %(id)s AND name = %(name)s AND locked_at IS NULL AND disabled = FALSE
  AND next_run_at IS NOT DISTINCT FROM %(next_run_at)s::timestamptz
RETURNING *

-- unlock --
UPDATE {table} SET locked_at = NULL WHERE id = %s AND next_run_at IS NOT NULL

-- unlock_many --
UPDATE {table} SET locked_at = NULL WHERE id = ANY(%s::uuid[])

-- distinct_names --
-- Byte order ("C"), as Python sorts strings; the database collation would not.
SELECT DISTINCT name COLLATE "C" AS name FROM {table} ORDER BY 1

-- queue_size --
-- On the database clock, as Agenda counts.
SELECT COUNT(*) AS size FROM {table}
WHERE next_run_at < date_trunc('milliseconds', clock_timestamp())

-- overview --
-- The jobs per name, state and pause, one count each (repository.get_jobs_overview adds
-- them up per name): one pass that computes each row's state once (a FILTER per state
-- computes it once per state: the planner inlines it into each). OFFSET 0 keeps the
-- subquery whole, so the planner hashes the few groups instead of estimating one per row
-- (it cannot see that the CASE has six values) and sorting the table for them.
SELECT name COLLATE "C" AS name, state, paused, COUNT(*) AS jobs
FROM (SELECT name, {state} AS state, disabled IS TRUE AS paused FROM {table} OFFSET 0) AS j
GROUP BY 1, 2, 3 ORDER BY 1

-- query --
-- Every match, in {order} ({where} holds the filters and the state filter; composed by
-- queries.page_statements): a query without a limit.
SELECT *, {state} AS state FROM {table} WHERE {where} ORDER BY {order} OFFSET %(skip)s

-- query_page --
-- One page: first the ids of the page, in {order} (off a next-run index when sorted by next
-- run, reading no row there), then the rows of those ids only, so a deep page does not read
-- the rows it skips. The outer ORDER BY re-sorts only the page.
SELECT t.*, {state} AS state
FROM (SELECT id FROM {table} WHERE {where} ORDER BY {order}
      LIMIT %(limit)s OFFSET %(skip)s) AS page
JOIN {table} AS t USING (id)
ORDER BY {order}

-- query_page_counted --
-- query_page for a filter no index serves (data, text in the name), which reads every row to
-- find the matches anyway: the total is counted in that same pass, where walking an index in
-- {order} would read the rows again in random order (all of them when the page is not
-- full) and a full page then count them in a second pass.
SELECT t.*, {state} AS state, page.total
FROM (SELECT id, COUNT(*) OVER () AS total FROM {table} WHERE {where} ORDER BY {order}
      LIMIT %(limit)s OFFSET %(skip)s) AS page
JOIN {table} AS t USING (id)
ORDER BY {order}

-- count --
-- The total of a full page, or of an empty one past the end (a page that is not full tells
-- its total without it: query_jobs).
SELECT COUNT(*) AS total FROM {table} WHERE {where}

-- delete --
DELETE FROM {table} WHERE {where}

-- set_disabled --
UPDATE {table} SET disabled = %(disabled)s WHERE {where}
