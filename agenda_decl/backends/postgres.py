"""PostgreSQL storage and LISTEN/NOTIFY notifications, sharing Agenda v6's table and channels.

A Node Agenda v6 process and agenda-decl workers can share one table and one channel: the
table, columns, indexes, trigger, channel names and JSON payloads are Agenda's. Three nullable
columns are added to the table (``start_date``, ``end_date``, ``skip_days``); Node ignores
them. Everything runs in SQL: filters, the computed-state filter, sorting, paging, the
overview (one GROUP BY) and the claim of several jobs at once (one ``UPDATE ... FOR UPDATE
SKIP LOCKED`` statement).

    backend = PostgresBackend(connection_string="postgresql://app@db/jobs")
    agenda = Agenda(backend=backend)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, LiteralString
from urllib.parse import urlsplit

import attrs
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agenda_decl._clock import utcnow
from agenda_decl._convert import (
    job_from_row,
    notification_from_json,
    notification_to_json,
    parse_datetime,
    state_notification_from_json,
)
from agenda_decl._model import (
    JobNotification,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    JobStateNotification,
    JobWithState,
    RemoveJobsOptions,
    SortDirection,
    SortKey,
)
from agenda_decl.backends import _postgres_sql as q
from agenda_decl.backends import base
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError, JobNotFoundError
from agenda_decl.interfaces import AgendaBackend, JobRepository, NotificationChannel
from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions

log = logging.getLogger("agenda_decl.backends.postgres")

Pool = AsyncConnectionPool[Any]
Row = dict[str, Any]

#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_NOTIFY_BYTES = 7999
#: Derived names (``<t>_updated_at_trigger``, ...) must fit PostgreSQL's 63-byte identifiers.
MAX_TABLE_NAME = 63 - len("_updated_at_trigger")
_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
_CUT = "... [truncated]"


# -- names, ids, secrets ----------------------------------------------------------------------


def check_table_name(value: str) -> str:
    base.validate_identifier(value, field="table_name")
    if len(value) > MAX_TABLE_NAME:
        raise InvalidOptionError(
            f"invalid table_name: {value!r} is longer than {MAX_TABLE_NAME} characters "
            "(the index and trigger names derived from it must fit in 63)"
        )
    return value


def check_channel_name(value: str) -> str:
    """Letters, digits, ``_ : . -``; with ``:state`` appended it must fit 63 bytes."""
    if not isinstance(value, str) or not _CHANNEL.match(value) or len(value) > 63 - 6:
        raise InvalidOptionError(
            f"invalid channel_name: {value!r} (letters, digits, '_', ':', '.', '-', "
            "starting with a letter or underscore, at most 57 characters)"
        )
    return value


def _uuid(value: object) -> uuid.UUID | None:
    """The UUID an id stands for, or None: a malformed id matches nothing (no cast error)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _scrub(text: str, conninfo: str) -> str:
    """``text`` without the password of ``conninfo`` (libpq echoes parts of bad conninfos)."""
    secrets = set(re.findall(r"password\s*=\s*'?([^\s']+)", conninfo))
    with contextlib.suppress(ValueError):
        secrets.add(urlsplit(conninfo).password or "")
    for secret in sorted(secrets - {""}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _unavailable(conninfo: str, error: BaseException) -> BackendUnavailableError:
    reason = _scrub(str(error).strip() or type(error).__name__, conninfo)
    return BackendUnavailableError(
        f"cannot reach PostgreSQL at {base.redact_url(conninfo)}: {reason}"
    )


async def _connect(conninfo: str, timeout: float, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection, or BackendUnavailableError with a redacted URL."""
    try:
        return await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=max(1, round(timeout)), **kwargs
        )
    except (psycopg.Error, OSError) as error:
        raise _unavailable(conninfo, error) from None


async def _pool_target(pool: Pool) -> tuple[str, dict[str, Any]]:
    """The conninfo and keyword arguments a pool connects with (for a LISTEN connection)."""
    conninfo, kwargs = await _resolve(pool.conninfo), await _resolve(pool.kwargs)
    extra = {k: v for k, v in dict(kwargs or {}).items() if k not in ("autocommit", "row_factory")}
    return str(conninfo or ""), extra


async def _resolve(value: Any) -> Any:
    """A pool's conninfo/kwargs may be a value, a function, or an async function."""
    value = value() if callable(value) else value
    return await value if inspect.isawaitable(value) else value


_SERVER_NOW = q.render(q.SERVER_NOW)
_PROBE = q.render(q.PROBE)


@functools.cache
def _statement(template: LiteralString, table: str) -> sql.Composed:
    return q.render(template, table=sql.Identifier(table))


# -- rows -----------------------------------------------------------------------------------------


def _job(row: Mapping[str, Any]) -> JobParameters[Any]:
    values = dict(row)
    values["id"] = str(row["id"])
    interval = values.get("repeat_interval")
    # The column is text (Agenda's); an interval saved as milliseconds comes back as a number.
    if isinstance(interval, str) and interval.isascii() and interval.isdigit():
        values["repeat_interval"] = int(interval)
    return job_from_row(values)


def _with_state(row: Mapping[str, Any]) -> JobWithState[Any]:
    fields = attrs.asdict(_job(row), recurse=False)
    return JobWithState(**fields, state=row["state"])


def _claim_order(row: Mapping[str, Any]) -> tuple[bool, datetime, int, datetime, str]:
    never = datetime.max.replace(tzinfo=UTC)
    return (
        row["next_run_at"] is None,
        row["next_run_at"] or never,
        -row["priority"],
        row["created_at"] or never,
        str(row["id"]),
    )


def _save_values(job: JobParameters[Any], data: str, last_modified_by: str | None) -> Row:
    interval = job.repeat_interval
    return {
        "name": job.name,
        "priority": job.priority,
        "next_run_at": job.next_run_at,
        "type": job.type,
        "repeat_timezone": job.repeat_timezone,
        "repeat_interval": None if interval is None else str(interval),
        "data": data,
        "repeat_at": job.repeat_at,
        "disabled": bool(job.disabled),
        "fork": bool(job.fork),
        "last_modified_by": last_modified_by,
        "debounce_started_at": job.debounce_started_at,
        "start_date": job.start_date,
        "end_date": job.end_date,
        "skip_days": None if job.skip_days is None else list(job.skip_days),
    }


def _state_values(job: JobParameters[Any], key: uuid.UUID, by: str | None) -> Row:
    return {
        "id": key,
        "name": job.name,
        "locked_at": job.locked_at,
        "next_run_at": job.next_run_at,
        "last_run_at": job.last_run_at,
        "progress": job.progress,
        "fail_reason": base.truncate_reason(job.fail_reason),
        "fail_count": job.fail_count,
        "failed_at": job.failed_at,
        "last_finished_at": job.last_finished_at,
        "last_modified_by": by,
    }


# -- WHERE clauses --------------------------------------------------------------------------------


class _Where:
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


def _filter_ids(where: _Where, job_id: str | None, ids: Sequence[str] | None) -> bool:
    """Add the id criterion; False when it can match nothing (a malformed single id)."""
    if job_id is not None:
        key = _uuid(job_id)
        if key is None:
            return False
        where.add("id = {}", key)
    elif ids is not None:
        where.add("id = ANY({}::uuid[])", [k for k in map(_uuid, ids) if k is not None])
    return True


def _filter_names(where: _Where, options: JobsQueryOptions | RemoveJobsOptions) -> None:
    not_names = getattr(options, "not_names", None)
    if options.name is not None:
        where.add("name = {}", options.name)
    elif options.names is not None:
        where.add("name = ANY({}::text[])", list(options.names))
    elif not_names is not None:
        where.add("name <> ALL({}::text[])", list(not_names))


def _filter_data(where: _Where, data: Any) -> None:
    """JSON containment (``base.data_contains``); a scalar needle must equal the data (PG's
    ``@>`` would also find a scalar inside a top-level array)."""
    if data is None:
        return
    base.check_data_filter(data)
    text = base.encode_data(data, name="data filter")
    if isinstance(data, dict | list):
        where.add("data @> {}::jsonb", text)
    else:
        where.add("data = {}::jsonb", text)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _query_where(options: JobsQueryOptions) -> _Where | None:
    where = _Where()
    if not _filter_ids(where, options.id, options.ids):
        return None
    _filter_names(where, options)
    if options.search is not None:
        where.add("name ILIKE {} ESCAPE '\\'", f"%{_escape_like(options.search)}%")
    _filter_data(where, options.data)
    if not options.include_disabled:
        where.parts.append(sql.SQL("disabled IS NOT TRUE"))
    return where


def _remove_where(options: RemoveJobsOptions) -> _Where | None:
    if options.matches_nothing():
        return None
    where = _Where()
    if not _filter_ids(where, options.id, options.ids):
        return None
    _filter_names(where, options)
    _filter_data(where, options.data)
    return where


def _state_filter(state: str | None, params: Row) -> sql.Composable:
    if state is None:
        return sql.SQL("TRUE")
    if state == "paused":
        return sql.SQL("disabled IS TRUE")
    params["state"] = state
    return sql.SQL("state = %(state)s")


def _order_by(sort: Mapping[SortKey, SortDirection] | None) -> sql.Composable:
    spec = list(sort.items()) if sort else [("next_run_at", "desc"), ("last_run_at", "desc")]
    parts = [
        sql.SQL(q.SORT_EXPRESSIONS[key] + (" DESC" if direction == "desc" else " ASC"))
        + sql.SQL(" NULLS LAST")
        for key, direction in spec
    ]
    return sql.SQL(", ").join([*parts, sql.SQL(q.TIE_BREAK)])


_TEXT_FIELDS = ("name", "type", "repeat_timezone", "repeat_at", "repeat_interval")


def _unique_condition(key: str, value: Any) -> tuple[sql.Composable, list[Any]]:
    """One unique-key criterion, matching as ``base.matches_unique`` does."""
    path = key.split(".")
    if path[0] == "data":
        expr = sql.SQL("data") + sql.SQL("").join(sql.SQL(" -> %s::text") for _ in path[1:])
        if value is None:
            return sql.SQL("({0} IS NULL OR {0} = 'null'::jsonb)").format(expr), path[1:] * 2
        return sql.SQL("{} = %s::jsonb").format(expr), [*path[1:], json.dumps(value)]
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


# -- the repository -------------------------------------------------------------------------------


class PostgresJobRepository(JobRepository):
    """Jobs in one PostgreSQL table (Agenda v6's layout). Built from a connection string (the
    repository owns and closes its pool) or from an ``AsyncConnectionPool`` (never closed
    here; pass it open)."""

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        pool: Pool | None = None,
        table_name: str = "agenda_jobs",
        ensure_schema: bool = True,
        max_pool_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        if (connection_string is None) == (pool is None):
            raise InvalidOptionError("PostgresJobRepository needs connection_string or pool")
        self._conninfo = connection_string
        self._pool = pool
        self._owns_pool = pool is None
        self._table = check_table_name(table_name)
        self._ensure_schema = ensure_schema
        self._schema_ready = False
        self._max_pool_size = max_pool_size
        self._connect_timeout = connect_timeout

    def __repr__(self) -> str:
        where = base.redact_url(self._conninfo) if self._conninfo else "<pool>"
        return f"PostgresJobRepository({where!r}, table_name={self._table!r})"

    @property
    def table_name(self) -> str:
        return self._table

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise BackendUnavailableError("PostgresJobRepository is not connected")
        return self._pool

    async def connect(self) -> None:
        if self._pool is None and self._conninfo is not None:
            self._pool = await self._open_pool(self._conninfo)
        if self._ensure_schema and not self._schema_ready:
            async with self.pool.connection() as conn:
                await create_schema(conn, self._table)
            self._schema_ready = True

    async def _open_pool(self, conninfo: str) -> Pool:
        # One direct connection first: a clear, fast error when the server is unreachable.
        probe = await _connect(conninfo, self._connect_timeout)
        try:
            if self._ensure_schema:
                await create_schema(probe, self._table)
                self._schema_ready = True
        finally:
            await probe.close()
        pool: Pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=self._max_pool_size, open=False,
            kwargs={"autocommit": True}, name=f"agenda-decl:{self._table}",
        )
        await pool.open()
        return pool

    async def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def server_now(self) -> datetime | None:
        rows = await self._fetch(_SERVER_NOW, ())
        return parse_datetime(rows[0]["now"])

    # -- plumbing --------------------------------------------------------------------------------

    def _sql(self, template: LiteralString) -> sql.Composed:
        return _statement(template, self._table)

    async def _fetch(self, statement: sql.Composable, params: Any) -> list[Row]:
        async with self.pool.connection() as conn:
            return await _fetch(conn, statement, params)

    async def _execute(self, statement: sql.Composable, params: Any) -> int:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(statement, params)
            return int(cursor.rowcount)

    # -- reading -------------------------------------------------------------------------------

    async def query_jobs(self, options: JobsQueryOptions | None = None) -> JobsResult:
        options = options or JobsQueryOptions()
        where = _query_where(options)
        if where is None:
            return JobsResult(jobs=[], total=0)
        params = {**where.params, "now": utcnow()}
        state = _state_filter(options.state, params)
        table = sql.Identifier(self._table)
        page = q.render(q.QUERY, table=table, where=where.sql(), state_filter=state,
                        order=_order_by(options.sort))
        rows = await self._fetch(page, {**params, "limit": options.limit or None,
                                        "skip": options.skip})
        if rows or not options.skip:
            return JobsResult(jobs=[_with_state(r) for r in rows],
                              total=rows[0]["total"] if rows else 0)
        count = q.render(q.COUNT, table=table, where=where.sql(), state_filter=state)
        return JobsResult(jobs=[], total=(await self._fetch(count, params))[0]["total"])

    async def get_jobs_overview(self) -> list[JobsOverview]:
        rows = await self._fetch(self._sql(q.OVERVIEW), {"now": utcnow()})
        return [JobsOverview(**row) for row in rows]

    async def get_distinct_job_names(self) -> list[str]:
        return [row["name"] for row in await self._fetch(self._sql(q.DISTINCT_NAMES), ())]

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        key = _uuid(job_id)
        rows = await self._fetch(self._sql(q.SELECT_BY_ID), (key,)) if key else []
        return _job(rows[0]) if rows else None

    async def get_queue_size(self) -> int:
        return int((await self._fetch(self._sql(q.QUEUE_SIZE), ()))[0]["size"])

    # -- writing -------------------------------------------------------------------------------

    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        where = _remove_where(options)
        if where is None:
            return 0
        statement = q.render(q.DELETE, table=sql.Identifier(self._table), where=where.sql())
        return await self._execute(statement, where.params)

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=True)

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=False)

    async def _set_disabled(self, options: RemoveJobsOptions, *, disabled: bool) -> int:
        where = _remove_where(options)
        if where is None:
            return 0
        table = sql.Identifier(self._table)
        statement = q.render(q.SET_DISABLED, table=table, where=where.sql())
        return await self._execute(statement, {**where.params, "disabled": disabled})

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        values = _save_values(job, base.check_job(job), last_modified_by)
        if job.id is not None:
            key = _uuid(job.id)
            rows = await self._fetch(
                self._sql(q.UPDATE_SAVED), {**values, "id": key, "match_name": job.name}
            ) if key else []
            return _job(rows[0]) if rows else job
        if job.type == "single":
            return _job((await self._fetch(self._sql(q.UPSERT_SINGLE), {**values, "now": now}))[0])
        if job.unique:
            return await self._save_unique(job, values, now)
        return _job((await self._fetch(self._sql(q.INSERT), values))[0])

    async def _save_unique(
        self, job: JobParameters[Any], values: Row, now: datetime | None
    ) -> JobParameters[Any]:
        """Read, decide with the shared rules, write; one transaction, serialized per name."""
        assert job.unique
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(q.UNIQUE_LOCK, (f"agenda_decl:{self._table}:{job.name}",))
            now = now or parse_datetime((await _fetch(conn, _SERVER_NOW, ()))[0]["now"])
            stored = await self._select_unique(conn, job.name, job.unique)
            if stored is not None and base.is_insert_only(job):
                return stored
            if base.is_debounced(job):
                outcome = base.debounce_outcome(job, stored, now)
                values["next_run_at"] = outcome.next_run_at
                values["debounce_started_at"] = outcome.debounce_started_at
            if stored is None:
                return _job((await _fetch(conn, self._sql(q.INSERT), values))[0])
            match = {"id": _uuid(stored.id), "match_name": stored.name}
            return _job((await _fetch(conn, self._sql(q.UPDATE_SAVED), {**values, **match}))[0])

    async def _select_unique(
        self, conn: psycopg.AsyncConnection[Any], name: str, unique: Mapping[str, Any]
    ) -> JobParameters[Any] | None:
        conditions = [_unique_condition(key, value) for key, value in unique.items()]
        statement = q.render(
            q.SELECT_UNIQUE,
            table=sql.Identifier(self._table),
            conditions=sql.SQL(" AND ").join(condition for condition, _ in conditions),
        )
        params = [name, *(p for _, condition_params in conditions for p in condition_params)]
        rows = await _fetch(conn, statement, params)
        return _job(rows[0]) if rows else None

    async def save_job_state(
        self, job: JobParameters[Any], *, last_modified_by: str | None = None
    ) -> None:
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        key = _uuid(job.id)
        values = _state_values(job, key, last_modified_by) if key else None
        if values is None or await self._execute(self._sql(q.UPDATE_STATE), values) != 1:
            raise JobNotFoundError(
                f"job ID {job.id} (name: {job.name}) cannot be updated in the database, "
                "maybe it does not exist anymore?"
            )

    # -- locking -------------------------------------------------------------------------------

    async def lock_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any] | None:
        key = _uuid(job.id) if job.id else None
        if key is None:
            return None
        params = {"id": key, "name": job.name, "next_run_at": job.next_run_at, "now": now,
                  "by": last_modified_by}
        rows = await self._fetch(self._sql(q.LOCK), params)
        return _job(rows[0]) if rows else None

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        key = _uuid(job.id) if job.id else None
        if key is not None:
            await self._execute(self._sql(q.UNLOCK), (key,))

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        keys = [key for key in map(_uuid, job_ids) if key is not None]
        if keys:
            await self._execute(self._sql(q.UNLOCK_MANY), (keys,))

    async def get_next_job_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> JobParameters[Any] | None:
        jobs = await self.get_next_jobs_to_run(
            job_name, next_scan_at, lock_deadline, 1, now, last_modified_by=last_modified_by
        )
        return jobs[0] if jobs else None

    async def get_next_jobs_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        limit: int,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> list[JobParameters[Any]]:
        if limit <= 0:
            return []
        params = {"name": job_name, "next_scan_at": next_scan_at, "lock_deadline": lock_deadline,
                  "limit": limit, "now": now, "by": last_modified_by}
        rows = await self._fetch(self._sql(q.CLAIM), params)
        return [_job(row) for row in sorted(rows, key=_claim_order)]


