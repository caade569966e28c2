-- The SQL of the PostgreSQL job log, one named block per statement (read by ``job_log.py``).
--
-- The table, its columns and its three indexes are exactly those of Agenda 6.2's
-- @agendajs/postgres-backend 3.0.6 (PostgresJobLogger.js), so a Node process, Agendash and
-- agenda-decl read and write one table. {table} and the index names are identifiers filled
-- in by ``job_log.py``; {where} and {direction} are composed there. Every value is a bound
-- parameter.

-- create_table --
CREATE TABLE IF NOT EXISTS {table} (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    level VARCHAR(10) NOT NULL,
    event VARCHAR(30) NOT NULL,
    job_id VARCHAR(255),
    job_name VARCHAR(255) NOT NULL,
    message TEXT NOT NULL,
    duration INTEGER,
    error TEXT,
    fail_count INTEGER,
    retry_delay INTEGER,
    retry_attempt INTEGER,
    agenda_name VARCHAR(255),
    meta JSONB
)

-- create_timestamp_idx --
CREATE INDEX IF NOT EXISTS {index} ON {table} (timestamp DESC)

-- create_job_id_idx --
CREATE INDEX IF NOT EXISTS {index} ON {table} (job_id, timestamp DESC)

-- create_job_name_idx --
CREATE INDEX IF NOT EXISTS {index} ON {table} (job_name, timestamp DESC)

-- schema_lock --
-- Serializes creating the table between processes of ours (concurrent CREATE ... IF NOT
-- EXISTS can still fail on a catalog unique index).
SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))

-- insert --
INSERT INTO {table}
    (timestamp, level, event, job_id, job_name, message, duration, error, fail_count,
     retry_delay, retry_attempt, agenda_name, meta)
VALUES (%(timestamp)s, %(level)s, %(event)s, %(job_id)s, %(job_name)s, %(message)s,
    %(duration)s, %(error)s, %(fail_count)s, %(retry_delay)s, %(retry_attempt)s,
    %(agenda_name)s, %(meta)s)

-- select_page --
SELECT * FROM {table} {where} ORDER BY timestamp {direction}
LIMIT %(limit)s OFFSET %(offset)s

-- count --
SELECT COUNT(*)::int AS total FROM {table} {where}

-- delete --
DELETE FROM {table} {where}

-- existing --
-- What of the log's schema exists already (only what is missing is created: CREATE INDEX
-- takes a table lock even when the index is there).
SELECT to_regclass(%(table)s) IS NOT NULL AS has_table,
    ARRAY(SELECT c.relname::text FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
          WHERE i.indrelid = to_regclass(%(table)s)) AS indexes
