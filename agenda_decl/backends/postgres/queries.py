"""The queries of the PostgreSQL store: the statements (named blocks of ``queries.sql``), the
fragments a query is composed of, the parameters each statement binds, and the schema.

Templates use ``{table}`` (and, in the schema, the index/trigger/function names) as
``psycopg.sql.Identifier`` placeholders, filled in by :func:`render`; every value is a bound
parameter (``%(name)s`` or ``%s``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from agenda_decl._clock import truncate_ms
from agenda_decl._convert import notification_to_json
from agenda_decl._job_data import check_data_filter, encode_data, truncate_reason
from agenda_decl._model import (
    Announcement,
    JobParameters,
    JobsQueryOptions,
    RemoveJobsOptions,
    SortDirection,
    SortKey,
    wake_ups,
)
from agenda_decl._named_blocks import load_named_blocks
from agenda_decl.backends import base
from agenda_decl.errors import InvalidOptionError
from agenda_decl.notifications.postgres import MAX_NOTIFY_BYTES

Row = dict[str, Any]
#: A statement as the repository runs it: composed, or rendered to bytes once (``_statement``).
Statement = sql.Composed | sql.SQL | bytes
#: One row to insert and, when it is announced in the same statement, by whom.
Insert = tuple[Row, Announcement | None]

#: The statements, by the names of their blocks in ``queries.sql``.
STATEMENTS = load_named_blocks("agenda_decl.backends.postgres", "queries.sql")
#: The name suffixes of the indexes, the statement of each is ``create<suffix>``: Agenda's
#: four, then agenda-decl's own (the claim's and the job list's: see ``queries.sql``).
INDEX_SUFFIXES = (
    "_find_and_lock_idx", "_single_job_idx", "_locked_at_idx", "_next_run_at_idx",
    "_claim_due_idx", "_next_run_desc_idx", "_next_run_asc_idx", "_failed_idx", "_name_idx",
)

#: Derived names (``<t>_updated_at_trigger``, ...) must fit PostgreSQL's 63-byte identifiers.
MAX_TABLE_NAME = 63 - len("_updated_at_trigger")


def check_table_name(value: str) -> str:
    base.validate_identifier(value, field="table_name")
    if len(value) > MAX_TABLE_NAME:
        raise InvalidOptionError(
            f"invalid table_name: {value!r} is longer than {MAX_TABLE_NAME} characters "
            "(the index and trigger names derived from it must fit in 63)"
        )
    return value


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


def render(name: str, **parts: sql.Composable) -> sql.Composed:
    """The statement ``name`` with its ``{placeholders}`` filled with identifiers or composed
    fragments (``{state}``: the ``state_case`` block)."""
    template = STATEMENTS[name]
    if "{state}" in template:
        parts.setdefault("state", sql.SQL(STATEMENTS["state_case"]))
    if "{claimed}" in template:
        parts.setdefault("claimed", sql.SQL(", ").join(
            sql.Identifier("t", column) for column in CLAIM_COLUMNS[:-1]))
    return sql.SQL(template).format(**parts)


# -- composing statements -----------------------------------------------------------------------


def job_uuid(value: object) -> uuid.UUID | None:
    """The UUID an id stands for, or None: a malformed id matches nothing (no cast error)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


