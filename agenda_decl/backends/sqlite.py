"""SQLite storage: the embedded default backend, one file, no server.

    agenda = Agenda(backend=SQLiteBackend(path="jobs.db"))

The table follows Agenda v6's PostgreSQL layout (see ``_sqlite_sql``). Several worker processes
may share one file: the database runs in WAL mode, every write transaction starts with
``BEGIN IMMEDIATE`` (a deferred transaction that upgrades to a writer can fail with
``SQLITE_BUSY_SNAPSHOT``, which ``busy_timeout`` does not cover), and a "database is locked"
error is retried with a growing, capped backoff instead of reaching the caller. Claims are
one ``UPDATE ... RETURNING`` statement, so two workers never take the same job.

The stdlib ``sqlite3`` module blocks, so each repository owns one worker thread that owns its
connection: calls are serialized there and the event loop never waits on the disk.

The file must be on a local disk (WAL needs shared memory between the processes on one
host); a path on a network filesystem is refused. ``path=":memory:"`` works for a single
repository in one process, which is handy in tests; several processes need a file.

SQLite has no notification channel of its own (``notification_channel`` is ``None``): pair it
with ``InMemoryNotificationChannel`` in a single process, or rely on polling.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs

from agenda_decl._clock import utcnow
from agenda_decl._convert import job_from_row
from agenda_decl._model import (
    JobId,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    JobWithState,
    RemoveJobsOptions,
)
from agenda_decl.backends import _sqlite_sql as sql
from agenda_decl.backends import base
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError
from agenda_decl.interfaces import AgendaBackend
from agenda_decl.timing import parse_duration

__all__ = ["SQLiteBackend", "SQLiteJobRepository"]

T = TypeVar("T")
Row = dict[str, Any]
Work = Callable[[sqlite3.Connection], T]

#: How long a call keeps retrying a locked database before it gives up (seconds).
BUSY_RETRY_WINDOW = 60.0
_FIRST_BACKOFF, _MAX_BACKOFF = 0.005, 1.0
#: SQLITE_BUSY and SQLITE_LOCKED (primary result codes; the extended ones share the low byte).
_BUSY_CODES = (5, 6)
#: Filesystems on which SQLite's locking and WAL shared memory are unreliable.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs",
        "fuse.glusterfs", "fuse.sshfs", "sshfs", "lustre", "gpfs", "davfs", "fuse.s3fs",
        "fuse.rclone",
    }
)  # fmt: skip
_IN_MEMORY = ("", ":memory:")
#: Connections inherited through fork(): never touched, never garbage-collected (closing one
#: in the child could disturb the parent's locks).
_FORK_ORPHANS: list[sqlite3.Connection | None] = []


class SQLiteJobRepository(base.ClaimsInBatches, base.WritesStatesInBatches):
    """Jobs in one SQLite table; safe for several worker processes on one local file."""

    def __init__(
        self,
        path: str | os.PathLike[str] = "agenda.db",
        *,
        table_name: str = "agenda_jobs",
        busy_timeout: int | float | timedelta | str = "5 seconds",
    ) -> None:
        self._path = os.fspath(path)
        self._table_name = base.validate_identifier(table_name, field="table_name")
        self._busy_timeout_ms = parse_duration(busy_timeout, field="busy_timeout")
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._closing = False
        self._pid = os.getpid()
        #: How many times a call found the database locked and retried (for tests and metrics).
        self.busy_retries = 0

    def __repr__(self) -> str:
        return f"SQLiteJobRepository(path={self._path!r}, table_name={self._table_name!r})"

    @property
    def path(self) -> str:
        return self._path

    @property
    def table_name(self) -> str:
        return self._table_name

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the file (creating it, the table and the indexes if missing). Idempotent."""
        if self._pid != os.getpid():
            self._forget_parent_connection()
        if self._executor is not None:
            return
        async with self._connect_lock:
            if self._executor is None:
                self._executor = await self._start_worker()

    def _forget_parent_connection(self) -> None:
        """In a forked child: the worker thread did not survive the fork, and the parent's
        connection must not be used or even closed here (SQLite forbids it), so keep it
        referenced and open a connection of our own."""
        _FORK_ORPHANS.append(self._connection)
        self._executor, self._connection = None, None
        self._connect_lock = asyncio.Lock()
        self._pid = os.getpid()

    async def _start_worker(self) -> ThreadPoolExecutor:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agenda-sqlite")
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._open)
        except BaseException:
            executor.submit(self._close_connection)
            executor.shutdown(wait=False)
            raise
        return executor

    async def close(self) -> None:
        """Close the connection and stop the worker thread (queued calls finish first)."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        self._closing = True
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_connection)
        finally:
            executor.shutdown(wait=False)
            self._closing = False

    # -- reading -------------------------------------------------------------------------

    async def query_jobs(self, options: JobsQueryOptions | None = None) -> JobsResult:
        options = options or JobsQueryOptions()
        base.check_data_filter(options.data)
        clauses, params = sql.query_criteria(options)
        params.update(now=sql.to_ms(utcnow()), limit=options.limit or -1, skip=options.skip)
        where = " AND ".join(clauses) or "1"
        page = self._sql(sql.SELECT_PAGE, where=where, order=sql.order_by(options))
        count = self._sql(sql.COUNT, where=where)
        rows, total = await self._read(lambda c: (_all(c, page, params), _one(c, count, params)))
        return JobsResult(jobs=[_job_with_state(row) for row in rows], total=total["total"])

    async def get_jobs_overview(self) -> list[JobsOverview]:
        statement, now = self._sql(sql.OVERVIEW), sql.to_ms(utcnow())
        rows = await self._read(lambda c: _all(c, statement, {"now": now}))
        return [JobsOverview(**row) for row in rows]

    async def get_distinct_job_names(self) -> list[str]:
        statement = self._sql(sql.DISTINCT_NAMES)
        rows = await self._read(lambda c: _all(c, statement, ()))
        return [row["name"] for row in rows]

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        statement = self._sql(sql.SELECT_BY_ID)
        row = await self._read(lambda c: _first(c, statement, (str(job_id),)))
        return None if row is None else _job_from_row(row)

    async def get_queue_size(self) -> int:
        statement, now = self._sql(sql.QUEUE_SIZE), sql.to_ms(utcnow())
        row = await self._read(lambda c: _one(c, statement, (now,)))
        return int(row["size"])

    # -- writing -------------------------------------------------------------------------

    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._change_matching(sql.DELETE, options, {})

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._change_matching(sql.SET_DISABLED, options, {"disabled": 1})

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._change_matching(sql.SET_DISABLED, options, {"disabled": 0})

    async def _change_matching(
        self, template: str, options: RemoveJobsOptions, extra: dict[str, Any]
    ) -> int:
        if options.matches_nothing():
            return 0
        base.check_data_filter(options.data)
        clauses, params = sql.remove_criteria(options)
        params.update(extra, stamp=sql.to_ms(utcnow()))
        statement = self._sql(template, where=" AND ".join(clauses))
        return await self._write(lambda c: c.execute(statement, params).rowcount)

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        values = sql.save_params(job, base.check_job(job), last_modified_by)
        stamp = _normalize(now) if now is not None else utcnow()
        saved = await self._write(lambda c: self._save(c, job, values, stamp))
        return job if saved is None else saved

    async def save_job_states(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        lock_tokens: Mapping[str, datetime] | None = None,
    ) -> list[JobId]:
        """All the state writes in one transaction (one commit, one fsync)."""
        statement = self._sql(sql.UPDATE_STATE)
        tokens = lock_tokens or {}
        batch = [
            (job, sql.state_params(job, last_modified_by,
                                   tokens.get(job.id) if job.id is not None else None))
            for job in jobs
        ]

        def write(c: sqlite3.Connection) -> list[JobId]:
            return [
                JobId(str(job.id)) for job, params in batch
                if c.execute(statement, params).rowcount == 0
            ]

        return await self._write(write)

    # -- locking -------------------------------------------------------------------------

    async def lock_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any] | None:
        if job.id is None:
            return None
        params = {
            "id": str(job.id),
            "name": job.name,
            "next_run_at": sql.to_ms(job.next_run_at),
            "now": sql.to_ms(now or utcnow()),
            "by": last_modified_by,
        }
        statement = self._sql(sql.LOCK)
        row = await self._write(lambda c: _first(c, statement, params))
        return None if row is None else _job_from_row(row)

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        if job.id is not None:
            statement, job_id = self._sql(sql.UNLOCK), str(job.id)
            await self._write(lambda c: c.execute(statement, (job_id,)).rowcount)

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            statement, ids = self._sql(sql.UNLOCK_MANY), json.dumps([str(i) for i in job_ids])
            await self._write(lambda c: c.execute(statement, (ids,)).rowcount)

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
        params = {
            "name": job_name,
            "next_scan_at": sql.to_ms(next_scan_at),
            "lock_deadline": sql.to_ms(lock_deadline),
            "now": sql.to_ms(now or utcnow()),
            "by": last_modified_by,
            "limit": limit,
        }
        statement = self._sql(sql.CLAIM)
        rows = await self._write(lambda c: _all(c, statement, params))
        rows.sort(key=_claim_order)
        return [_job_from_row(row) for row in rows]

    # -- save_job branches (run in the worker thread, inside BEGIN IMMEDIATE) -------------

    def _save(
        self, c: sqlite3.Connection, job: JobParameters[Any], values: Row, now: datetime
    ) -> JobParameters[Any] | None:
        if job.id is not None:
            return self._update_saved(c, str(job.id), values, now)
        if job.type == "single":
            return self._upsert_single(c, values, now)
        if job.unique:
            return self._upsert_unique(c, job, values, now)
        return self._insert(c, values, now)

    def _insert(self, c: sqlite3.Connection, values: Row, now: datetime) -> JobParameters[Any]:
        params = {**values, "id": uuid.uuid4().hex, "stamp": sql.to_ms(now)}
        return _job_from_row(_one(c, self._sql(sql.INSERT), params))

    def _update_saved(
        self, c: sqlite3.Connection, job_id: str, values: Row, now: datetime
    ) -> JobParameters[Any] | None:
        params = {**values, "id": job_id, "stamp": sql.to_ms(now)}
        row = _first(c, self._sql(sql.UPDATE_SAVED), params)
        return None if row is None else _job_from_row(row)

    def _upsert_single(
        self, c: sqlite3.Connection, values: Row, now: datetime
    ) -> JobParameters[Any] | None:
        row = _first(c, self._sql(sql.SELECT_SINGLE), (values["name"],))
        if row is None:
            return self._insert(c, values, now)
        incoming = sql.from_ms(values["next_run_at"])
        kept = base.single_next_run_at(incoming, sql.from_ms(row["next_run_at"]), now,
                                       same_timing=sql.same_timing(row, values))
        return self._update_saved(c, row["id"], {**values, "next_run_at": sql.to_ms(kept)}, now)

    def _upsert_unique(
        self, c: sqlite3.Connection, job: JobParameters[Any], values: Row, now: datetime
    ) -> JobParameters[Any] | None:
        stored = self._find_unique(c, job)
        if stored is not None and base.is_insert_only(job):
            return stored
        if base.is_debounced(job):
            outcome = base.debounce_outcome(job, stored, now)
            values = {
                **values,
                "next_run_at": sql.to_ms(outcome.next_run_at),
                "debounce_started_at": sql.to_ms(outcome.debounce_started_at),
            }
        if stored is None or stored.id is None:
            return self._insert(c, values, now)
        return self._update_saved(c, stored.id, values, now)

    def _find_unique(
        self, c: sqlite3.Connection, job: JobParameters[Any]
    ) -> JobParameters[Any] | None:
        """The first job (insertion order) matching the unique key, by the shared rule.

        SQL narrows the candidates on the keys it can compare exactly enough (a superset of
        the matches); ``base.matches_unique`` decides.
        """
        unique = job.unique or {}
        clauses, params = ["name = :name"], {"name": job.name}
        for index, (key, value) in enumerate(unique.items()):
            clause = sql.unique_prefilter(key, value, index, params)
            if clause is not None:
                clauses.append(clause)
        cursor = c.execute(self._sql(sql.SELECT_UNIQUE, where=" AND ".join(clauses)), params)
        candidates = (_job_from_row(row) for row in cursor)
        return next((j for j in candidates if base.matches_unique(j, unique, job.name)), None)

    # -- the worker thread ---------------------------------------------------------------

    def _sql(self, template: str, **fragments: str) -> str:
        return sql.render(
            template, table=f'"{self._table_name}"', prefix=self._table_name, **fragments
        )

    async def _write(self, work: Work[T]) -> T:
        return await self._submit(work, "BEGIN IMMEDIATE")

    async def _read(self, work: Work[T]) -> T:
        return await self._submit(work, "BEGIN")

    async def _submit(self, work: Work[T], begin: str) -> T:
        await self.connect()
        executor = self._executor
        if executor is None:  # closed while we waited
            raise BackendUnavailableError(f"SQLite database {self._path} is closed")
        call = functools.partial(self._transaction, work, begin)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def _transaction(self, work: Work[T], begin: str) -> T:
        connection = self._connection
        if connection is None:
            raise BackendUnavailableError(f"SQLite database {self._path} is closed")
        return self._retrying(lambda: _in_transaction(connection, work, begin))

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``; while the database is locked by another connection, back off and
        run it again (the transaction was rolled back, so nothing happened twice)."""
        deadline = time.monotonic() + BUSY_RETRY_WINDOW
        delay = _FIRST_BACKOFF
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    message = f"SQLite database {self._path}: {error}"
                    raise BackendUnavailableError(message) from error
                if self._closing or time.monotonic() + delay > deadline:
                    raise BackendUnavailableError(
                        f"SQLite database {self._path} stayed locked by another connection "
                        f"for {BUSY_RETRY_WINDOW:g} s"
                    ) from error
            self.busy_retries += 1
            time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, _MAX_BACKOFF)

    def _open(self) -> None:
        fs_type = None if self._path in _IN_MEMORY else network_filesystem(self._path)
        if fs_type is not None:
            raise InvalidOptionError(
                f"SQLite database {self._path} is on a network filesystem ({fs_type}); "
                "SQLite's WAL mode needs a local disk: use PostgreSQL to share jobs across hosts"
            )
        try:
            self._connection = sqlite3.connect(
                self._path, timeout=self._busy_timeout_ms / 1000, isolation_level=None
            )
        except sqlite3.Error as error:
            raise BackendUnavailableError(
                f"cannot open SQLite database {self._path}: {error}"
            ) from error
        _register_functions(self._connection)
        self._retrying(functools.partial(self._prepare, self._connection))

    def _prepare(self, c: sqlite3.Connection) -> None:
        c.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()["journal_mode"]
        if mode != "wal" and self._path not in _IN_MEMORY:
            raise BackendUnavailableError(
                f"SQLite database {self._path} cannot use WAL mode (journal mode {mode})"
            )
        c.execute("PRAGMA synchronous = NORMAL")
        if not self._schema_exists(c):  # skip the write lock when another process made it
            schema = [self._sql(sql.CREATE_TABLE), *(self._sql(i) for i in sql.CREATE_INDEXES)]
            _in_transaction(c, lambda conn: [conn.execute(s) for s in schema], "BEGIN IMMEDIATE")

    def _schema_exists(self, c: sqlite3.Connection) -> bool:
        table = self._table_name
        names = [table, *(f"{table}_{suffix}" for suffix in sql.INDEX_SUFFIXES)]
        found = c.execute(sql.SCHEMA_OBJECTS, (json.dumps(names),)).fetchall()
        return len(found) == len(names)

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class SQLiteBackend(AgendaBackend):
    """The embedded default backend: storage only (no notification channel of its own)."""

    name = "SQLite"

    def __init__(
        self,
        path: str | os.PathLike[str] = "agenda.db",
        *,
        table_name: str = "agenda_jobs",
        busy_timeout: int | float | timedelta | str = "5 seconds",
    ) -> None:
        self._repository = SQLiteJobRepository(
            path, table_name=table_name, busy_timeout=busy_timeout
        )

    def __repr__(self) -> str:
        repository = self._repository
        return f"SQLiteBackend(path={repository.path!r}, table_name={repository.table_name!r})"

    @property
    def repository(self) -> SQLiteJobRepository:
        return self._repository

    async def close(self) -> None:
        await self.disconnect()