async def _fetch(conn: psycopg.AsyncConnection[Any], statement: Any, params: Any) -> list[Row]:
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
        await conn.execute(q.SCHEMA_LOCK, (f"agenda_decl:schema:{table}",))
        found = await _existing(conn, name.as_string(conn), trigger)
        if not found["has_table"]:
            await conn.execute(q.render(q.CREATE_TABLE, table=name))
        if not {"debounce_started_at", "start_date", "end_date", "skip_days"} <= found["columns"]:
            await conn.execute(q.render(q.ADD_COLUMNS, table=name))
        for suffix, template in q.INDEXES:
            if table + suffix not in found["indexes"]:
                index = sql.Identifier(table + suffix)
                await conn.execute(q.render(template, table=name, index=index))
        if not found["has_trigger"]:
            await conn.execute(q.render(q.TRIGGER_FUNCTION, function=function))
            await conn.execute(q.render(q.CREATE_TRIGGER, table=name, function=function,
                                        trigger=sql.Identifier(trigger)))


async def _existing(conn: psycopg.AsyncConnection[Any], table: str, trigger: str) -> Row:
    rows = await _fetch(conn, q.EXISTING, {"table": table, "trigger": trigger})
    found = rows[0]
    return {**found, "columns": set(found["columns"]), "indexes": set(found["indexes"])}


