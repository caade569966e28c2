"""The SQLite job repository: jobs in one table of one file (see ``queries.sql``).

Several worker processes may share one file: every write transaction starts with ``BEGIN
IMMEDIATE`` and a "database is locked" error is retried instead of reaching the caller (both
in ``connectors.sqlite``). Claims are one ``UPDATE ... RETURNING`` statement, so two workers
never take the same job.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from agenda_decl._clock import utcnow
from agenda_decl._job_data import check_data_filter, matches_unique
from agenda_decl._model import (
    Announcement,
    JobId,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
)
from agenda_decl.backends import base
from agenda_decl.backends.sqlite import queries
from agenda_decl.backends.sqlite.rows import decoder, fetch_jobs
from agenda_decl.backends.sqlite.rows import job_from_row as _job_from_row
from agenda_decl.connectors.sqlite import (
    Row,
    SQLiteConnector,
    Work,
    fetch_all,
    fetch_first,
    fetch_one,
    in_transaction,
)
from agenda_decl.timing import parse_duration

__all__ = ["SQLiteJobRepository"]

#: What a single insert returns: the stored row, in the order rows are read back.
_RETURNING = "RETURNING *, rowid AS row_order"

T = TypeVar("T")


class SQLiteJobRepository(base.ClaimsInBatches, base.WritesStatesInBatches):
    """Jobs in one SQLite table; safe for several worker processes on one local file."""

    def __init__(
        self,
        path: str | os.PathLike[str] = "agenda.db",
        *,
        table_name: str = "agenda_jobs",
        busy_timeout: int | float | timedelta | str = "5 seconds",
        read_only: bool = False,
    ) -> None:
        self._path = os.fspath(path)
        self._table_name = base.validate_identifier(table_name, field="table_name")
        self._read_only = read_only
        self._connector = SQLiteConnector(
            self._path,
            busy_timeout_ms=parse_duration(busy_timeout, field="busy_timeout"),
            create_schema=self._create_schema,
            has_schema=self._has_table,
            read_only=read_only,
        )

    def __repr__(self) -> str:
        return f"SQLiteJobRepository(path={self._path!r}, table_name={self._table_name!r})"

    @property
    def path(self) -> str:
        return self._path

    @property
    def table_name(self) -> str:
        return self._table_name

    @property
    def connector(self) -> SQLiteConnector:
        """The connection and its thread (the job log of the same file shares them)."""
        return self._connector

    @property
    def busy_retries(self) -> int:
        """How many times a call found the database locked and retried (for tests and metrics)."""
        return self._connector.busy_retries

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the file (creating it, the table and the indexes if missing; with
        ``read_only``, nothing: see ``SQLiteConnector``). Idempotent."""
        await self._connector.connect()

    async def close(self) -> None:
        """Close the connection and stop the worker thread (queued calls finish first)."""
        await self._connector.close()

    async def _write(self, work: Work[T], *, quiet: bool = False) -> T:
        """``quiet``: a claim or state write (see ``SQLiteConnector.write``)."""
        base.refuse_write(self._read_only, f"SQLite database {self._path}")
        return await self._connector.write(work, quiet=quiet)

    # -- reading -------------------------------------------------------------------------

    async def query_jobs(self, options: JobsQueryOptions | None = None) -> JobsResult:
        options = options or JobsQueryOptions()
        check_data_filter(options.data)
        page, count, params = queries.page_statements(
            options, table=f'"{self._table_name}"', prefix=self._table_name)
        params["now"] = queries.to_ms(utcnow())

        def read(c: sqlite3.Connection) -> tuple[list[Row], int]:
            rows = fetch_all(c, page, params)
            # A page that is not full ends the matches, so the total is known without
            # counting them again (the count is the dear part of a filtered page: it reads
            # every match, the page stops at the limit). An empty page past the start may
            # have skipped them all: counted.
            if (rows or not options.skip) and (not options.limit or len(rows) < options.limit):
                return rows, options.skip + len(rows)
            return rows, fetch_one(c, count, params)["total"]

        rows, total = await self._connector.read(read)
        jobs = [base.with_state(_job_from_row(row), row["state"]) for row in rows]
        return JobsResult(jobs=jobs, total=total)

    async def get_jobs_overview(self) -> list[JobsOverview]:
        statement, now = self._sql("overview"), queries.to_ms(utcnow())
        rows = await self._connector.read(lambda c: fetch_all(c, statement, {"now": now}))
        counts: dict[str, dict[str, int]] = {}
        for row in rows:  # sorted by name
            entry = counts.setdefault(row["name"], {"total": 0, "paused": 0})
            entry["total"] += row["jobs"]
            entry[row["state"]] = entry.get(row["state"], 0) + row["jobs"]
            entry["paused"] += row["jobs"] if row["disabled"] else 0
        return [JobsOverview(name=name, **entry) for name, entry in counts.items()]

    async def get_distinct_job_names(self) -> list[str]:
        statement = self._sql("distinct_names")
        rows = await self._connector.read(lambda c: fetch_all(c, statement, ()))
        return [row["name"] for row in rows]

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        statement = self._sql("select_by_id")
        row = await self._connector.read(lambda c: fetch_first(c, statement, (str(job_id),)))
        return None if row is None else _job_from_row(row)

    async def get_queue_size(self) -> int:
        statement, now = self._sql("queue_size"), queries.to_ms(utcnow())
        row = await self._connector.read(lambda c: fetch_one(c, statement, (now,)))
        return int(row["size"])

    # -- writing -------------------------------------------------------------------------

    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._change_matching("delete", options, {})

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._change_matching("set_disabled", options, {"disabled": 1})

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._change_matching("set_disabled", options, {"disabled": 0})

    async def _change_matching(
        self, statement_name: str, options: RemoveJobsOptions, extra: dict[str, Any]
    ) -> int:
        if options.matches_nothing():
            return 0
        check_data_filter(options.data)
        clauses, params = queries.remove_criteria(options)
        params.update(extra, stamp=queries.to_ms(utcnow()))
        statement = self._sql(statement_name, where=" AND ".join(clauses))
        return await self._write(lambda c: c.execute(statement, params).rowcount)

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        values = queries.save_params(job, base.check_job(job), last_modified_by)
        stamp = _normalize(now) if now is not None else utcnow()
        saved = await self._write(lambda c: self._save(c, job, values, stamp))
        return job if saved is None else saved

    async def insert_jobs(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        announce: Announcement | None = None,
    ) -> list[JobParameters[Any]]:
        """One transaction per batch: ``executemany`` of the insert, then the rows read back
        (one query) in the same transaction."""
        encoded = base.check_inserts(jobs)
        rows = [queries.save_params(job, data, last_modified_by)
                for job, data in zip(jobs, encoded, strict=True)]
        stored: list[JobParameters[Any]] = []
        for batch in base.chunks(rows, base.INSERT_BATCH):
            stored.extend(await self._write(functools.partial(self._insert_many, batch=batch)))
        return stored

    def _insert_many(
        self, c: sqlite3.Connection, *, batch: Sequence[Row]
    ) -> list[JobParameters[Any]]:
        stamp = queries.to_ms(utcnow())
        ids = [uuid.uuid4().hex for _ in batch]
        # No RETURNING here: executemany cannot step through the rows a statement returns
        # (SQLITE_MISUSE on Python 3.13's sqlite3); the batch is read back below.
        c.executemany(self._sql("insert", returning=""),
                      [{**values, "id": job_id, "stamp": stamp}
                       for values, job_id in zip(batch, ids, strict=True)])
        found = {row["id"]: row for row in fetch_all(c, self._sql("select_by_ids"),
                                                     (json.dumps(ids),))}
        return [_job_from_row(found[job_id]) for job_id in ids]

    async def save_job_states(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        lock_tokens: Mapping[str, datetime] | None = None,
    ) -> list[JobId]:
        """All the state writes in one transaction (one commit, one fsync)."""
        statement, bound = queries.numbered(self._sql("update_state"))
        tokens = lock_tokens or {}
        stamp = queries.to_ms(utcnow())  # one updated_at for the batch, as one transaction
        batch = [
            (job, bound(queries.state_params(job, last_modified_by,
                                             tokens.get(job.id) if job.id is not None else None,
                                             stamp=stamp)))
            for job in jobs
        ]

        def write(c: sqlite3.Connection) -> list[JobId]:
            cursor = c.cursor()  # one for the batch (Connection.execute makes one per row)
            return [
                JobId(str(job.id)) for job, params in batch
                if cursor.execute(statement, params).rowcount == 0
            ]

        # Quiet: this process's runs and their next runs are its processor's to wake for.
        return await self._write(write, quiet=True)

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
            "next_run_at": queries.to_ms(job.next_run_at),
            "now": queries.to_ms(now or utcnow()),
            "by": last_modified_by,
        }
        statement = self._sql("lock")
        row = await self._write(lambda c: fetch_first(c, statement, params))
        return None if row is None else _job_from_row(row)

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        if job.id is not None:
            statement, job_id = self._sql("unlock"), str(job.id)
            await self._write(lambda c: c.execute(statement, (job_id,)).rowcount)

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            statement, ids = self._sql("unlock_many"), json.dumps([str(i) for i in job_ids])
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
            "next_scan_at": queries.to_ms(next_scan_at),
            "lock_deadline": queries.to_ms(lock_deadline),
            "now": queries.to_ms(now or utcnow()),
            "by": last_modified_by,
            "limit": limit,
        }
        stale, due = self._sql("claim_stale"), self._sql("claim_due")

        def claim(c: sqlite3.Connection) -> list[JobParameters[Any]]:
            # Stale locks first, then due jobs for the room left: one transaction.
            columns, taken = fetch_jobs(c, stale, params)
            taken.sort(key=_claim_order(columns))
            if len(taken) < limit:
                columns, more = fetch_jobs(c, due, {**params, "limit": limit - len(taken)})
                more.sort(key=_claim_order(columns))
                taken += more
            decode = decoder(columns)  # both statements return the same columns
            return [decode(row) for row in taken]

        return await self._write(claim, quiet=True)  # takes jobs: nothing new to wake for

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
        params = {**values, "id": uuid.uuid4().hex, "stamp": queries.to_ms(now)}
        return _job_from_row(fetch_one(c, self._sql("insert", returning=_RETURNING), params))

    def _update_saved(
        self, c: sqlite3.Connection, job_id: str, values: Row, now: datetime
    ) -> JobParameters[Any] | None:
        params = {**values, "id": job_id, "stamp": queries.to_ms(now)}
        row = fetch_first(c, self._sql("update_saved"), params)
        return None if row is None else _job_from_row(row)

    def _upsert_single(
        self, c: sqlite3.Connection, values: Row, now: datetime
    ) -> JobParameters[Any] | None:
        row = fetch_first(c, self._sql("select_single"), (values["name"],))
        if row is None:
            return self._insert(c, values, now)
        incoming = queries.from_ms(values["next_run_at"])
        kept = base.single_next_run_at(incoming, queries.from_ms(row["next_run_at"]), now,
                                       same_timing=queries.same_timing(row, values))
        return self._update_saved(c, row["id"], {**values, "next_run_at": queries.to_ms(kept)}, now)

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
                "next_run_at": queries.to_ms(outcome.next_run_at),
                "debounce_started_at": queries.to_ms(outcome.debounce_started_at),
            }
        if stored is None or stored.id is None:
            return self._insert(c, values, now)
        return self._update_saved(c, stored.id, values, now)

    def _find_unique(
        self, c: sqlite3.Connection, job: JobParameters[Any]
    ) -> JobParameters[Any] | None:
        """The first job (insertion order) matching the unique key, by the shared rule.

        SQL narrows the candidates on the keys it can compare exactly enough (a superset of
        the matches); ``matches_unique`` decides.
        """
        unique = job.unique or {}
        clauses, params = ["name = :name"], {"name": job.name}
        for index, (key, value) in enumerate(unique.items()):
            clause = queries.unique_prefilter(key, value, index, params)
            if clause is not None:
                clauses.append(clause)
        cursor = c.execute(self._sql("select_unique", where=" AND ".join(clauses)), params)
        candidates = (_job_from_row(row) for row in cursor)
        return next((j for j in candidates if matches_unique(j, unique, job.name)), None)

    # -- statements and schema (the schema is made in the worker thread) ----------------

    def _sql(self, name: str, **fragments: str) -> str:
        """The statement ``name`` of ``queries.sql`` for this repository's table."""
        return queries.render(
            name, table=f'"{self._table_name}"', prefix=self._table_name, **fragments
        )

    def _create_schema(self, c: sqlite3.Connection) -> None:
        """The table and the indexes, created when missing; a file made by an older version
        (an index missing, or one this version replaced still there) is migrated in the same
        transaction."""
        if not self._schema_exists(c):  # skip the write lock when another process made it
            names = ("create_table", *(f"create_{suffix}" for suffix in queries.INDEX_SUFFIXES),
                     *(f"drop_{suffix}" for suffix in queries.OBSOLETE_INDEX_SUFFIXES))
            schema = [self._sql(name) for name in names]
            in_transaction(c, lambda conn: [conn.execute(s) for s in schema], "BEGIN IMMEDIATE")

    def _has_table(self, c: sqlite3.Connection) -> bool:
        """Whether the jobs table exists (all a reader needs)."""
        names = json.dumps([self._table_name])
        return bool(c.execute(queries.STATEMENTS["schema_objects"], (names,)).fetchall())

    def _schema_exists(self, c: sqlite3.Connection) -> bool:
        """Whether the table and exactly this version's indexes are there."""
        table = self._table_name
        wanted = {table, *(f"{table}_{suffix}" for suffix in queries.INDEX_SUFFIXES)}
        obsolete = [f"{table}_{suffix}" for suffix in queries.OBSOLETE_INDEX_SUFFIXES]
        names = json.dumps([*wanted, *obsolete])
        found = {row["name"] for row in c.execute(queries.STATEMENTS["schema_objects"], (names,))}
        return found == wanted


# -- conversions ---------------------------------------------------------------------------------


def _normalize(value: datetime) -> datetime:
    """Aware UTC at millisecond precision (a naive value is read as UTC, as stored ones are)."""
    moment = queries.from_ms(queries.to_ms(value))
    assert moment is not None
    return moment


def _claim_order(columns: Sequence[str]) -> Callable[[Sequence[Any]], tuple[bool, int, int, int]]:
    """The order of each claim statement, for its rows as tuples with ``columns``:
    next_run_at nulls last, priority desc, rowid."""
    at, priority, rowid = (columns.index(c) for c in ("next_run_at", "priority", "row_order"))

    def order(row: Sequence[Any]) -> tuple[bool, int, int, int]:
        next_run_at = row[at]
        return (next_run_at is None, next_run_at or 0, -row[priority], row[rowid])

    return order
