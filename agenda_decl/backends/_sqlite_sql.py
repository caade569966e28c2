"""The SQL text of the SQLite backend, in one place.

The table is modelled on Agenda v6's PostgreSQL table (same column and index names), plus
``start_date``, ``end_date`` and ``skip_days``, which SQLite persists. Instants are INTEGER
milliseconds since the Unix epoch (UTC), so they sort and compare correctly in SQL.

``{table}`` is the validated, double-quoted table name and ``{prefix}`` the bare validated
name used in index names; both are filled in once by :func:`render`. Every value is a bound
parameter.
"""

from __future__ import annotations

# -- schema -------------------------------------------------------------------------------------

#: ``repeat_interval`` has no declared type on purpose: a column without one keeps each value
#: as given, so 5000 comes back as the integer 5000 and "5 minutes" as text.
CREATE_TABLE = """
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
"""

#: The four indexes of the PostgreSQL backend. The find-and-lock predicate is spelled exactly
#: as in the claim query (``disabled = 0``) so that the planner can use the partial index.
CREATE_INDEXES = (
    'CREATE INDEX IF NOT EXISTS "{prefix}_find_and_lock_idx" ON {table} '
    "(name, next_run_at, priority DESC, locked_at, disabled) WHERE disabled = 0",
    'CREATE UNIQUE INDEX IF NOT EXISTS "{prefix}_single_job_idx" ON {table} (name) '
    "WHERE type = 'single'",
    'CREATE INDEX IF NOT EXISTS "{prefix}_locked_at_idx" ON {table} (locked_at) '
    "WHERE locked_at IS NOT NULL",
    'CREATE INDEX IF NOT EXISTS "{prefix}_next_run_at_idx" ON {table} (next_run_at) '
    "WHERE next_run_at IS NOT NULL",
)

INDEX_SUFFIXES = ("find_and_lock_idx", "single_job_idx", "locked_at_idx", "next_run_at_idx")

# -- columns ------------------------------------------------------------------------------------

#: What ``save_job`` writes: every field except the id and the processor fields.
SAVE_COLUMNS = (
    "name",
    "priority",
    "next_run_at",
    "type",
    "repeat_timezone",
    "repeat_interval",
    "data",
    "repeat_at",
    "disabled",
    "debounce_started_at",
    "last_modified_by",
    "fork",
    "start_date",
    "end_date",
    "skip_days",
)

