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

import uuid
from collections.abc import Mapping
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from agenda_decl._job_data import check_data_filter, encode_data
from agenda_decl._model import JobsQueryOptions, RemoveJobsOptions, SortDirection, SortKey
from agenda_decl.backends import base

Row = dict[str, Any]

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

#: What of the schema exists already. Agenda re-runs every DDL statement (and drops and
#: re-creates the trigger) on each connect, which takes table locks and races between
#: processes starting together (P-9); we create only what is missing.
EXISTING = """
SELECT to_regclass(%(table)s) IS NOT NULL AS has_table,
    ARRAY(SELECT attname::text FROM pg_attribute
          WHERE attrelid = to_regclass(%(table)s) AND attnum > 0 AND NOT attisdropped) AS columns,
    ARRAY(SELECT c.relname::text FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
          WHERE i.indrelid = to_regclass(%(table)s)) AS indexes,
    EXISTS(SELECT 1 FROM pg_trigger
           WHERE tgrelid = to_regclass(%(table)s) AND tgname = %(trigger)s) AS has_trigger
"""

CREATE_TRIGGER = """
CREATE TRIGGER {trigger} BEFORE UPDATE ON {table}
FOR EACH ROW EXECUTE FUNCTION {function}()
"""

#: Serializes schema creation between processes of ours (concurrent CREATE ... IF NOT EXISTS
#: can still fail on a catalog unique index).
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

# -- query parts --------------------------------------------------------------------------------

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

#: ``compute_job_state`` in SQL, against one bound ``now``. An interval or a time of day is
#: truthy unless it is NULL or '' (the columns are text).
STATE_CASE = """CASE
    WHEN locked_at IS NOT NULL THEN 'running'
    WHEN failed_at IS NOT NULL
        AND (last_finished_at IS NULL OR failed_at >= last_finished_at) THEN 'failed'
    WHEN COALESCE(repeat_interval, '') <> '' OR COALESCE(repeat_at, '') <> '' THEN 'repeating'
    WHEN next_run_at > %(now)s::timestamptz THEN 'scheduled'
    WHEN next_run_at IS NOT NULL THEN 'queued'
    ELSE 'completed'
END"""

# -- statements ---------------------------------------------------------------------------------
# Written out in full so each reads as it runs. ``{state}`` is STATE_CASE, filled in by render.

SERVER_NOW = "SELECT date_trunc('milliseconds', clock_timestamp()) AS now"

#: Whether the jobs table exists (``%(table)s``: its quoted name), as the search path finds it.
TABLE_PRESENT = "SELECT to_regclass(%(table)s) IS NOT NULL AS present"

#: Every later statement of a read-only session is refused by the server if it writes.
READ_ONLY_SESSION = "SET default_transaction_read_only = on"

SELECT_BY_ID = "SELECT * FROM {table} WHERE id = %s"

INSERT = """
INSERT INTO {table} (
    name, priority, next_run_at, type, repeat_timezone, repeat_interval, data, repeat_at,
    disabled, fork, last_modified_by, debounce_started_at, start_date, end_date, skip_days
) VALUES (
    %(name)s, %(priority)s, %(next_run_at)s::timestamptz, %(type)s, %(repeat_timezone)s,
    %(repeat_interval)s, %(data)s::jsonb, %(repeat_at)s, %(disabled)s, %(fork)s,
    %(last_modified_by)s, %(debounce_started_at)s::timestamptz, %(start_date)s::timestamptz,
    %(end_date)s::timestamptz, %(skip_days)s::integer[]
) RETURNING *
"""

#: Plain inserts requested together, as one statement. The caller chooses the ids (random
#: UUIDs, as gen_random_uuid() would, handed out in ascending order so that the
#: ``created_at, id`` tie-break keeps the batch's order) and matches RETURNING rows by id.
#: ``skip_days`` travels as JSON: unnest cannot take an array of arrays of different lengths.
INSERT_MANY = """
INSERT INTO {table} (
    id, name, priority, next_run_at, type, repeat_timezone, repeat_interval, data, repeat_at,
    disabled, fork, last_modified_by, debounce_started_at, start_date, end_date, skip_days
)
SELECT id, name, priority, next_run_at, type, repeat_timezone, repeat_interval, data,
    repeat_at, disabled, fork, last_modified_by, debounce_started_at, start_date, end_date,
    CASE WHEN skip_days IS NULL THEN NULL
         ELSE ARRAY(SELECT jsonb_array_elements_text(skip_days)::integer) END
FROM unnest(
    %(id)b::uuid[], %(name)b::text[], %(priority)b::integer[], %(next_run_at)b::timestamptz[],
    %(type)b::text[], %(repeat_timezone)b::text[], %(repeat_interval)b::text[],
    %(data)b::jsonb[], %(repeat_at)b::text[], %(disabled)b::boolean[], %(fork)b::boolean[],
    %(last_modified_by)b::text[], %(debounce_started_at)b::timestamptz[],
    %(start_date)b::timestamptz[], %(end_date)b::timestamptz[], %(skip_days)b::jsonb[]
) AS v(id, name, priority, next_run_at, type, repeat_timezone, repeat_interval, data,
       repeat_at, disabled, fork, last_modified_by, debounce_started_at, start_date, end_date,
       skip_days)
RETURNING *
"""

