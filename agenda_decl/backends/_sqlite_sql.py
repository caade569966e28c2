"""The SQL of the SQLite backend, in one place: the statements, the filter fragments and the
parameters each statement binds.

The table is modelled on Agenda v6's PostgreSQL table (same column and index names), plus
``start_date``, ``end_date`` and ``skip_days``, which SQLite persists. Instants are INTEGER
milliseconds since the Unix epoch (UTC), so they sort and compare correctly in SQL.

``{table}`` is the validated, double-quoted table name and ``{prefix}`` the bare validated
name used in index names; both are filled in once by :func:`render`. Every value is a bound
parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agenda_decl._clock import utcnow
from agenda_decl._job_data import UNIQUE_FIELDS, truncate_reason
from agenda_decl._model import JobParameters, JobsQueryOptions, RemoveJobsOptions
from agenda_decl.backends import base
from agenda_decl.errors import InvalidOptionError

Params = dict[str, Any]
#: What SQLite stores in an INTEGER.
INT64 = range(-(2**63), 2**63)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)

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

#: Which of the given table and index names exist already.
SCHEMA_OBJECTS = "SELECT name FROM sqlite_master WHERE name IN (SELECT value FROM json_each(?))"

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
#: unless it is NULL, '' or 0 (the column keeps integers and text apart, so '0' is truthy); a
#: time of day unless it is NULL or ''.
STATE_CASE = """CASE
    WHEN locked_at IS NOT NULL THEN 'running'
    WHEN failed_at IS NOT NULL
        AND (last_finished_at IS NULL OR failed_at >= last_finished_at) THEN 'failed'
    WHEN (repeat_interval IS NOT NULL AND repeat_interval <> '' AND repeat_interval <> 0)
        OR COALESCE(repeat_at, '') <> ''
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