#: Exactly ``_model.STATE_FIELDS``.
STATE_COLUMNS = (
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

#: Columns that hold instants (INTEGER epoch milliseconds).
INSTANT_COLUMNS = (
    "next_run_at",
    "locked_at",
    "last_finished_at",
    "failed_at",
    "last_run_at",
    "debounce_started_at",
    "start_date",
    "end_date",
)

#: The allow-list of sort keys and the SQL each sorts on. Data sorts on its JSON text, with a
#: JSON ``null`` counted as missing (so it goes last, as in the reference store).
SORT_EXPRESSIONS = {
    "next_run_at": "next_run_at",
    "last_run_at": "last_run_at",
    "last_finished_at": "last_finished_at",
    "priority": "priority",
    "name": "name",
    "data": "NULLIF(data, 'null')",
}

#: ``compute_job_state`` in SQL, evaluated against one bound ``:now``. An interval is truthy
#: unless it is NULL, '' or 0 (the column keeps integers and text apart, so '0' is truthy).
STATE_CASE = """CASE
    WHEN locked_at IS NOT NULL THEN 'running'
    WHEN failed_at IS NOT NULL
        AND (last_finished_at IS NULL OR failed_at >= last_finished_at) THEN 'failed'
    WHEN repeat_interval IS NOT NULL AND repeat_interval <> '' AND repeat_interval <> 0
        THEN 'repeating'
    WHEN next_run_at > :now THEN 'scheduled'
    WHEN next_run_at IS NOT NULL THEN 'queued'
    ELSE 'completed'
END"""

# -- statements ---------------------------------------------------------------------------------

SELECT_BY_ID = "SELECT *, rowid AS row_order FROM {table} WHERE id = ?"

SELECT_SINGLE = (
    "SELECT *, rowid AS row_order FROM {table} WHERE name = ? AND type = 'single' LIMIT 1"
)

INSERT = """
INSERT INTO {table} (
    id, created_at, updated_at,
    name, priority, next_run_at, type, repeat_timezone, repeat_interval, data, repeat_at,
    disabled, debounce_started_at, last_modified_by, fork, start_date, end_date, skip_days
) VALUES (
    :id, :stamp, :stamp,
    :name, :priority, :next_run_at, :type, :repeat_timezone, :repeat_interval, :data, :repeat_at,
    :disabled, :debounce_started_at, :last_modified_by, :fork, :start_date, :end_date, :skip_days
)
RETURNING *, rowid AS row_order
"""

#: Every SAVE_COLUMNS column, matched on id and name (the processor fields stay as stored).
UPDATE_SAVED = """
UPDATE {table} SET
    updated_at = :stamp,
    name = :name, priority = :priority, next_run_at = :next_run_at, type = :type,
    repeat_timezone = :repeat_timezone, repeat_interval = :repeat_interval, data = :data,
    repeat_at = :repeat_at, disabled = :disabled, debounce_started_at = :debounce_started_at,
    last_modified_by = :last_modified_by, fork = :fork, start_date = :start_date,
    end_date = :end_date, skip_days = :skip_days
WHERE id = :id AND name = :name
RETURNING *, rowid AS row_order
"""

#: Exactly the STATE_COLUMNS.
UPDATE_STATE = """
UPDATE {table} SET
    updated_at = :stamp,
    locked_at = :locked_at, next_run_at = :next_run_at, last_run_at = :last_run_at,
    progress = :progress, fail_reason = :fail_reason, fail_count = :fail_count,
    failed_at = :failed_at, last_finished_at = :last_finished_at,
    last_modified_by = :last_modified_by
WHERE id = :id AND name = :name
"""

#: The atomic claim: pick the best eligible rows and stamp them, in one statement (run inside
#: BEGIN IMMEDIATE, so no other connection writes in between). RETURNING order is arbitrary:
#: the caller re-sorts on (next_run_at nulls last, priority desc, row_order).
CLAIM = """
UPDATE {table} SET locked_at = :now, last_modified_by = :by, updated_at = :now
WHERE id IN (
    SELECT id FROM {table}
    WHERE name = :name AND disabled = 0
      AND ((locked_at IS NULL AND next_run_at <= :next_scan_at) OR locked_at <= :lock_deadline)
    ORDER BY next_run_at IS NULL, next_run_at, priority DESC, rowid
    LIMIT :limit
)
RETURNING *, rowid AS row_order
"""

LOCK = """
UPDATE {table} SET locked_at = :now, last_modified_by = :by, updated_at = :now
WHERE id = :id AND name = :name AND locked_at IS NULL AND disabled = 0
  AND next_run_at IS :next_run_at
RETURNING *, rowid AS row_order
"""

UNLOCK = "UPDATE {table} SET locked_at = NULL WHERE id = ? AND next_run_at IS NOT NULL"

UNLOCK_MANY = "UPDATE {table} SET locked_at = NULL WHERE id IN (SELECT value FROM json_each(?))"

DISTINCT_NAMES = "SELECT DISTINCT name FROM {table} ORDER BY name"

QUEUE_SIZE = "SELECT COUNT(*) AS size FROM {table} WHERE next_run_at < ?"

OVERVIEW = (
    "SELECT name, COUNT(*) AS total, "
    "SUM(state = 'running') AS running, SUM(state = 'scheduled') AS scheduled, "
    "SUM(state = 'queued') AS queued, SUM(state = 'completed') AS completed, "
    "SUM(state = 'failed') AS failed, SUM(state = 'repeating') AS repeating, "
    "SUM(disabled) AS paused "
    "FROM (SELECT name, disabled, {state} AS state FROM {table}) "
    "GROUP BY name ORDER BY name"
)

#: Filter fragments (each names its own parameters); ``where`` is ANDed from these.
FILTERS = {
    "id": "id = :id",
    "ids": "id IN (SELECT value FROM json_each(:ids))",
    "name": "name = :name",
    "names": "name IN (SELECT value FROM json_each(:names))",
    "not_names": "name NOT IN (SELECT value FROM json_each(:not_names))",
    "search": "agenda_lower(name) LIKE :search ESCAPE '\\'",
    "data": "agenda_data_contains(data, :data)",
    "enabled": "disabled = 0",
    "paused": "disabled = 1",
    "state": f"({STATE_CASE}) = :state",
}

SELECT_PAGE = (
    "SELECT *, rowid AS row_order, {state} AS state FROM {table} WHERE {where} "
    "ORDER BY {order} LIMIT :limit OFFSET :skip"
)

COUNT = "SELECT COUNT(*) AS total FROM {table} WHERE {where}"

DELETE = "DELETE FROM {table} WHERE {where}"

SET_DISABLED = "UPDATE {table} SET disabled = :disabled, updated_at = :stamp WHERE {where}"

SELECT_UNIQUE = "SELECT *, rowid AS row_order FROM {table} WHERE {where} ORDER BY rowid"


def render(template: str, *, table: str, prefix: str = "", **fragments: str) -> str:
    """Fill in the quoted table name, the state expression and fragments built from this
    module's own text.

    Callers pass only a validated identifier and fragments taken from :data:`FILTERS`,
    :data:`SORT_EXPRESSIONS` and fixed keywords, never user input.
    """
    return template.format(table=table, prefix=prefix, state=STATE_CASE, **fragments)