#: A UUID as ``str(uuid.UUID)`` writes it: how every id read from the table comes back.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def job_key(value: object) -> str | None:
    """The canonical text of the UUID an id stands for, or None (as :func:`job_uuid`). An id
    read from the table is canonical already: checked by a match, without parsing it into a
    UUID (a state write converts every job's id, and the parse was a visible part of it)."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value
    key = job_uuid(value)
    return None if key is None else str(key)


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


#: What each state implies of one indexed column, ANDed before the state expression so that
#: the planner can seek (a queued job is due: next_run_at <= now; a completed one has none)
#: instead of computing the state of every row. Read off state_case: a state is only reached
#: when the column is so. "repeating" implies nothing indexed.
STATE_IMPLIES: dict[str, LiteralString] = {
    "running": "locked_at IS NOT NULL",
    "failed": "failed_at IS NOT NULL",
    "scheduled": "next_run_at > %(now)s::timestamptz",
    "queued": "next_run_at <= %(now)s::timestamptz",
    "completed": "next_run_at IS NULL",
}


def state_filter(state: str | None, params: Row) -> sql.Composable:
    if state is None:
        return sql.SQL("TRUE")
    if state == "paused":
        return sql.SQL("disabled IS TRUE")
    params["state"] = state
    # A comparison of a CASE with a value the planner takes for one row in 200, and it then
    # sorts every match instead of walking an index in the page's order to the limit; a CASE
    # of booleans it takes for one in two, and the condition the state implies sizes it.
    computed = (sql.SQL("CASE WHEN (") + sql.SQL(STATEMENTS["state_case"])
                + sql.SQL(") = %(state)s THEN TRUE ELSE FALSE END"))
    implied = STATE_IMPLIES.get(state)
    return computed if implied is None else sql.SQL(implied + " AND ") + computed


def page_statements(
    options: JobsQueryOptions, table: str
) -> tuple[sql.Composed, sql.Composed, Row] | None:
    """A query's page and count statements and their parameters but ``now`` (the caller's
    clock): what ``query_jobs`` runs, and what the plan tests explain. None when the filters
    match nothing."""
    where = query_where(options)
    if where is None:
        return None
    params = {**where.params, "limit": options.limit or None, "skip": options.skip}
    condition = sql.SQL(" AND ").join([where.sql(), state_filter(options.state, params)])
    name = sql.Identifier(table)
    scanned = options.data is not None or options.search is not None
    statement = "query" if not options.limit else "query_page_counted" if scanned else "query_page"
    page = render(statement, table=name, where=condition, order=order_by(options.sort))
    return page, render("count", table=name, where=condition), params


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


async def fetch(
    conn: psycopg.AsyncConnection[Any], statement: Any, params: Any, *, hot: bool = False
) -> list[Row]:
    """The rows of one statement. ``hot``: a statement of a worker's every batch of jobs
    (claims, state writes), prepared on the server at its first run on a connection instead of
    psycopg's sixth (with ten pooled connections and a variant per parameter types that is
    dozens of parses and plans per drain); nothing is prepared behind a transaction pooler
    (``prepare_threshold`` None wins over ``prepare=True``)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(statement, params, prepare=True if hot else None)
        return await cursor.fetchall() if cursor.description else []


async def fetch_tuples(
    conn: psycopg.AsyncConnection[Any], statement: Any, params: Any
) -> list[tuple[Any, ...]]:
    """The rows of a hot statement (see :func:`fetch`) whose columns the caller knows, as
    tuples: a dict row costs the column names of every row (and the description of the
    result, an object per column) of every claim."""
    async with conn.cursor() as cursor:
        await cursor.execute(statement, params, prepare=True)
        return await cursor.fetchall()


#: Every column of the table @agendajs/postgres-backend 3.0.6 creates, with its type as
#: ``pg_type.typname`` (information_schema's ``udt_name``).
COLUMN_TYPES: dict[str, str] = {
    "id": "uuid", "name": "varchar", "priority": "int4", "next_run_at": "timestamptz",
    "type": "varchar", "locked_at": "timestamptz", "last_finished_at": "timestamptz",
    "failed_at": "timestamptz", "fail_count": "int4", "fail_reason": "text",
    "repeat_timezone": "varchar", "last_run_at": "timestamptz", "repeat_interval": "varchar",
    "data": "jsonb", "repeat_at": "varchar", "disabled": "bool", "progress": "float4",
    "fork": "bool", "last_modified_by": "varchar", "debounce_started_at": "timestamptz",
    "start_date": "timestamptz", "end_date": "timestamptz", "skip_days": "jsonb",
    "created_at": "timestamptz", "updated_at": "timestamptz",
}
#: The columns of the claim's rows, in this order (``{claimed}``, then whether the lock was
#: stale): read as tuples, no dict per row (``rows.claimed_jobs``).
CLAIM_COLUMNS: tuple[str, ...] = (*COLUMN_TYPES, "claimed_stale")
#: The columns ``add_columns`` adds to a table of an earlier release.
ADDED_COLUMNS = ("debounce_started_at", "start_date", "end_date", "skip_days")
#: ``skip_days`` as agenda-decl 0.1 made it (INTEGER[]); ``migrate_skip_days`` converts it.
LEGACY_SKIP_DAYS = "_int4"