UPDATE_SAVED = """
UPDATE {table} SET
    name = %(name)s, priority = %(priority)s, next_run_at = %(next_run_at)s::timestamptz,
    type = %(type)s, repeat_timezone = %(repeat_timezone)s,
    repeat_interval = %(repeat_interval)s, data = %(data)s::jsonb, repeat_at = %(repeat_at)s,
    disabled = %(disabled)s, fork = %(fork)s, last_modified_by = %(last_modified_by)s,
    debounce_started_at = %(debounce_started_at)s::timestamptz,
    start_date = %(start_date)s::timestamptz, end_date = %(end_date)s::timestamptz,
    skip_days = %(skip_days)s::integer[]
WHERE id = %(id)s AND name = %(match_name)s
RETURNING *
"""

#: The atomic upsert of a ``single`` job on the partial unique index. The CASE is
#: ``base.single_next_run_at``: a due incoming time does not replace a pending stored one,
#: unless the timing (``_model.TIMING_FIELDS``) changed (the stored values are the row's
#: before the update).
UPSERT_SINGLE = """
INSERT INTO {table} AS stored (
    name, priority, next_run_at, type, repeat_timezone, repeat_interval, data, repeat_at,
    disabled, fork, last_modified_by, debounce_started_at, start_date, end_date, skip_days
) VALUES (
    %(name)s, %(priority)s, %(next_run_at)s::timestamptz, %(type)s, %(repeat_timezone)s,
    %(repeat_interval)s, %(data)s::jsonb, %(repeat_at)s, %(disabled)s, %(fork)s,
    %(last_modified_by)s, %(debounce_started_at)s::timestamptz, %(start_date)s::timestamptz,
    %(end_date)s::timestamptz, %(skip_days)s::integer[]
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
"""

#: Serializes the read-decide-write of unique/debounced saves of one job name.
UNIQUE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

#: ``{conditions}`` are built from the unique key by the repository (bound values only). The
#: first match in insertion order is the one updated (Agenda updates every match, W-6).
SELECT_UNIQUE = """
SELECT * FROM {table} WHERE name = %s AND {conditions}
ORDER BY created_at, id LIMIT 1 FOR UPDATE
"""

#: ``next_run_at`` is written only while the stored timing is the job's
#: (``_model.TIMING_FIELDS``): a schedule changed during the run keeps its own (W-7). Fenced
#: (``lock_token`` truncated to ms, NULL = unfenced): applied only while the stored lock, at
#: millisecond precision, is the token.
UPDATE_STATE = """
UPDATE {table} SET
    locked_at = %(locked_at)s,
    next_run_at = CASE
        WHEN repeat_interval IS NOT DISTINCT FROM %(repeat_interval)s::text
            AND repeat_at IS NOT DISTINCT FROM %(repeat_at)s::text
            AND repeat_timezone IS NOT DISTINCT FROM %(repeat_timezone)s::text
            AND start_date IS NOT DISTINCT FROM %(start_date)s::timestamptz
            AND end_date IS NOT DISTINCT FROM %(end_date)s::timestamptz
            AND skip_days IS NOT DISTINCT FROM %(skip_days)s::integer[]
        THEN %(next_run_at)s::timestamptz ELSE next_run_at END,
    last_run_at = %(last_run_at)s,
    progress = %(progress)s, fail_reason = %(fail_reason)s, fail_count = %(fail_count)s,
    failed_at = %(failed_at)s, last_finished_at = %(last_finished_at)s,
    last_modified_by = %(last_modified_by)s
WHERE id = %(id)s AND name = %(name)s
  AND (%(lock_token)s::timestamptz IS NULL
       OR date_trunc('milliseconds', locked_at) = %(lock_token)s::timestamptz)
"""