# -- connection helpers (worker thread) ----------------------------------------------------------


def _in_transaction(c: sqlite3.Connection, work: Work[T], begin: str) -> T:
    c.execute(begin)
    try:
        result = work(c)
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    return result


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    message = str(error).lower()
    return "database is locked" in message or "database is busy" in message


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _register_functions(c: sqlite3.Connection) -> None:
    c.row_factory = _dict_row
    c.create_function("agenda_lower", 1, _lower, deterministic=True)
    c.create_function("agenda_data_contains", 2, _data_contains, deterministic=True)


def _lower(text: Any) -> Any:
    """Unicode-aware lowercase (SQLite's own ``lower`` folds ASCII only)."""
    return text.lower() if isinstance(text, str) else text


@functools.lru_cache(maxsize=64)
def _needle(text: str) -> Any:
    return json.loads(text)


def _data_contains(stored: Any, needle: Any) -> int:
    """``base.data_contains`` inside SQLite, so the filter runs where the rows are."""
    if not isinstance(stored, str) or not isinstance(needle, str):
        return 0
    try:
        return int(base.data_contains(json.loads(stored), _needle(needle)))
    except ValueError:
        return 0


def _all(c: sqlite3.Connection, statement: str, params: Any) -> list[Row]:
    return list(c.execute(statement, params).fetchall())