log = logging.getLogger("agenda_decl.backends.postgres")


async def create_schema(conn: psycopg.AsyncConnection[Any], table: str) -> None:
    """Create what is missing of Agenda's table, indexes and trigger, migrate a table made by
    agenda-decl 0.1 (``skip_days`` INTEGER[] becomes JSONB), and refuse a table whose
    columns have other types than Node's.

    Only missing objects are created: ``CREATE INDEX IF NOT EXISTS`` and ``ALTER TABLE`` take
    table locks even when there is nothing to do, and workers (Node ones too) may be busy.
    Everything runs in one transaction under an advisory lock, so processes that connect
    together do it once.
    """
    name = sql.Identifier(table)
    trigger = f"{table}_updated_at_trigger"
    function = sql.Identifier(f"update_{table.lower()}_updated_at")  # Agenda leaves it unquoted
    async with conn.transaction():
        await conn.execute(STATEMENTS["schema_lock"], (f"agenda_decl:schema:{table}",))
        found = await _existing(conn, name.as_string(conn), trigger)
        if not found["has_table"]:
            await conn.execute(render("create_table", table=name))
        elif not set(ADDED_COLUMNS) <= set(found["columns"]):
            await conn.execute(render("add_columns", table=name))
        if found["columns"].get("skip_days") == LEGACY_SKIP_DAYS:
            log.warning("migrating %s.skip_days from INTEGER[] to JSONB, as Node Agenda stores "
                        "it (this rewrites the table under an exclusive lock)", table)
            await conn.execute(render("migrate_skip_days", table=name))
        found = await _existing(conn, name.as_string(conn), trigger)
        check_column_types(table, found["columns"])
        for suffix in INDEX_SUFFIXES:
            if table + suffix not in found["indexes"]:
                index = sql.Identifier(table + suffix)
                await conn.execute(render(f"create{suffix}", table=name, index=index))
        if not found["has_trigger"]:
            await conn.execute(render("trigger_function", function=function))
            await conn.execute(render("create_trigger", table=name, function=function,
                                        trigger=sql.Identifier(trigger)))


def check_column_types(table: str, columns: Mapping[str, str]) -> None:
    """Raise when a column of Node's table is missing or of another type: every statement
    here, and Node's, binds Node's types (a wrong one fails only later, write by write)."""
    wrong = [
        f"{column} is {columns.get(column, 'missing')}, expected {kind}"
        for column, kind in COLUMN_TYPES.items()
        if columns.get(column) != kind
    ]
    if wrong:
        raise InvalidOptionError(
            f"table {table!r} is not the one Node Agenda's PostgreSQL backend creates: "
            + "; ".join(wrong)
        )


async def _existing(conn: psycopg.AsyncConnection[Any], table: str, trigger: str) -> Row:
    rows = await fetch(conn, STATEMENTS["existing_schema"], {"table": table, "trigger": trigger})
    found = rows[0]
    return {**found, "columns": dict(found["columns"]), "indexes": set(found["indexes"])}


# -- parameters ---------------------------------------------------------------------------------


def _skip_days(days: Sequence[int] | None) -> str | None:
    """``skip_days`` as Node stores it: a JSON array (bound as ``::jsonb``), or NULL."""
    return None if days is None else json.dumps(list(days), separators=(",", ":"))