#: ``save_job_states``: the state fields of many jobs in one statement (one array per column,
#: one element per job, sent binary). RETURNING tells which jobs were written (the others are
#: gone or fenced out: ``lock_token`` as in UPDATE_STATE). ``next_run_at``
#: as in UPDATE_STATE; ``skip_days`` travels as JSON (see INSERT_MANY).
UPDATE_STATES = """
UPDATE {table} AS t SET
    locked_at = v.locked_at,
    next_run_at = CASE
        WHEN t.repeat_interval IS NOT DISTINCT FROM v.repeat_interval
            AND t.repeat_at IS NOT DISTINCT FROM v.repeat_at
            AND t.repeat_timezone IS NOT DISTINCT FROM v.repeat_timezone
            AND t.start_date IS NOT DISTINCT FROM v.start_date
            AND t.end_date IS NOT DISTINCT FROM v.end_date
            AND to_jsonb(t.skip_days) IS NOT DISTINCT FROM v.skip_days
        THEN v.next_run_at ELSE t.next_run_at END,
    last_run_at = v.last_run_at,
    progress = v.progress, fail_reason = v.fail_reason, fail_count = v.fail_count,
    failed_at = v.failed_at, last_finished_at = v.last_finished_at,
    last_modified_by = %(last_modified_by)s
FROM unnest(
    %(id)b::uuid[], %(name)b::text[], %(locked_at)b::timestamptz[],
    %(next_run_at)b::timestamptz[], %(last_run_at)b::timestamptz[], %(progress)b::real[],
    %(fail_reason)b::text[], %(fail_count)b::integer[], %(failed_at)b::timestamptz[],
    %(last_finished_at)b::timestamptz[], %(repeat_interval)b::text[], %(repeat_at)b::text[],
    %(repeat_timezone)b::text[], %(start_date)b::timestamptz[], %(end_date)b::timestamptz[],
    %(skip_days)b::jsonb[], %(lock_token)b::timestamptz[]
) AS v(id, name, locked_at, next_run_at, last_run_at, progress, fail_reason, fail_count,
       failed_at, last_finished_at, repeat_interval, repeat_at, repeat_timezone, start_date,
       end_date, skip_days, lock_token)
WHERE t.id = v.id AND t.name = v.name
  AND (v.lock_token IS NULL OR date_trunc('milliseconds', t.locked_at) = v.lock_token)
RETURNING t.id
"""

#: Claim up to ``limit`` jobs in one statement. The row locks of FOR UPDATE plus SKIP LOCKED
#: give concurrent claimers different rows; a row another claimer has just committed is
#: re-checked against the WHERE clause, so it is not taken twice. RETURNING order is
#: arbitrary: the caller re-sorts. ``now`` NULL stamps with the database clock.
CLAIM = """
UPDATE {table}
SET locked_at = COALESCE(%(now)s::timestamptz, date_trunc('milliseconds', clock_timestamp())),
    last_modified_by = %(by)s
WHERE id IN (
    SELECT id FROM {table}
    WHERE name = %(name)s AND disabled = FALSE
      AND ((locked_at IS NULL AND next_run_at <= %(next_scan_at)s)
           OR locked_at <= %(lock_deadline)s)
    ORDER BY next_run_at ASC NULLS LAST, priority DESC, created_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING *
"""

#: Agenda compares ``next_run_at = $3``, so a null one never locks; the reference store
#: matches null to null.
LOCK = """
UPDATE {table}
SET locked_at = COALESCE(%(now)s::timestamptz, date_trunc('milliseconds', clock_timestamp())),
    last_modified_by = %(by)s
WHERE id = %(id)s AND name = %(name)s AND locked_at IS NULL AND disabled = FALSE
  AND next_run_at IS NOT DISTINCT FROM %(next_run_at)s::timestamptz
RETURNING *
"""

UNLOCK = "UPDATE {table} SET locked_at = NULL WHERE id = %s AND next_run_at IS NOT NULL"

UNLOCK_MANY = "UPDATE {table} SET locked_at = NULL WHERE id = ANY(%s::uuid[])"

#: Byte order ("C"), as Python sorts strings; the database collation would not.
DISTINCT_NAMES = 'SELECT DISTINCT name COLLATE "C" AS name FROM {table} ORDER BY 1'

#: On the database clock, as Agenda counts.
QUEUE_SIZE = """
SELECT COUNT(*) AS size FROM {table}
WHERE next_run_at < date_trunc('milliseconds', clock_timestamp())
"""

