"""The SQL text of the PostgreSQL backend, in one place.

The table, its columns and types, its four indexes and its ``updated_at`` trigger are exactly
those of Agenda v6's PostgreSQL backend, so a Node Agenda v6 process can share the table.
Three nullable columns are added (``start_date``, ``end_date``, ``skip_days``): Agenda's table
has none, Node ignores columns it does not know, and without them recurring jobs would lose
their date constraints (Agenda's W-4).

Templates use ``{table}`` (and, in the schema, the index/trigger/function names) as
``psycopg.sql.Identifier`` placeholders, filled in by :func:`render`; every value is a bound
parameter (``%(name)s`` or ``%s``).
"""

from __future__ import annotations

from typing import LiteralString

from psycopg import sql

# -- schema -------------------------------------------------------------------------------------

CREATE_TABLE = """
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
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
)
"""

#: Columns Agenda's table lacks (older Agenda tables also lack ``debounce_started_at``).
#: Nullable and without defaults, so adding them to a large table is instant.
ADD_COLUMNS = """
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS debounce_started_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS start_date TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS end_date TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS skip_days INTEGER[]
"""

#: (name suffix, statement). Spelled as Agenda writes them; the claim repeats the
#: ``disabled = FALSE`` predicate so the planner can use the partial index.
INDEXES: tuple[tuple[str, LiteralString], ...] = (
    (
        "_find_and_lock_idx",
        "CREATE INDEX IF NOT EXISTS {index} ON {table} "
        "(name, next_run_at, priority DESC, locked_at, disabled) WHERE disabled = FALSE",
    ),
    (
        "_single_job_idx",
        "CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} (name) WHERE type = 'single'",
    ),
    (
        "_locked_at_idx",
        "CREATE INDEX IF NOT EXISTS {index} ON {table} (locked_at) WHERE locked_at IS NOT NULL",
    ),
    (
        "_next_run_at_idx",
        "CREATE INDEX IF NOT EXISTS {index} ON {table} (next_run_at) "
        "WHERE next_run_at IS NOT NULL",
    ),
)

TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""

#: Agenda drops and re-creates the trigger on every connect, which races between processes
#: starting together (P-9); we create it only when it is missing.
TRIGGER_EXISTS = "SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s"

CREATE_TRIGGER = """
CREATE TRIGGER {trigger} BEFORE UPDATE ON {table}
FOR EACH ROW EXECUTE FUNCTION {function}()
"""

#: Serializes schema creation between processes of ours (concurrent CREATE ... IF NOT EXISTS
#: can still fail on a catalog unique index).
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

# -- columns --------------------------------------------------------------------------------------

#: What ``save_job`` writes: every field except the id and the processor fields.
SAVE_COLUMNS: tuple[LiteralString, ...] = (
    "name",
    "priority",
    "next_run_at",
    "type",
    "repeat_timezone",
    "repeat_interval",
    "data",
    "repeat_at",
    "disabled",
    "fork",
    "last_modified_by",
    "debounce_started_at",
    "start_date",
    "end_date",
    "skip_days",
)

#: Exactly ``_model.STATE_FIELDS``.
STATE_COLUMNS: tuple[LiteralString, ...] = (
    "locked_at",
    "next_run_at",
    "last_run_at",
    "progress",
    "fail_reason",
    "fail_count",
    "failed_at",
    "last_finished_at",
    "last_modified_by",
)

#: Casts for the bound values (so a NULL has a type and JSON text becomes JSONB).
_CASTS: dict[str, LiteralString] = {
    "data": "::jsonb",
    "skip_days": "::integer[]",
    "next_run_at": "::timestamptz",
    "debounce_started_at": "::timestamptz",
    "start_date": "::timestamptz",
    "end_date": "::timestamptz",
}


def _values(columns: tuple[LiteralString, ...]) -> LiteralString:
    return ", ".join(f"%({column})s{_CASTS.get(column, '')}" for column in columns)


def _assignments(columns: tuple[LiteralString, ...]) -> LiteralString:
    return ", ".join(f"{column} = %({column})s{_CASTS.get(column, '')}" for column in columns)


#: The allow-list of sort keys: each maps to a fixed SQL expression.
SORT_EXPRESSIONS: dict[str, LiteralString] = {
    "next_run_at": "next_run_at",
    "last_run_at": "last_run_at",
    "last_finished_at": "last_finished_at",
    "priority": "priority",
    # Byte order, as Python sorts strings (the database collation would not).
    "name": 'name COLLATE "C"',
    # JSONB's own ordering; a JSON null counts as missing (last).
    "data": "NULLIF(data, 'null'::jsonb)",
}

#: The final tie-break, "insertion order": created_at is the inserting transaction's start
#: time (one transaction per save), then the id for rows inserted by one transaction.
TIE_BREAK = "created_at, id"

#: ``compute_job_state`` in SQL, against one bound ``now``. An interval is truthy unless it is
#: NULL or '' (the column is text).
STATE_CASE = """CASE
    WHEN locked_at IS NOT NULL THEN 'running'
    WHEN failed_at IS NOT NULL
        AND (last_finished_at IS NULL OR failed_at >= last_finished_at) THEN 'failed'
    WHEN repeat_interval IS NOT NULL AND repeat_interval <> '' THEN 'repeating'
    WHEN next_run_at > %(now)s::timestamptz THEN 'scheduled'
    WHEN next_run_at IS NOT NULL THEN 'queued'
    ELSE 'completed'
END"""

#: The database clock, at the millisecond precision every store keeps.
DB_NOW: LiteralString = "date_trunc('milliseconds', clock_timestamp())"

# -- statements ---------------------------------------------------------------------------------

SERVER_NOW = f"SELECT {DB_NOW} AS now"