def save_values(job: JobParameters[Any], data: str, last_modified_by: str | None) -> Row:
    """The parameters of the save statements. A job without data stores SQL NULL, as Node
    does for ``data: undefined`` (both read back as no data)."""
    interval = job.repeat_interval
    return {
        "name": job.name,
        "priority": job.priority,
        "next_run_at": job.next_run_at,
        "type": job.type,
        "repeat_timezone": job.repeat_timezone,
        "repeat_interval": None if interval is None else str(interval),
        "data": None if job.data is None else data,
        "repeat_at": job.repeat_at,
        "disabled": bool(job.disabled),
        "fork": bool(job.fork),
        "last_modified_by": last_modified_by,
        "debounce_started_at": job.debounce_started_at,
        "start_date": job.start_date,
        "end_date": job.end_date,
        "skip_days": _skip_days(job.skip_days),
    }


def state_values(
    job: JobParameters[Any], key: uuid.UUID, by: str | None, lock_token: datetime | None
) -> Row:
    return {
        "lock_token": None if lock_token is None else truncate_ms(lock_token),
        "id": key,
        "name": job.name,
        "locked_at": job.locked_at,
        "next_run_at": job.next_run_at,
        "last_run_at": job.last_run_at,
        "progress": job.progress,
        "fail_reason": truncate_reason(job.fail_reason),
        "fail_count": job.fail_count,
        "failed_at": job.failed_at,
        "last_finished_at": job.last_finished_at,
        "last_modified_by": by,
        **_timing_values(job),
    }


def _timing_values(job: JobParameters[Any]) -> Row:
    """The job's ``TIMING_FIELDS`` as stored (the interval as text); state writes compare them."""
    interval = job.repeat_interval
    return {
        "repeat_interval": None if interval is None else str(interval),
        "repeat_at": job.repeat_at,
        "repeat_timezone": job.repeat_timezone,
        "start_date": job.start_date,
        "end_date": job.end_date,
        "skip_days": _skip_days(job.skip_days),
    }


def insert_columns(batch: Sequence[Row], ids: Sequence[uuid.UUID]) -> Row:
    """``INSERT_MANY`` parameters, rows in ``batch`` order (see :func:`shared_or_arrays`)."""
    return {"id": list(ids),
            **shared_or_arrays({name: [row[name] for row in batch] for name in batch[0]})}


def shared_or_arrays(columns: Mapping[str, list[Any]]) -> Row:
    """The parameters of a statement that takes one array per column (``insert_many``,
    ``update_states``): for each column, the value every row has (``<column>_all``, the array
    NULL) or, when the rows differ, one array (the value NULL). psycopg dumps an array element
    by element, the largest part of a batch's Python cost, and the rows of a batch share most
    of their columns."""
    params: Row = {}
    for name, values in columns.items():
        first = values[0]
        if values.count(first) == len(values):
            params[name], params[f"{name}_all"] = None, first
        else:
            params[name], params[f"{name}_all"] = values, None
    return params


@functools.cache
def statement(name: str, table: str) -> bytes:
    """The statement ``name`` for ``table`` as psycopg sends it: composed once, not at every
    execute (the table name is a plain ASCII identifier, so its bytes are the same in every
    client encoding)."""
    return render(name, table=sql.Identifier(table)).as_bytes()


def insert_for(
    table: str, channel: str | None, batch: Sequence[Insert], ids: Sequence[uuid.UUID],
    payloads: Sequence[str | None],
) -> tuple[Statement, Row]:
    """The statement that inserts ``batch`` under ``ids`` and announces its ``payloads`` on
    ``channel``, with its parameters: ``insert_one`` for a lone job, else ``insert_many``
    (``announced_insert`` when announcing)."""
    if len(batch) == 1:
        return statement("insert_one", table), {
            **batch[0][0], "id": ids[0], "channel": channel, "payload": payloads[0]}
    columns = insert_columns([values for values, _ in batch], ids)
    announced = any(payload is not None for payload in payloads)
    if announced:
        columns.update(channel=channel, payload=list(payloads))
    return insert_statement(table, announced=announced), columns