# -- notifications --------------------------------------------------------------------------------


def _state_payload(notification: JobStateNotification) -> str | None:
    """The JSON of a state notification, its ``error`` cut to fit NOTIFY's limit (None when
    even that is too large)."""
    payload = notification_to_json(notification)
    error = notification.error or ""
    while len(payload.encode()) > MAX_NOTIFY_BYTES and error:
        excess = len(payload.encode()) - MAX_NOTIFY_BYTES
        error = error[: max(0, len(error) - excess - len(_CUT))]
        shorter = attrs.evolve(notification, error=error + _CUT if error else None)
        payload = notification_to_json(shorter)
    return payload if len(payload.encode()) <= MAX_NOTIFY_BYTES else None


class _Listener:
    """One LISTEN connection: hands notifications on, probes liveness between waits, and
    reports its death once through ``lost``."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        channels: tuple[str, ...],
        deliver: Callable[[psycopg.Notify], None],
        lost: Callable[[BaseException], None],
        *,
        probe_interval: float,
        probe_timeout: float,
    ) -> None:
        self.conn = conn
        self._channels = channels
        self._deliver = deliver
        self._lost = lost
        self._interval = probe_interval
        self._timeout = probe_timeout
        self._probe_task: asyncio.Future[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading (after LISTEN: the notifies loop holds the connection's lock)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def listen(self, channels: Sequence[str]) -> None:
        for channel in channels:
            await self.conn.execute(q.render(q.LISTEN, channel=sql.Identifier(channel)))

    async def _run(self) -> None:
        try:
            while True:
                async for note in self.conn.notifies(timeout=self._interval):
                    self._deliver(note)
                await self._probe()
        except Exception as error:
            self._lost(error)

    async def _probe(self) -> None:
        """``SELECT`` on the LISTEN connection; a half-open socket never answers. A silently
        lost LISTEN (N3) is re-issued."""
        self._probe_task = asyncio.ensure_future(self.conn.execute(_PROBE))
        done, _ = await asyncio.wait({self._probe_task}, timeout=self._timeout)
        if not done:
            raise ConnectionError(f"the LISTEN connection did not answer within {self._timeout} s")
        cursor, self._probe_task = self._probe_task.result(), None
        row = await cursor.fetchone()
        listening = set(row[0] if row else ())
        await self.listen([c for c in self._channels if c not in listening])

    async def close(self) -> None:
        """Stop; a probe still in flight is cancelled before the connection is closed (closing
        first would pull the socket from under it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._probe_task is not None and not self._probe_task.done():
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._probe_task
        with contextlib.suppress(Exception):
            await self.conn.close()


class PostgresNotificationChannel(BaseNotificationChannel):
    """LISTEN/NOTIFY on Agenda's channels (``<channel_name>`` and ``<channel_name>:state``).

    A dedicated connection LISTENs; every ``probe_interval`` seconds it must answer a query
    within ``probe_timeout`` or it is treated as dead and reopened with the base backoff.
    Publishing goes through a pool: the backend's, the one given, or a small one of its own.
    Delivery is at most once: the scheduler's poll covers whatever is lost.
    """

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        pool: Pool | None = None,
        channel_name: str = "agenda:jobs",
        reconnect: ReconnectOptions | None = None,
        probe_interval: float = 5.0,
        probe_timeout: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if connection_string is None and pool is None:
            raise InvalidOptionError("PostgresNotificationChannel needs connection_string or pool")
        super().__init__(channel_name=check_channel_name(channel_name), reconnect=reconnect)
        self.state_channel_name = f"{channel_name}:state"
        self._conninfo = connection_string
        self._shared_pool = pool
        self._own_pool: Pool | None = None
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._connect_timeout = connect_timeout
        self._listener: _Listener | None = None
        self._queue: asyncio.Queue[psycopg.Notify] = asyncio.Queue(maxsize=10_000)
        self._dispatcher: asyncio.Task[None] | None = None
        self._disposals: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        where = base.redact_url(self._conninfo) if self._conninfo else "<pool>"
        return (f"PostgresNotificationChannel({where!r}, channel_name={self.channel_name!r}, "
                f"state={self.state!r})")

    @property
    def supports_state_notifications(self) -> bool:
        return True

    @property
    def listen_pid(self) -> int | None:
        """The server process id of the LISTEN connection (for diagnostics and tests)."""
        return self._listener.conn.info.backend_pid if self._listener else None

    def use_pool(self, pool: Pool) -> None:
        """Publish (and find the server) through ``pool``, which this channel never closes."""
        self._shared_pool = pool

    # -- connection ------------------------------------------------------------------------------

    async def _target(self) -> tuple[str, dict[str, Any]]:
        if self._conninfo is not None:
            return self._conninfo, {}
        assert self._shared_pool is not None
        return await _pool_target(self._shared_pool)

    async def _open(self) -> None:
        await self._close()
        conninfo, kwargs = await self._target()
        conn = await _connect(conninfo, self._connect_timeout, **kwargs)
        channels = (self.channel_name, self.state_channel_name)
        listener = _Listener(conn, channels, self._enqueue, self.connection_lost,
                             probe_interval=self._probe_interval, probe_timeout=self._probe_timeout)
        try:
            await listener.listen(channels)
            await self._publishing_pool()
        except Exception as error:
            await listener.close()
            raise _unavailable(conninfo, error) from None
        self._listener = listener
        listener.start()
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _close(self) -> None:
        """Drop the LISTEN connection in the background (a dead one may take a while to let
        go); ``disconnect`` waits for it."""
        listener, self._listener = self._listener, None
        if listener is not None:
            task = asyncio.get_running_loop().create_task(listener.close())
            self._disposals.add(task)
            task.add_done_callback(self._disposals.discard)

    async def disconnect(self) -> None:
        try:
            await super().disconnect()
        finally:
            await asyncio.gather(*self._disposals, return_exceptions=True)
            if self._dispatcher is not None:
                self._dispatcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._dispatcher
                self._dispatcher = None
            if self._own_pool is not None:
                pool, self._own_pool = self._own_pool, None
                await pool.close()

    async def _publishing_pool(self) -> Pool:
        if self._shared_pool is not None:
            return self._shared_pool
        if self._own_pool is None:
            assert self._conninfo is not None
            pool: Pool = AsyncConnectionPool(self._conninfo, min_size=1, max_size=2, open=False,
                                             kwargs={"autocommit": True}, name="agenda-decl:notify")
            await pool.open(wait=True, timeout=self._connect_timeout)
            self._own_pool = pool
        return self._own_pool

    # -- receiving -------------------------------------------------------------------------------

    def _enqueue(self, note: psycopg.Notify) -> None:
        # The listener never waits on subscribers: a slow one must not delay the probe.
        try:
            self._queue.put_nowait(note)
        except asyncio.QueueFull:
            log.warning("dropping a notification on %r: subscribers are behind", note.channel)

    async def _dispatch(self) -> None:
        while True:
            note = await self._queue.get()
            await self._deliver(note)

    async def _deliver(self, note: psycopg.Notify) -> None:
        if not note.payload or note.channel not in (self.channel_name, self.state_channel_name):
            return
        try:
            parsed = self._parse(note)
        except Exception as error:  # any DB user can NOTIFY: a hint, never trusted (N7)
            log.warning("ignoring a malformed notification on %r (%s): %.200r",
                        note.channel, type(error).__name__, note.payload)
            return
        if isinstance(parsed, JobNotification):
            await self.notify_handlers(parsed)
        else:
            await self.notify_state_handlers(parsed)

    def _parse(self, note: psycopg.Notify) -> JobNotification | JobStateNotification:
        if note.channel == self.channel_name:
            return notification_from_json(note.payload)
        return state_notification_from_json(note.payload)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, notification: JobNotification) -> None:
        self.require_connected("publish")
        payload = notification_to_json(notification)
        if len(payload.encode()) > MAX_NOTIFY_BYTES:
            log.warning("not publishing the notification of job %r: %d bytes is over the "
                        "NOTIFY limit", notification.job_name, len(payload.encode()))
            return
        await self._notify(self.channel_name, payload)

    async def publish_state(self, notification: JobStateNotification) -> None:
        self.require_connected("publish state")
        payload = _state_payload(notification)
        if payload is None:
            log.warning("not publishing the %s notification of job %r: over the NOTIFY limit",
                        notification.type, notification.job_name)
            return
        await self._notify(self.state_channel_name, payload)

    async def _notify(self, channel: str, payload: str) -> None:
        pool = await self._publishing_pool()
        async with pool.connection() as conn:
            await conn.execute(q.NOTIFY, (channel, payload))