OVERVIEW = """
SELECT name COLLATE "C" AS name, COUNT(*) AS total,
    COUNT(*) FILTER (WHERE state = 'running') AS running,
    COUNT(*) FILTER (WHERE state = 'scheduled') AS scheduled,
    COUNT(*) FILTER (WHERE state = 'queued') AS queued,
    COUNT(*) FILTER (WHERE state = 'completed') AS completed,
    COUNT(*) FILTER (WHERE state = 'failed') AS failed,
    COUNT(*) FILTER (WHERE state = 'repeating') AS repeating,
    COUNT(*) FILTER (WHERE disabled IS TRUE) AS paused
FROM (SELECT name, disabled, {state} AS state FROM {table}) AS j
GROUP BY 1 ORDER BY 1
"""

#: ``{where}``, ``{state_filter}`` and ``{order}`` are composed by the repository. The window
#: count is taken after the state filter and before LIMIT/OFFSET (NULL limit = no limit).
QUERY = """
SELECT j.*, COUNT(*) OVER () AS total
FROM (SELECT *, {state} AS state FROM {table} WHERE {where}) AS j
WHERE {state_filter}
ORDER BY {order}
LIMIT %(limit)s OFFSET %(skip)s
"""

#: The total when the page is empty (skip past the end), where the window count has no row.
COUNT = """
SELECT COUNT(*) AS total
FROM (SELECT *, {state} AS state FROM {table} WHERE {where}) AS j
WHERE {state_filter}
"""

DELETE = "DELETE FROM {table} WHERE {where}"

SET_DISABLED = "UPDATE {table} SET disabled = %(disabled)s WHERE {where}"

# -- notifications ------------------------------------------------------------------------------

#: pg_notify takes the channel as text: no identifier quoting, no string assembly (P-5).
#: Notifications published together go out in one statement (in array order), so a burst of
#: saves costs one round trip and one commit, not one each (N10).
#: Binary parameters (%b): psycopg escapes every element of a text-format array.
NOTIFY_MANY = "SELECT pg_notify(c, p) FROM unnest(%b::text[], %b::text[]) AS m(c, p)"

LISTEN = "LISTEN {channel}"

#: The liveness probe of the LISTEN connection; it also reports which channels are still
#: subscribed, so a silently lost LISTEN is re-issued.
PROBE = "SELECT coalesce(array_agg(c), '{{}}') AS channels FROM pg_listening_channels() AS c"


def render(template: LiteralString, **parts: sql.Composable) -> sql.Composed:
    """Fill a template's ``{placeholders}`` with identifiers or composed fragments."""
    if "{state}" in template:
        parts.setdefault("state", sql.SQL(STATE_CASE))
    return sql.SQL(template).format(**parts)


# -- composing statements -----------------------------------------------------------------------