SELECT_BY_ID = "SELECT * FROM {table} WHERE id = %s"

INSERT = (
    "INSERT INTO {table} (" + ", ".join(SAVE_COLUMNS) + ") VALUES (" + _values(SAVE_COLUMNS)
    + ") RETURNING *"
)

UPDATE_SAVED = (
    "UPDATE {table} SET " + _assignments(SAVE_COLUMNS)
    + " WHERE id = %(id)s AND name = %(match_name)s RETURNING *"
)

#: The atomic upsert of a ``single`` job on the partial unique index. The CASE is
#: ``base.single_next_run_at``: a due incoming time does not replace a pending stored one.
UPSERT_SINGLE = (
    "INSERT INTO {table} AS stored (" + ", ".join(SAVE_COLUMNS) + ") VALUES ("
    + _values(SAVE_COLUMNS) + ") "
    "ON CONFLICT (name) WHERE type = 'single' DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in SAVE_COLUMNS if c not in ("name", "next_run_at"))
    + ", next_run_at = CASE WHEN EXCLUDED.next_run_at <= COALESCE(%(now)s::timestamptz, "
    + DB_NOW + ") AND stored.next_run_at IS NOT NULL "
    "THEN stored.next_run_at ELSE EXCLUDED.next_run_at END RETURNING *"
)

#: Serializes the read-decide-write of unique/debounced saves of one job name.
UNIQUE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

#: ``{conditions}`` are built from the unique key by the repository (bound values only).
SELECT_UNIQUE = (
    "SELECT * FROM {table} WHERE name = %s AND {conditions} "
    "ORDER BY " + TIE_BREAK + " LIMIT 1 FOR UPDATE"
)

UPDATE_STATE = (
    "UPDATE {table} SET " + _assignments(STATE_COLUMNS) + " WHERE id = %(id)s AND name = %(name)s"
)

#: Claim up to ``limit`` jobs in one statement. The row locks of FOR UPDATE plus SKIP LOCKED
#: give concurrent claimers different rows. RETURNING order is arbitrary: the caller re-sorts.
CLAIM = (
    "UPDATE {table} SET locked_at = COALESCE(%(now)s::timestamptz, " + DB_NOW + "), "
    "last_modified_by = %(by)s "
    "WHERE id IN ("
    "SELECT id FROM {table} "
    "WHERE name = %(name)s AND disabled = FALSE "
    "AND ((locked_at IS NULL AND next_run_at <= %(next_scan_at)s) "
    "OR locked_at <= %(lock_deadline)s) "
    "ORDER BY next_run_at ASC NULLS LAST, priority DESC, " + TIE_BREAK + " "
    "LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    ") RETURNING *"
)

LOCK = (
    "UPDATE {table} SET locked_at = COALESCE(%(now)s::timestamptz, " + DB_NOW + "), "
    "last_modified_by = %(by)s "
    "WHERE id = %(id)s AND name = %(name)s AND locked_at IS NULL AND disabled = FALSE "
    "AND next_run_at IS NOT DISTINCT FROM %(next_run_at)s::timestamptz RETURNING *"
)

UNLOCK = "UPDATE {table} SET locked_at = NULL WHERE id = %s AND next_run_at IS NOT NULL"

UNLOCK_MANY = "UPDATE {table} SET locked_at = NULL WHERE id = ANY(%s::uuid[])"

DISTINCT_NAMES = 'SELECT DISTINCT name COLLATE "C" AS name FROM {table} ORDER BY 1'

#: Agenda counts on the database clock here too.
QUEUE_SIZE = "SELECT COUNT(*) AS size FROM {table} WHERE next_run_at < " + DB_NOW

OVERVIEW = (
    'SELECT name COLLATE "C" AS name, COUNT(*) AS total, '
    + ", ".join(
        f"COUNT(*) FILTER (WHERE state = '{state}') AS {state}"
        for state in ("running", "scheduled", "queued", "completed", "failed", "repeating")
    )
    + ", COUNT(*) FILTER (WHERE disabled IS TRUE) AS paused "
    "FROM (SELECT name, disabled, " + STATE_CASE + " AS state FROM {table}) AS j "
    'GROUP BY name COLLATE "C" ORDER BY 1'
)

#: ``{where}``, ``{state_filter}`` and ``{order}`` are composed by the repository. The window
#: count is taken after the state filter and before LIMIT/OFFSET.
QUERY = (
    "SELECT j.*, COUNT(*) OVER () AS total FROM ("
    "SELECT *, " + STATE_CASE + " AS state FROM {table} WHERE {where}"
    ") AS j WHERE {state_filter} ORDER BY {order} LIMIT %(limit)s OFFSET %(skip)s"
)

COUNT = (
    "SELECT COUNT(*) AS total FROM ("
    "SELECT *, " + STATE_CASE + " AS state FROM {table} WHERE {where}"
    ") AS j WHERE {state_filter}"
)

DELETE = "DELETE FROM {table} WHERE {where}"

SET_DISABLED = "UPDATE {table} SET disabled = %(disabled)s WHERE {where}"

# -- notifications ------------------------------------------------------------------------------

#: pg_notify takes the channel as text: no identifier quoting, no string assembly (P-5).
NOTIFY = "SELECT pg_notify(%s, %s)"

LISTEN = "LISTEN {channel}"

#: The liveness probe of the LISTEN connection; it also reports which channels are still
#: subscribed, so a silently lost LISTEN is re-issued.
PROBE = "SELECT coalesce(array_agg(c), '{{}}') AS channels FROM pg_listening_channels() AS c"


def render(template: LiteralString, **parts: sql.Composable) -> sql.Composed:
    """Fill a template's ``{placeholders}`` with identifiers or composed fragments."""
    return sql.SQL(template).format(**parts)