#: Exactly the STATE_COLUMNS; ``next_run_at`` only while the stored timing is the job's
#: (``_model.TIMING_FIELDS``, compared in the stored form: ``IS`` is equality with NULL equal to
#: NULL, and ``json()`` makes both skip_days texts compact). Fenced (``:lock_token``, integer
#: ms like ``locked_at``, NULL = unfenced): applied only while the stored lock is the token.
UPDATE_STATE = """
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


DEFAULT_SORT = [("next_run_at", "desc"), ("last_run_at", "desc")]


def render(template: str, *, table: str, prefix: str = "", **fragments: str) -> str:
    """Fill in the quoted table name, the state expression and fragments built from this
    module's own text.

    Callers pass only a validated identifier and fragments taken from :data:`FILTERS`,
    :data:`SORT_EXPRESSIONS` and fixed keywords, never user input.
    """
    return template.format(table=table, prefix=prefix, state=STATE_CASE, **fragments)


# -- filters (fragments of this module; every value a parameter) ---------------------------------


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidOptionError(f"{what} is not JSON ({error})") from None


def _common_criteria(options: JobsQueryOptions | RemoveJobsOptions) -> tuple[list[str], Params]:
    """Every given criterion ANDed: the folded id and name sets (``base.id_name_criteria``),
    then data containment."""
    criteria = base.id_name_criteria(options)
    clauses: list[str] = []
    params: Params = {}
    if criteria.ids is not None and len(criteria.ids) == 1:
        clauses.append(FILTERS["id"])
        params["id"] = criteria.ids[0]
    elif criteria.ids is not None:
        clauses.append(FILTERS["ids"])
        params["ids"] = _json_text(list(criteria.ids), "ids")
    if criteria.names is not None and len(criteria.names) == 1:
        clauses.append(FILTERS["name"])
        params["name"] = criteria.names[0]
    elif criteria.names is not None:
        clauses.append(FILTERS["names"])
        params["names"] = _json_text(list(criteria.names), "names")
    if criteria.not_names is not None:
        clauses.append(FILTERS["not_names"])
        params["not_names"] = _json_text(list(criteria.not_names), "not_names")
    if options.data is not None:
        clauses.append(FILTERS["data"])
        params["data"] = _json_text(options.data, "the data filter")
    return clauses, params


def remove_criteria(options: RemoveJobsOptions) -> tuple[list[str], Params]:
    return _common_criteria(options)


def query_criteria(options: JobsQueryOptions) -> tuple[list[str], Params]:
    clauses, params = _common_criteria(options)
    if options.search is not None:
        clauses.append(FILTERS["search"])
        params["search"] = _like_pattern(options.search)
    if not options.include_disabled:
        clauses.append(FILTERS["enabled"])
    if options.state == "paused":
        clauses.append(FILTERS["paused"])
    elif options.state is not None:
        clauses.append(FILTERS["state"])
        params["state"] = options.state
    return clauses, params


def _like_pattern(search: str) -> str:
    """A LIKE pattern matching ``search`` literally, as a substring, after lowercasing."""
    escaped = re.sub(r"([\\%_])", r"\\\1", search.lower())
    return f"%{escaped}%"


def order_by(options: JobsQueryOptions) -> str:
    spec = list(options.sort.items()) if options.sort else DEFAULT_SORT
    parts = [
        f"{SORT_EXPRESSIONS[key]} {'DESC' if direction == 'desc' else 'ASC'} NULLS LAST"
        for key, direction in spec
    ]
    return ", ".join([*parts, "rowid"])


def unique_prefilter(key: str, value: Any, index: int, params: Params) -> str | None:
    """A clause every job matching ``key == value`` satisfies, or None when SQL cannot say."""
    bound = _bindable(value)
    if bound is _UNBINDABLE:
        return None
    params[f"v{index}"] = bound
    if key.startswith("data."):
        parts = key.split(".")[1:]
        if any('"' in part for part in parts):
            return None
        params[f"p{index}"] = "$" + "".join(f'."{part}"' for part in parts)
        return f"json_extract(data, :p{index}) IS :v{index}"
    return f"{key} IS :v{index}" if key in UNIQUE_FIELDS else None


_UNBINDABLE = object()


def _bindable(value: Any) -> Any:
    if value is None or isinstance(value, str | float):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in INT64:
        return value
    return _UNBINDABLE


# -- parameters --------------------------------------------------------------------------------


def to_ms(value: datetime | None) -> int | None:
    """An instant as stored: integer milliseconds since the epoch (naive is read as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // MS


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + value * MS


def _int64(value: int, field: str) -> int:
    if value not in INT64:
        raise InvalidOptionError(f"{field} {value!r} is out of range (a signed 64-bit integer)")
    return value


def _interval(value: Any) -> str | int | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _int64(int(value), "repeat_interval")
    raise InvalidOptionError(
        f"invalid repeat_interval {value!r} (a string or a number of milliseconds)"
    )


def _skip_days(days: list[int] | None) -> str | None:
    if days is None:
        return None
    if any(isinstance(d, bool) or not isinstance(d, int) for d in days):
        raise InvalidOptionError(f"invalid skip_days {days!r} (weekday numbers 0-6)")
    return json.dumps(list(days))


def save_params(job: JobParameters[Any], data: str, last_modified_by: str | None) -> Params:
    """The SAVE_COLUMNS parameters of a job, as SQLite values."""
    return {
        "name": job.name,
        "priority": _int64(job.priority, "priority"),
        "next_run_at": to_ms(job.next_run_at),
        "type": job.type,
        "repeat_timezone": job.repeat_timezone,
        "repeat_interval": _interval(job.repeat_interval),
        "data": data,
        "repeat_at": job.repeat_at,
        "disabled": int(bool(job.disabled)),
        "debounce_started_at": to_ms(job.debounce_started_at),
        "last_modified_by": last_modified_by,
        "fork": int(bool(job.fork)),
        "start_date": to_ms(job.start_date),
        "end_date": to_ms(job.end_date),
        "skip_days": _skip_days(job.skip_days),
    }


def state_params(
    job: JobParameters[Any], last_modified_by: str | None, lock_token: datetime | None = None
) -> Params:
    """The STATE_COLUMNS parameters of a job plus its key, timing and lock token, as SQLite
    values."""
    return {
        "lock_token": to_ms(lock_token),
        "id": str(job.id),
        "name": job.name,
        "stamp": to_ms(utcnow()),
        "locked_at": to_ms(job.locked_at),
        "next_run_at": to_ms(job.next_run_at),
        "last_run_at": to_ms(job.last_run_at),
        "progress": job.progress,
        "fail_reason": truncate_reason(job.fail_reason),
        "fail_count": job.fail_count,
        "failed_at": to_ms(job.failed_at),
        "last_finished_at": to_ms(job.last_finished_at),
        "last_modified_by": last_modified_by,
        "repeat_interval": _interval(job.repeat_interval),
        "repeat_at": job.repeat_at,
        "repeat_timezone": job.repeat_timezone,
        "start_date": to_ms(job.start_date),
        "end_date": to_ms(job.end_date),
        "skip_days": _skip_days(job.skip_days),
    }


_TIMING_COLUMNS = ("repeat_interval", "repeat_at", "repeat_timezone", "start_date", "end_date")


def same_timing(row: Mapping[str, Any], values: Params) -> bool:
    """Whether a stored row's timing (``_model.TIMING_FIELDS``) is the one in ``values`` (the
    parameters of a save, in the stored form)."""
    if any(row[column] != values[column] for column in _TIMING_COLUMNS):
        return False
    stored, incoming = row["skip_days"], values["skip_days"]
    return stored == incoming or (
        stored is not None and incoming is not None and json.loads(stored) == json.loads(incoming)
    )
