"""The SQLite job log: Agenda 6.2's ``agenda_logs`` table of the PostgreSQL backend, in the
jobs' file (see ``job_log.sql``).

It shares the repository's connection and thread (``SQLiteConnector``), so its writes queue
with the jobs' and never need a second connection to the file.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any, LiteralString

from agenda_decl._job_log import (
    JobLogEntry,
    JobLogQuery,
    JobLogQueryResult,
    JobLogRetention,
    from_row,
    to_row,
)
from agenda_decl._named_blocks import load_named_blocks
from agenda_decl.backends import base
from agenda_decl.backends.sqlite.queries import from_ms, to_ms
from agenda_decl.connectors.sqlite import Row, SQLiteConnector, fetch_all, fetch_first, fetch_one
from agenda_decl.interfaces import JobLogger

__all__ = ["SQLiteJobLogger"]

STATEMENTS = load_named_blocks("agenda_decl.backends.sqlite", "job_log.sql")
INDEX_SUFFIXES = ("timestamp_idx", "job_id_idx", "job_name_idx")

#: The criteria of a query, each with its own parameter.
_FILTERS: dict[str, LiteralString] = {
    "job_id": "job_id = :job_id",
    "job_name": "job_name = :job_name",
    "levels": "level IN (SELECT value FROM json_each(:levels))",
    "events": "event IN (SELECT value FROM json_each(:events))",
    "from_ms": "timestamp >= :from_ms",
    "to_ms": "timestamp <= :to_ms",
}


class SQLiteJobLogger(JobLogger):
    """Job log entries in ``table_name`` of the file ``connector`` opens (the repository's:
    ``SQLiteBackend(logging=True)`` or ``SQLiteBackend(...).logger`` make one). With
    ``read_only`` nothing is created or written; a missing table reads as empty."""

    def __init__(
        self,
        connector: SQLiteConnector,
        *,
        table_name: str = "agenda_logs",
        retention: JobLogRetention | None = None,
        read_only: bool = False,
    ) -> None:
        self._connector = connector
        self._table_name = base.validate_identifier(table_name, field="log_table_name")
        self._read_only = read_only
        self.retention = retention

    def __repr__(self) -> str:
        return f"SQLiteJobLogger(table_name={self._table_name!r})"

    @property
    def table_name(self) -> str:
        return self._table_name

    def _sql(self, name: str, **parts: str) -> str:
        return STATEMENTS[name].format(table=f'"{self._table_name}"', prefix=self._table_name,
                                       **parts)

    async def connect(self) -> None:
        if self._read_only:
            return
        names = ("create_table", *(f"create_{suffix}" for suffix in INDEX_SUFFIXES))
        schema = [self._sql(name) for name in names]
        await self._connector.write(lambda c: [c.execute(statement) for statement in schema])

    # -- writing ---------------------------------------------------------------------------

    async def log(self, entry: JobLogEntry) -> None:
        await self.log_many([entry])

    async def log_many(self, entries: Sequence[JobLogEntry]) -> None:
        base.refuse_write(self._read_only, repr(self))
        rows = [_row(entry) for entry in entries]
        insert = self._sql("insert")
        await self._connector.write(lambda c: c.executemany(insert, rows))

    async def clear_logs(self, query: JobLogQuery | None = None) -> int:
        base.refuse_write(self._read_only, repr(self))
        where, params = _where(query)
        delete = self._sql("delete", where=where)

        def work(c: sqlite3.Connection) -> int:
            return c.execute(delete, params).rowcount if self._present(c) else 0

        return await self._connector.write(work)

    # -- reading ---------------------------------------------------------------------------

    async def get_logs(self, query: JobLogQuery | None = None) -> JobLogQueryResult:
        query = query or JobLogQuery()
        where, params = _where(query)
        direction = "ASC" if query.sort == "asc" else "DESC"
        select = self._sql("select_page", where=where, direction=direction)
        count = self._sql("count", where=where)
        paged = {**params, "limit": -1 if query.limit is None else query.limit,
                 "offset": query.offset}

        def work(c: sqlite3.Connection) -> tuple[list[Row], int]:
            if not self._present(c):
                return [], 0
            return fetch_all(c, select, paged), fetch_one(c, count, params)["total"]

        rows, total = await self._connector.read(work)
        return JobLogQueryResult(entries=[_entry(row) for row in rows], total=total)

    def _present(self, c: sqlite3.Connection) -> bool:
        return fetch_first(c, STATEMENTS["table_present"], (self._table_name,)) is not None


def _where(query: JobLogQuery | None) -> tuple[str, dict[str, Any]]:
    if query is None:
        return "1", {}
    levels, events = query.levels, query.events
    values: dict[str, Any] = {
        "job_id": query.job_id,
        "job_name": query.job_name,
        "levels": None if levels is None else json.dumps(levels),
        "events": None if events is None else json.dumps(events),
        "from_ms": to_ms(query.from_date),
        "to_ms": to_ms(query.to_date),
    }
    params = {key: value for key, value in values.items() if value is not None}
    return " AND ".join(_FILTERS[key] for key in params) or "1", params


def _row(entry: JobLogEntry) -> dict[str, Any]:
    row = to_row(entry)
    row["id"] = str(uuid.uuid4())
    row["timestamp"] = to_ms(entry.timestamp)
    row["meta"] = None if entry.meta is None else json.dumps(entry.meta)
    return row


def _entry(row: Row) -> JobLogEntry:
    meta = row["meta"]
    return from_row({**row, "timestamp": from_ms(row["timestamp"]),
                     "meta": None if meta is None else json.loads(meta)})
