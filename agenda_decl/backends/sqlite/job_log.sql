-- The SQL of the SQLite job log, one named block per statement (read by ``job_log.py``).
--
-- SQLite has no Agenda counterpart: the table is modelled on the ``agenda_logs`` table of
-- Agenda 6.2's PostgreSQL backend (same columns and index names). The id is a random UUID
-- as there; the timestamp INTEGER milliseconds since the Unix epoch (UTC), as the jobs
-- table's instants; meta JSON text. Entries of one timestamp sort in the order they were
-- written (rowid).
--
-- {table} is the validated, double-quoted table name and {prefix} the bare name used in the
-- index names; {where} and {direction} are built by ``job_log.py``. Every value is a bound
-- parameter.

-- create_table --
CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY NOT NULL,
    timestamp INTEGER NOT NULL,
    level TEXT NOT NULL,
    event TEXT NOT NULL,
    job_id TEXT,
    job_name TEXT NOT NULL,
    message TEXT NOT NULL,
    duration INTEGER,
    error TEXT,
    fail_count INTEGER,
    retry_delay INTEGER,
    retry_attempt INTEGER,
    agenda_name TEXT,
    meta TEXT CHECK (meta IS NULL OR json_valid(meta))
)

-- create_timestamp_idx --
CREATE INDEX IF NOT EXISTS "{prefix}_timestamp_idx" ON {table} (timestamp DESC)

-- create_job_id_idx --
CREATE INDEX IF NOT EXISTS "{prefix}_job_id_idx" ON {table} (job_id, timestamp DESC)

-- create_job_name_idx --
CREATE INDEX IF NOT EXISTS "{prefix}_job_name_idx" ON {table} (job_name, timestamp DESC)

-- table_present --
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?

-- insert --
INSERT INTO {table} (id, timestamp, level, event, job_id, job_name, message, duration, error,
    fail_count, retry_delay, retry_attempt, agenda_name, meta)
VALUES (:id, :timestamp, :level, :event, :job_id, :job_name, :message, :duration, :error,
    :fail_count, :retry_delay, :retry_attempt, :agenda_name, :meta)

-- select_page --
SELECT * FROM {table} WHERE {where}
ORDER BY timestamp {direction}, rowid {direction}
LIMIT :limit OFFSET :offset

-- count --
SELECT COUNT(*) AS total FROM {table} WHERE {where}

-- delete --
DELETE FROM {table} WHERE {where}