def job_uuid(value: object) -> uuid.UUID | None:
    """The UUID an id stands for, or None: a malformed id matches nothing (no cast error)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None




class Where:
    """ANDed conditions with named, bound parameters."""

    def __init__(self) -> None:
        self.parts: list[sql.Composable] = []
        self.params: Row = {}

    def add(self, template: LiteralString, value: Any = None) -> None:
        name = f"p{len(self.params)}"
        self.params[name] = value
        self.parts.append(sql.SQL(template).format(sql.Placeholder(name)))

    def sql(self) -> sql.Composable:
        return sql.SQL(" AND ").join(self.parts) if self.parts else sql.SQL("TRUE")


def _canonical_id(value: Any) -> str | None:
    key = job_uuid(value)
    return None if key is None else str(key)


def _filter_ids_and_names(where: Where, options: JobsQueryOptions | RemoveJobsOptions) -> bool:
    """Add the folded id and name criteria (``base.id_name_criteria``: every given one applies);
    False when they can match nothing (disjoint or malformed ids, disjoint names)."""
    criteria = base.id_name_criteria(options, id_key=_canonical_id)
    if criteria.matches_nothing():
        return False
    if criteria.ids is not None and len(criteria.ids) == 1:
        where.add("id = {}", uuid.UUID(criteria.ids[0]))
    elif criteria.ids is not None:
        where.add("id = ANY({}::uuid[])", [uuid.UUID(key) for key in criteria.ids])
    if criteria.names is not None and len(criteria.names) == 1:
        where.add("name = {}", criteria.names[0])
    elif criteria.names is not None:
        where.add("name = ANY({}::text[])", list(criteria.names))
    if criteria.not_names is not None:
        where.add("name <> ALL({}::text[])", list(criteria.not_names))
    return True


def _filter_data(where: Where, data: Any) -> None:
    """JSON containment (``data_contains``); a scalar needle must equal the data (PG's
    ``@>`` would also find a scalar inside a top-level array)."""
    if data is None:
        return
    check_data_filter(data)
    text = encode_data(data, name="data filter")
    if isinstance(data, dict | list):
        where.add("data @> {}::jsonb", text)
    else:
        where.add("data = {}::jsonb", text)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def query_where(options: JobsQueryOptions) -> Where | None:
    where = Where()
    if not _filter_ids_and_names(where, options):
        return None
    if options.search is not None:
        where.add("name ILIKE {} ESCAPE '\\'", f"%{_escape_like(options.search)}%")
    _filter_data(where, options.data)
    if not options.include_disabled:
        where.parts.append(sql.SQL("disabled IS NOT TRUE"))
    return where


def remove_where(options: RemoveJobsOptions) -> Where | None:
    if options.matches_nothing():
        return None
    where = Where()
    if not _filter_ids_and_names(where, options):
        return None
    _filter_data(where, options.data)
    return where


def state_filter(state: str | None, params: Row) -> sql.Composable:
    if state is None:
        return sql.SQL("TRUE")
    if state == "paused":
        return sql.SQL("disabled IS TRUE")
    params["state"] = state
    return sql.SQL("state = %(state)s")


def order_by(sort: Mapping[SortKey, SortDirection] | None) -> sql.Composable:
    spec = list(sort.items()) if sort else [("next_run_at", "desc"), ("last_run_at", "desc")]
    parts = [
        sql.SQL(SORT_EXPRESSIONS[key] + (" DESC" if direction == "desc" else " ASC"))
        + sql.SQL(" NULLS LAST")
        for key, direction in spec
    ]
    return sql.SQL(", ").join([*parts, sql.SQL(TIE_BREAK)])


_TEXT_FIELDS = ("name", "type", "repeat_timezone", "repeat_at", "repeat_interval")


def unique_condition(key: str, value: Any) -> tuple[sql.Composable, list[Any]]:
    """One unique-key criterion, matching as ``matches_unique`` does."""
    path = key.split(".")
    if path[0] == "data":
        expr = sql.SQL("data") + sql.SQL("").join(sql.SQL(" -> %s::text") for _ in path[1:])
        if value is None:
            return sql.SQL("({0} IS NULL OR {0} = 'null'::jsonb)").format(expr), path[1:] * 2
        text = encode_data(value, name=f"unique key {key}")
        return sql.SQL("{} = %s::jsonb").format(expr), [*path[1:], text]
    column = sql.Identifier(key)
    if value is None and key in _TEXT_FIELDS:
        return sql.SQL("{} IS NULL").format(column), []
    if key == "repeat_interval" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    expected = str if key in _TEXT_FIELDS else bool if key == "disabled" else int
    if type(value) is not expected:
        return sql.SQL("FALSE"), []
    if key == "disabled":
        return sql.SQL("COALESCE(disabled, FALSE) = %s"), [value]
    return sql.SQL("{} = %s").format(column), [value]


async def fetch(conn: psycopg.AsyncConnection[Any], statement: Any, params: Any) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(statement, params)
        return await cursor.fetchall() if cursor.description else []


async def create_schema(conn: psycopg.AsyncConnection[Any], table: str) -> None:
    """Create what is missing of Agenda's table, indexes and trigger (plus our columns).

    Only missing objects are created: ``CREATE INDEX IF NOT EXISTS`` and ``ALTER TABLE`` take
    table locks even when there is nothing to do, and workers (Node ones too) may be busy.
    """
    name = sql.Identifier(table)
    trigger = f"{table}_updated_at_trigger"
    function = sql.Identifier(f"update_{table.lower()}_updated_at")  # Agenda leaves it unquoted
    async with conn.transaction():
        await conn.execute(SCHEMA_LOCK, (f"agenda_decl:schema:{table}",))
        found = await _existing(conn, name.as_string(conn), trigger)
        if not found["has_table"]:
            await conn.execute(render(CREATE_TABLE, table=name))
        if not {"debounce_started_at", "start_date", "end_date", "skip_days"} <= found["columns"]:
            await conn.execute(render(ADD_COLUMNS, table=name))
        for suffix, template in INDEXES:
            if table + suffix not in found["indexes"]:
                index = sql.Identifier(table + suffix)
                await conn.execute(render(template, table=name, index=index))
        if not found["has_trigger"]:
            await conn.execute(render(TRIGGER_FUNCTION, function=function))
            await conn.execute(render(CREATE_TRIGGER, table=name, function=function,
                                        trigger=sql.Identifier(trigger)))


async def _existing(conn: psycopg.AsyncConnection[Any], table: str, trigger: str) -> Row:
    rows = await fetch(conn, EXISTING, {"table": table, "trigger": trigger})
    found = rows[0]
    return {**found, "columns": set(found["columns"]), "indexes": set(found["indexes"])}
