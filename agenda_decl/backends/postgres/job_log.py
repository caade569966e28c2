"""The PostgreSQL job log: Agenda 6.2's ``agenda_logs`` table (``job_log.sql``), the one
@agendajs/postgres-backend writes, so Node, Agendash and agenda-decl share its entries.

The logger borrows the repository's pool (``PostgresBackend(...).logger``) or a pool passed
in; it never closes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

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
from agenda_decl.connectors.postgres import Pool
from agenda_decl.errors import InvalidOptionError
from agenda_decl.interfaces import JobLogger

__all__ = ["PostgresJobLogger", "check_log_table_name"]

STATEMENTS = load_named_blocks("agenda_decl.backends.postgres", "job_log.sql")
#: Node's index names: ``<table><suffix>``; the statement of each is ``create<suffix>``.
INDEX_SUFFIXES = ("_timestamp_idx", "_job_id_idx", "_job_name_idx")
MAX_TABLE_NAME = 63 - max(len(suffix) for suffix in INDEX_SUFFIXES)
#: Node's VARCHAR(255) columns: longer values are cut to fit rather than failing the insert.
_VARCHAR_255 = ("job_id", "job_name", "agenda_name")


def check_log_table_name(value: str) -> str:
    base.validate_identifier(value, field="log_table_name")
    if len(value) > MAX_TABLE_NAME:
        raise InvalidOptionError(
            f"invalid log_table_name: {value!r} is longer than {MAX_TABLE_NAME} characters "
            "(the index names derived from it must fit in 63)"
        )
    return value


@functools.cache
def _statement(name: str, table: str) -> sql.Composed:
    return _render(name, table)


def _render(name: str, table: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(STATEMENTS[name]).format(table=sql.Identifier(table), **parts)


class PostgresJobLogger(JobLogger):
    """Job log entries in ``table_name`` (Node's ``logTableName``, default ``agenda_logs``)
    of the database ``pool`` connects to: an ``AsyncConnectionPool``, or a function that
    returns the pool in use (the backend passes its repository's). ``ensure_schema``
    (default) creates the table and its indexes at :meth:`connect` where missing;
    ``read_only`` creates and writes nothing. A missing table reads as empty."""

    def __init__(
        self,
        pool: Pool | Callable[[], Pool],
        *,
        table_name: str = "agenda_logs",
        ensure_schema: bool = True,
        retention: JobLogRetention | None = None,
        read_only: bool = False,
    ) -> None:
        self._pool = pool
        self._table = check_log_table_name(table_name)
        self._ensure_schema = ensure_schema and not read_only
        self._read_only = read_only
        self.retention = retention

    def __repr__(self) -> str:
        return f"PostgresJobLogger(table_name={self._table!r})"

    @property
    def table_name(self) -> str:
        return self._table

    @property
    def pool(self) -> Pool:
        return self._pool if isinstance(self._pool, AsyncConnectionPool) else self._pool()

    async def connect(self) -> None:
        if not self._ensure_schema:
            return
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(STATEMENTS["schema_lock"], (f"agenda_decl:logs:{self._table}",))
            table = sql.Identifier(self._table)
            found = await self._fetch(conn, STATEMENTS["existing"],
                                      {"table": table.as_string(conn)})
            if not found[0]["has_table"]:
                await conn.execute(_statement("create_table", self._table))
            for suffix in INDEX_SUFFIXES:
                if self._table + suffix not in found[0]["indexes"]:
                    index = sql.Identifier(self._table + suffix)
                    await conn.execute(_render(f"create{suffix}", self._table, index=index))

    # -- writing ---------------------------------------------------------------------------

    async def log(self, entry: JobLogEntry) -> None:
        await self.log_many([entry])

    async def log_many(self, entries: Sequence[JobLogEntry]) -> None:
        base.refuse_write(self._read_only, repr(self))
        rows = [_row(entry) for entry in entries]
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(_statement("insert", self._table), rows)

    async def clear_logs(self, query: JobLogQuery | None = None) -> int:
        base.refuse_write(self._read_only, repr(self))
        where, params = _where(query)
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(_render("delete", self._table, where=where),
                                            params)
                return int(cursor.rowcount)
        except psycopg.errors.UndefinedTable:
            return 0

    # -- reading ---------------------------------------------------------------------------

    async def get_logs(self, query: JobLogQuery | None = None) -> JobLogQueryResult:
        query = query or JobLogQuery()
        where, params = _where(query)
        direction = sql.SQL("ASC" if query.sort == "asc" else "DESC")
        select = _render("select_page", self._table, where=where, direction=direction)
        count = _render("count", self._table, where=where)
        paged = {**params, "limit": query.limit, "offset": query.offset}
        try:
            async with self.pool.connection() as conn:
                rows = await self._fetch(conn, select, paged)
                total = (await self._fetch(conn, count, params))[0]["total"]
        except psycopg.errors.UndefinedTable:
            return JobLogQueryResult(entries=[], total=0)
        return JobLogQueryResult(entries=[_entry(row) for row in rows], total=total)

    @staticmethod
    async def _fetch(conn: psycopg.AsyncConnection[Any], statement: Any, params: Any
                     ) -> list[dict[str, Any]]:
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(statement, params)
            return await cursor.fetchall()


#: The criteria of a query: each names its parameter.
_FILTERS: dict[str, LiteralString] = {
    "job_id": "job_id = %(job_id)s",
    "job_name": "job_name = %(job_name)s",
    "levels": "level = ANY(%(levels)s)",
    "events": "event = ANY(%(events)s)",
    "from_date": "timestamp >= %(from_date)s",
    "to_date": "timestamp <= %(to_date)s",
}


def _where(query: JobLogQuery | None) -> tuple[sql.Composable, dict[str, Any]]:
    """The WHERE clause of ``query`` (the fixed fragments of :data:`_FILTERS`) and its
    parameters."""
    if query is None:
        return sql.SQL(""), {}
    levels, events = query.levels, query.events
    values: dict[str, Any] = {
        "job_id": query.job_id, "job_name": query.job_name,
        "levels": None if levels is None else list(levels),
        "events": None if events is None else list(events),
        "from_date": query.from_date, "to_date": query.to_date,
    }
    params = {key: value for key, value in values.items() if value is not None}
    if not params:
        return sql.SQL(""), params
    conditions = sql.SQL(" AND ").join(sql.SQL(_FILTERS[key]) for key in params)
    return sql.SQL("WHERE {}").format(conditions), params


def _row(entry: JobLogEntry) -> dict[str, Any]:
    row = to_row(entry)
    for column in _VARCHAR_255:
        if row[column] is not None:
            row[column] = row[column][:255]
    row["meta"] = None if entry.meta is None else Jsonb(entry.meta)
    return row


def _entry(row: dict[str, Any]) -> JobLogEntry:
    # The microseconds stay: an Agenda writes them to order the entries of one millisecond.
    return from_row({**row, "timestamp": row["timestamp"].astimezone(UTC)})