@functools.cache
def insert_statement(table: str, *, announced: bool) -> bytes:
    """``insert_many`` returning the ids (every insert knows what it stored: reading it back
    would cost more than the insert), with its NOTIFY (``announced_insert``) when
    announced; as bytes, composed once (the table name is a plain ASCII identifier)."""
    insert = render("insert_many", table=sql.Identifier(table), returning=sql.SQL("id"))
    return (render("announced_insert", insert=insert) if announced else insert).as_bytes()


def inserted(
    jobs: Sequence[JobParameters[Any]], keys: Sequence[uuid.UUID], data: Sequence[str],
    by: str | None,
) -> list[JobParameters[Any]]:
    """What plain inserts stored (``base.inserted_all``), with the interval as it reads back
    (the column is text: an interval of digits is a number of milliseconds)."""
    stored = base.inserted_all(jobs, [str(key) for key in keys], data, by)
    for job in stored:
        interval = job.repeat_interval
        if isinstance(interval, str) and interval.isascii() and interval.isdigit():
            job.repeat_interval = int(interval)
    return stored


def announce_payloads(batch: Sequence[Insert], ids: Sequence[uuid.UUID]) -> list[str | None]:
    """The NOTIFY payload of each row of an insert (None: not announced): for the rows that
    come with an ``Announcement``, one per job name (``wake_ups``), exactly as the channel's
    ``publish`` sends it. One over NOTIFY's limit is left out, as ``publish`` leaves it out."""
    payloads: list[str | None] = [None] * len(batch)
    announced = [index for index, (_, announce) in enumerate(batch) if announce is not None]
    rows = [batch[index][0] for index in announced]
    for chosen in wake_ups([(row["name"], row["next_run_at"]) for row in rows]):
        index = announced[chosen]
        values, announce = batch[index]
        assert announce is not None
        payload = notification_to_json(announce.notification(
            str(ids[index]), values["name"], values["next_run_at"], values["priority"]))
        if len(payload.encode()) <= MAX_NOTIFY_BYTES:
            payloads[index] = payload
    return payloads


def states_columns(
    jobs: Mapping[str, JobParameters[Any]], by: str | None,
    lock_tokens: Mapping[str, datetime],
) -> Row:
    """``save_job_states`` parameters: the ids (their canonical text, ``job_key``: the
    statement casts them) and every other column shared or as an array
    (:func:`shared_or_arrays`), in the same job order."""
    values = list(jobs.values())
    tokens = [lock_tokens.get(str(job.id)) for job in values]
    columns = shared_or_arrays({
        "lock_token": [None if token is None else truncate_ms(token) for token in tokens],
        "name": [job.name for job in values],
        "locked_at": [job.locked_at for job in values],
        "next_run_at": [job.next_run_at for job in values],
        "last_run_at": [job.last_run_at for job in values],
        "progress": [None if job.progress is None else float(job.progress) for job in values],
        "fail_reason": [truncate_reason(job.fail_reason) for job in values],
        "fail_count": [job.fail_count for job in values],
        "failed_at": [job.failed_at for job in values],
        "last_finished_at": [job.last_finished_at for job in values],
        "repeat_interval": [None if job.repeat_interval is None else str(job.repeat_interval)
                            for job in values],
        "repeat_at": [job.repeat_at for job in values],
        "repeat_timezone": [job.repeat_timezone for job in values],
        "start_date": [job.start_date for job in values],
        "end_date": [job.end_date for job in values],
        "skip_days": [_skip_days(job.skip_days) for job in values],
    })
    return {"id": list(jobs), "last_modified_by": by, **columns}
