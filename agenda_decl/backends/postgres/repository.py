"""The PostgreSQL job repository, in Agenda v6's table (see ``queries.sql``).

Everything runs in SQL: filters, the computed-state filter, sorting, paging, the overview (one
GROUP BY) and the claim of several jobs at once (one ``UPDATE ... FOR UPDATE SKIP LOCKED``
statement).

Through an outage (a restart, a failover, every connection terminated) each statement is
repeated for up to ``retry_for`` (``connectors.postgres.run``), and every statement is safe to
repeat: reads; claims and state writes as ``backends.base.repeats`` says; an insert carries
an id made here before the first attempt and skips a row that exists (``ON CONFLICT (id) DO
NOTHING``), so a repeat after a lost reply finds the job the first attempt stored instead of
storing a second one; single jobs are upserts and unique saves decide again from what is
stored; updates by id, removals and unlocks end in the same state however often they run.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

import psycopg
from psycopg import sql

from agenda_decl._clock import utcnow
from agenda_decl._convert import parse_datetime
from agenda_decl._group_commit import GroupCommit
from agenda_decl._model import (
    Announcement,
    JobId,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
)
from agenda_decl._secrets import mask_url
from agenda_decl.backends import base
from agenda_decl.backends.base.repeats import moved_by, moved_on, state_already_written
from agenda_decl.backends.postgres import queries
from agenda_decl.backends.postgres.queries import Insert as _Insert
from agenda_decl.backends.postgres.queries import Row, job_key, job_uuid
from agenda_decl.backends.postgres.rows import claimed_jobs, latest_per_id, overview, row_job
from agenda_decl.connectors.postgres import (
    Connection,
    ConnectionLender,
    Pool,
    behind_pooler,
    borrow,
    connect,
    open_pool,
    retrying,
    run,
    where,
)
from agenda_decl.connectors.retry import DEFAULT_RETRY_FOR, Attempt
from agenda_decl.errors import (
    AgendaError,
    BackendUnavailableError,
    InvalidOptionError,
    job_not_found,
    rejected_state_write,
)
from agenda_decl.timing import Duration

__all__ = ["PostgresJobRepository"]

# -- names and statements -----------------------------------------------------------------------


_SERVER_NOW = queries.render("server_now")


async def _read_only_session(conn: psycopg.AsyncConnection[Any]) -> None:
    """Each pooled connection of a read-only repository: the server refuses its writes too."""
    await conn.execute(queries.STATEMENTS["read_only_session"])


# -- the repository -------------------------------------------------------------------------------


class PostgresJobRepository(base.ClaimsInBatches):
    """Jobs in one PostgreSQL table (Agenda v6's layout). Built from a connection string (the
    repository owns and closes its pool) or from an ``AsyncConnectionPool`` (never closed
    here; pass it open).

    ``read_only=True`` (inspecting: ``agenda-decl plan``, ``jobs``) creates nothing (no table,
    index, function or trigger, whatever ``ensure_schema`` says), reads a missing table as an
    empty one and refuses writes; the sessions of an owned pool are read-only on the server
    too.

    ``retry_for`` (default 30 seconds; 0: no retries) bounds how long a statement is repeated
    while the server cannot be reached; past it the call raises ``BackendUnavailableError``
    naming the server (see the module docstring for why every repeat is safe).

    Behind a transaction pooler (PgBouncer's ``pool_mode = transaction``, found at connect:
    ``pooled``) every statement stands alone: no server-side prepared statements, no session
    settings (a read-only repository then refuses writes itself only), and every lock is a
    transaction's. A given pool must then be opened with ``kwargs={"prepare_threshold":
    None}``; ``connect`` says so otherwise."""

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        pool: Pool | None = None,
        table_name: str = "agenda_jobs",
        ensure_schema: bool = True,
        max_pool_size: int = 10,
        connect_timeout: float = 10.0,
        read_only: bool = False,
        retry_for: Duration = DEFAULT_RETRY_FOR,
    ) -> None:
        if (connection_string is None) == (pool is None):
            raise InvalidOptionError("PostgresJobRepository needs connection_string or pool")
        self._conninfo = connection_string
        self._pool = pool
        self._owns_pool = pool is None
        self._table = queries.check_table_name(table_name)
        self._read_only = read_only
        self._ensure_schema = ensure_schema and not read_only
        self._schema_ready = False
        #: A read-only repository found no table: it reads as empty.
        self._absent = False
        self._max_pool_size = max_pool_size
        self._connect_timeout = connect_timeout
        #: Whether the store is reached through a connection pooler (known after connect).
        self.pooled = False
        self._inserts: GroupCommit[_Insert, Row] = GroupCommit(self._insert_batch)
        #: The channel inserts announce themselves on (``announce_on``); None: they do not.
        self._channel: str | None = None
        #: Lends a connection for claims (``claim_through``); None: the pool only.
        self._lender: ConnectionLender | None = None
        #: The outage policy of every statement (``retry_for``).
        self.retrying = retrying(where(connection_string, pool), retry_for)

    def __repr__(self) -> str:
        where = mask_url(self._conninfo) if self._conninfo else "<pool>"
        return f"PostgresJobRepository({where!r}, table_name={self._table!r})"

    @property
    def table_name(self) -> str:
        return self._table

    def announce_on(self, channel_name: str) -> None:
        """NOTIFY ``channel_name`` in the statement of an insert given an ``announce`` (the
        backend's own LISTEN/NOTIFY channel: one round trip per enqueue)."""
        self._channel = channel_name

    def claim_through(self, lender: ConnectionLender) -> None:
        """Claim on the connection ``lender`` offers when it offers one (the backend's
        LISTEN connection after a wake-up, see ``ConnectionLender``), else a pooled one."""
        self._lender = lender

    @property
    def announces_inserts(self) -> bool:
        return self._channel is not None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise BackendUnavailableError("PostgresJobRepository is not connected")
        return self._pool

    async def connect(self) -> None:
        if self._pool is None and self._conninfo is not None:
            self._pool = await self._open_pool(self._conninfo)
        if self.pool.closed:
            raise InvalidOptionError(
                "the pool given to PostgresJobRepository is not open: await pool.open() first"
            )
        if not self._owns_pool:
            await self._check_given_pool()
        if self._ensure_schema and not self._schema_ready:
            async with borrow(self.pool) as conn:
                await queries.create_schema(conn, self._table)
            self._schema_ready = True
        if self._read_only:
            async with borrow(self.pool) as conn:
                self._absent = not await self._table_present(conn)

    async def _open_pool(self, conninfo: str) -> Pool:
        # One direct connection first: a clear, fast error when the server is unreachable.
        probe = await connect(conninfo, self._connect_timeout)
        try:
            self.pooled = await behind_pooler(probe)
            if self._ensure_schema:
                await queries.create_schema(probe, self._table)
                self._schema_ready = True
        finally:
            await probe.close()
        # Behind a transaction pooler a session setting would stay on a server connection
        # that other clients get next: the read-only refusal is then this repository's own.
        read_only_session = self._read_only and not self.pooled
        return await open_pool(
            conninfo, max_size=self._max_pool_size, name=f"agenda-decl:{self._table}",
            configure=_read_only_session if read_only_session else None, pooled=self.pooled,
        )

    async def _check_given_pool(self) -> None:
        """A given pool behind a pooler must not prepare statements (see the class)."""
        async with borrow(self.pool) as conn:
            self.pooled = await behind_pooler(conn)
            if self.pooled and conn.prepare_threshold is not None:
                raise InvalidOptionError(
                    f"the pool given to {self!r} reaches PostgreSQL through a connection "
                    "pooler, where server-side prepared statements fail: open it with "
                    "kwargs={'prepare_threshold': None}"
                )

    async def _table_present(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        name = sql.Identifier(self._table).as_string(conn)
        rows = await queries.fetch(conn, queries.STATEMENTS["table_present"], {"table": name})
        return bool(rows[0]["present"])

    async def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def server_now(self) -> datetime | None:
        rows = await self._fetch(_SERVER_NOW, ())
        return parse_datetime(rows[0]["now"])

    # -- plumbing --------------------------------------------------------------------------------

    def _sql(self, name: str) -> bytes:
        """The statement ``name`` of ``queries.sql`` for this repository's table."""
        return queries.statement(name, self._table)

    async def _fetch(self, statement: queries.Statement, params: Any) -> list[Row]:
        """The rows of one statement, repeated through an outage (the statement must be safe
        to repeat: every one of this repository is)."""

        async def fetch(conn: Connection, _: Attempt) -> list[Row]:
            return await queries.fetch(conn, statement, params)

        return await run(self.pool, self.retrying, fetch)

    async def _read(self, statement: queries.Statement, params: Any) -> list[Row]:
        """Rows of a read of the table; none when a read-only repository found no table."""
        return [] if self._absent else await self._fetch(statement, params)

    def _writable(self) -> None:
        if self._read_only:  # the repr (a masked URL) only for the error: every write asks
            base.refuse_write(self._read_only, repr(self))

    async def _execute(self, statement: queries.Statement, params: Any) -> int:
        self._writable()

        async def execute(conn: Connection, _: Attempt) -> int:
            cursor = await conn.execute(statement, params)
            return int(cursor.rowcount)

        return await run(self.pool, self.retrying, execute)

    # -- reading -------------------------------------------------------------------------------

    async def query_jobs(self, options: JobsQueryOptions | None = None) -> JobsResult:
        options = options or JobsQueryOptions()
        statements = queries.page_statements(options, self._table)
        if statements is None or self._absent:
            return JobsResult(jobs=[], total=0)
        page, count, params = statements
        params["now"] = utcnow()
        limit, skip = options.limit, options.skip

        async def read(conn: Connection, _: Attempt) -> tuple[list[Row], int]:
            rows = await queries.fetch(conn, page, params)
            # A page that is not full ends the matches, so the total is known without
            # counting them (the count is the dear part of a filtered page: it reads every
            # match, the page stops at the limit). An empty page past the start may have
            # skipped them all: counted.
            if (rows or not skip) and (not limit or len(rows) < limit):
                return rows, skip + len(rows)
            if rows and "total" in rows[0]:  # counted by the page (query_page_counted)
                return rows, rows[0]["total"]
            return rows, (await queries.fetch(conn, count, params))[0]["total"]

        rows, total = await run(self.pool, self.retrying, read)
        return JobsResult(jobs=[base.with_state(row_job(r), r["state"]) for r in rows],
                          total=total)

    async def get_jobs_overview(self) -> list[JobsOverview]:
        return overview(await self._read(self._sql("overview"), {"now": utcnow()}))

    async def get_distinct_job_names(self) -> list[str]:
        return [row["name"] for row in await self._read(self._sql("distinct_names"), ())]

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        key = job_uuid(job_id)
        rows = await self._read(self._sql("select_by_id"), (key,)) if key else []
        return row_job(rows[0]) if rows else None

    async def get_queue_size(self) -> int:
        rows = await self._read(self._sql("queue_size"), ())
        return int(rows[0]["size"]) if rows else 0

    # -- writing -------------------------------------------------------------------------------

    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        self._writable()
        where = queries.remove_where(options)
        if where is None:
            return 0
        statement = queries.render("delete", table=sql.Identifier(self._table),
                                   where=where.sql())
        return await self._execute(statement, where.params)

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=True)

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._set_disabled(options, disabled=False)

    async def _set_disabled(self, options: RemoveJobsOptions, *, disabled: bool) -> int:
        self._writable()
        where = queries.remove_where(options)
        if where is None:
            return 0
        table = sql.Identifier(self._table)
        statement = queries.render("set_disabled", table=table, where=where.sql())
        return await self._execute(statement, {**where.params, "disabled": disabled})

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        self._writable()
        data = base.check_job(job)
        values = queries.save_values(job, data, last_modified_by)
        if job.id is not None:
            key = job_uuid(job.id)
            rows = await self._fetch(
                self._sql("update_saved"), {**values, "id": key, "match_name": job.name}
            ) if key else []
            return row_job(rows[0]) if rows else job
        if job.type == "single":
            upsert = self._sql("upsert_single")
            return row_job((await self._fetch(upsert, {**values, "now": now}))[0])
        if job.unique:
            return await self._save_unique(job, values, now)
        row = await self._inserts.submit_inline((values, None))
        return queries.inserted([job], [row["id"]], [data], last_modified_by)[0]

    async def insert_jobs(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        announce: Announcement | None = None,
    ) -> list[JobParameters[Any]]:
        """One statement per batch, with its NOTIFY when announcing (``announced_insert``).
        A lone job joins the inserts submitted at the same moment (group commit)."""
        self._writable()
        encoded = base.check_inserts(jobs)
        announce = announce if self.announces_inserts else None
        rows = [queries.save_values(job, data, last_modified_by)
                for job, data in zip(jobs, encoded, strict=True)]
        if len(rows) == 1:
            row = await self._inserts.submit_inline((rows[0], announce))
            return queries.inserted(jobs, [row["id"]], encoded, last_modified_by)
        stored: list[JobParameters[Any]] = []
        for start in range(0, len(rows), base.INSERT_BATCH):
            end = start + base.INSERT_BATCH
            batch = [(values, announce) for values in rows[start:end]]
            ids = await self._insert_rows(batch)
            stored.extend(queries.inserted(jobs[start:end], [row["id"] for row in ids],
                                           encoded[start:end], last_modified_by))
        return stored

    async def _insert_batch(self, batch: list[_Insert]) -> list[Row | Exception]:
        """Plain inserts submitted together: one statement; if it fails, each row alone, so
        an error reaches only the save that caused it."""
        if len(batch) > 1:
            with contextlib.suppress(psycopg.DataError, psycopg.IntegrityError):
                return list(await self._insert_rows(batch))
        return [await self._insert_one(insert) for insert in batch]

    async def _insert_one(self, insert: _Insert) -> Row | Exception:
        try:
            return (await self._insert_rows([insert]))[0]
        except Exception as error:
            return error

    async def _insert_rows(self, batch: list[_Insert]) -> list[Row]:
        """Insert ``batch`` under ids made here, before the first attempt (random UUIDs, as
        ``gen_random_uuid()`` makes, handed out in ascending order so that the ``created_at,
        id`` tie-break keeps the batch's order), announcing the rows that come with an
        ``Announcement`` in the same statement. An attempt repeated after a lost reply skips
        the rows the first one stored and reads them back: never a job twice. Returns a row
        holding at least the id of each job, in batch order: the callers know what they
        stored (``queries.inserted``), and reading every column back costs more."""
        # Sorted as UUIDs compare, by their integer (attrgetter: UUID.__lt__ costs more).
        ids = sorted((uuid.uuid4() for _ in batch), key=attrgetter("int"))
        payloads = queries.announce_payloads(batch, ids)
        statement, columns = queries.insert_for(self._table, self._channel, batch, ids, payloads)

        async def insert(conn: Connection, attempt: Attempt) -> list[Row]:
            rows = await queries.fetch(conn, statement, columns)
            by_id = {row["id"]: row for row in rows}
            for key in ids:
                if key not in by_id:  # stored by an earlier attempt whose reply was lost
                    found = await queries.fetch(conn, self._sql("select_by_id"), (key,))
                    if not found:
                        raise AgendaError(f"job {key} was stored, then removed at once")
                    by_id[key] = found[0]
            return [by_id[key] for key in ids]

        return await run(self.pool, self.retrying, insert)

    async def _save_unique(
        self, job: JobParameters[Any], values: Row, now: datetime | None
    ) -> JobParameters[Any]:
        """Read, decide with the shared rules, write; one transaction, serialized per name (a
        repeat after a lost reply finds the job the first attempt stored)."""

        async def save(conn: Connection, _: Attempt) -> JobParameters[Any]:
            return await self._save_unique_in(conn, job, dict(values), now)

        return await run(self.pool, self.retrying, save)

    async def _save_unique_in(
        self, conn: Connection, job: JobParameters[Any], values: Row, now: datetime | None
    ) -> JobParameters[Any]:
        assert job.unique
        async with conn.transaction():
            lock_key = f"agenda_decl:{self._table}:{job.name}"
            await conn.execute(queries.STATEMENTS["unique_lock"], (lock_key,))
            now = now or parse_datetime((await queries.fetch(conn, _SERVER_NOW, ()))[0]["now"])
            stored = await self._select_unique(conn, job.name, job.unique)
            if stored is not None and base.is_insert_only(job):
                return stored
            if base.is_debounced(job):
                outcome = base.debounce_outcome(job, stored, now)
                values["next_run_at"] = outcome.next_run_at
                values["debounce_started_at"] = outcome.debounce_started_at
            if stored is None:
                return row_job((await queries.fetch(conn, self._sql("insert"), values))[0])
            match = {"id": job_uuid(stored.id), "match_name": stored.name}
            update = self._sql("update_saved")
            return row_job((await queries.fetch(conn, update, {**values, **match}))[0])

    async def _select_unique(
        self, conn: psycopg.AsyncConnection[Any], name: str, unique: Mapping[str, Any]
    ) -> JobParameters[Any] | None:
        conditions = [queries.unique_condition(key, value) for key, value in unique.items()]
        statement = queries.render(
            "select_unique",
            table=sql.Identifier(self._table),
            conditions=sql.SQL(" AND ").join(condition for condition, _ in conditions),
        )
        params = [name, *(p for _, condition_params in conditions for p in condition_params)]
        rows = await queries.fetch(conn, statement, params)
        return row_job(rows[0]) if rows else None

    async def save_job_state(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        lock_token: datetime | None = None,
    ) -> None:
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        if job_uuid(job.id) is None:
            raise job_not_found(job)
        self._writable()
        tokens = {} if lock_token is None else {str(job.id): lock_token}
        if await self._save_one_state(job, last_modified_by, tokens):
            raise await rejected_state_write(self, job, lock_token)

    async def save_job_states(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        lock_tokens: Mapping[str, datetime] | None = None,
    ) -> list[JobId]:
        """Every job's state fields in one statement; return the ids not written (gone or
        fenced out)."""
        self._writable()
        tokens = lock_tokens or {}
        latest = latest_per_id(jobs)
        keys = [job_key(job.id) for job in latest]
        keyed = {key: job for key, job in zip(keys, latest, strict=True) if key}
        if not keyed:
            return [JobId(str(job.id)) for job in latest]
        if len(latest) == 1:  # the simpler statement is cheaper for the common lone write
            return await self._save_one_state(latest[0], last_modified_by, tokens)
        columns = queries.states_columns(keyed, last_modified_by, tokens)

        async def write(conn: Connection, _: Attempt) -> list[JobId]:
            rows = await queries.fetch(conn, self._sql("update_states"), columns, hot=True)
            written = {row["id"] for row in rows}
            missing = [job for key, job in zip(keys, latest, strict=True) if key not in written]
            return await self._not_written(conn, missing, last_modified_by)

        return await run(self.pool, self.retrying, write)

    async def _save_one_state(
        self, job: JobParameters[Any], by: str | None, tokens: Mapping[str, datetime]
    ) -> list[JobId]:
        key = job_uuid(job.id)
        if key is None:
            return [JobId(str(job.id))]
        values = queries.state_values(job, key, by, tokens.get(str(job.id)))

        async def write(conn: Connection, _: Attempt) -> list[JobId]:
            cursor = await conn.execute(self._sql("update_state"), values, prepare=True)
            missing = [] if cursor.rowcount == 1 else [job]
            return await self._not_written(conn, missing, by)

        return await run(self.pool, self.retrying, write)

    async def _not_written(
        self, conn: Connection, jobs: list[JobParameters[Any]], by: str | None
    ) -> list[JobId]:
        """The ids of ``jobs`` (not written by this attempt) that are not stored as written
        either: an earlier attempt whose reply was lost may have written them (see
        ``base.repeats``)."""
        missing = []
        for job in jobs:
            rows = await queries.fetch(conn, self._sql("select_by_id"), (job_uuid(job.id),))
            if not (rows and state_already_written(row_job(rows[0]), job, by)):
                missing.append(JobId(str(job.id)))
        return missing

    # -- locking -------------------------------------------------------------------------------

    async def lock_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any] | None:
        self._writable()
        key = job_uuid(job.id) if job.id else None
        if key is None:
            return None
        params = {"id": key, "name": job.name, "next_run_at": job.next_run_at, "now": now,
                  "by": last_modified_by}

        async def lock(conn: Connection, attempt: Attempt) -> list[Row]:
            moved = moved_by(attempt)
            return await queries.fetch(conn, self._sql("lock"),
                                       {**params, "now": moved_on(now, moved)})

        rows = await run(self.pool, self.retrying, lock)
        return row_job(rows[0]) if rows else None

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        key = job_uuid(job.id) if job.id else None
        if key is not None:
            await self._execute(self._sql("unlock"), (key,))

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        keys = [key for key in map(job_uuid, job_ids) if key is not None]
        if keys:
            await self._execute(self._sql("unlock_many"), (keys,))

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
        self._writable()
        if limit <= 0:
            return []
        params = {"name": job_name, "limit": limit, "by": last_modified_by}

        async def claim(conn: Connection, attempt: Attempt) -> list[tuple[Any, ...]]:
            moved = moved_by(attempt)
            return await queries.fetch_tuples(conn, self._sql("claim"), {
                **params, "next_scan_at": next_scan_at + moved,
                "lock_deadline": lock_deadline + moved, "now": moved_on(now, moved),
            })

        return claimed_jobs(await run(self.pool, self.retrying, claim, lender=self._lender))