def _first(c: sqlite3.Connection, statement: str, params: Any) -> Row | None:
    rows = c.execute(statement, params).fetchall()  # fetch all: RETURNING finishes its work
    return rows[0] if rows else None


def _one(c: sqlite3.Connection, statement: str, params: Any) -> Row:
    row = _first(c, statement, params)
    assert row is not None, "statement returned no row"
    return row


# -- conversions ---------------------------------------------------------------------------------


def _normalize(value: datetime) -> datetime:
    """Aware UTC at millisecond precision (a naive value is read as UTC, as stored ones are)."""
    moment = sql.from_ms(sql.to_ms(value))
    assert moment is not None
    return moment


def _job_from_row(row: Row) -> JobParameters[Any]:
    values = dict(row)
    for column in sql.INSTANT_COLUMNS:
        values[column] = sql.from_ms(values[column])
    values["data"] = json.loads(values["data"])
    if values["skip_days"] is not None:
        values["skip_days"] = json.loads(values["skip_days"])
    values["disabled"], values["fork"] = bool(values["disabled"]), bool(values["fork"])
    return job_from_row(values)


def _job_with_state(row: Row) -> JobWithState[Any]:
    job = _job_from_row(row)
    return JobWithState(**attrs.asdict(job, recurse=False), state=row["state"])


def _claim_order(row: Row) -> tuple[bool, int, int, int]:
    """The claim order of the CLAIM statement: next_run_at nulls last, priority desc, rowid."""
    next_run_at = row["next_run_at"]
    return (next_run_at is None, next_run_at or 0, -row["priority"], row["row_order"])


# -- filesystem check ----------------------------------------------------------------------------


def network_filesystem(path: str, mountinfo: str | None = None) -> str | None:
    """The network filesystem type ``path`` lives on, or None (local, or unknown).

    Reads Linux's ``/proc/self/mountinfo`` (or the text given); elsewhere it cannot tell.
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    best, fs_type = "", None
    for mount_point, kind in _mounts(mountinfo):
        inside = directory == mount_point or directory.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fs_type = mount_point, kind
    return fs_type if fs_type in NETWORK_FILESYSTEMS else None


def _mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) per line of a mountinfo text."""
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 8 or "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if separator + 1 < len(fields):
            mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
            mounts.append((mount_point, fields[separator + 1]))
    return mounts