# -- the backend ----------------------------------------------------------------------------------


class PostgresBackend(AgendaBackend):
    """Storage plus LISTEN/NOTIFY on one PostgreSQL database.

    Give ``connection_string`` (the backend owns its pool and closes it on ``disconnect``) or
    an open ``pool`` (``psycopg_pool.AsyncConnectionPool``, never closed here).
    """

    name = "PostgreSQL"

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        pool: Pool | None = None,
        table_name: str = "agenda_jobs",
        ensure_schema: bool = True,
        channel_name: str = "agenda:jobs",
        disable_notifications: bool = False,
        max_pool_size: int = 10,
        connect_timeout: float = 10.0,
        reconnect: ReconnectOptions | None = None,
    ) -> None:
        if (connection_string is None) == (pool is None):
            raise InvalidOptionError(
                "PostgresBackend requires pool or connection_string (exactly one of them)"
            )
        self._repository = PostgresJobRepository(
            connection_string=connection_string, pool=pool, table_name=table_name,
            ensure_schema=ensure_schema, max_pool_size=max_pool_size,
            connect_timeout=connect_timeout,
        )
        self._channel = None if disable_notifications else PostgresNotificationChannel(
            connection_string=connection_string, pool=pool, channel_name=channel_name,
            reconnect=reconnect, connect_timeout=connect_timeout,
        )
        self._owns = pool is None
        self._where = base.redact_url(connection_string) if connection_string else "<pool>"

    def __repr__(self) -> str:
        return f"PostgresBackend({self._where!r}, table_name={self._repository.table_name!r})"

    @property
    def repository(self) -> PostgresJobRepository:
        return self._repository

    @property
    def notification_channel(self) -> NotificationChannel | None:
        return self._channel

    @property
    def owns_connection(self) -> bool:
        return self._owns

    async def connect(self) -> None:
        await self._repository.connect()
        if self._channel is not None:
            self._channel.use_pool(self._repository.pool)

    async def disconnect(self) -> None:
        await self._repository.close()
