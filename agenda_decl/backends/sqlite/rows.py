"""Rows of the SQLite jobs table as :class:`JobParameters` (``base.rows``: a conversion
generated per column list), and the claim's rows read as tuples. Instants are integer
milliseconds, data and skip_days JSON text, the flags integers.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from typing import Any

from agenda_decl._model import JobParameters
from agenda_decl.backends import base
from agenda_decl.backends.base.rows import Decode, job_decoder
from agenda_decl.backends.sqlite.queries import EPOCH, MS

#: How each column that is not taken as it comes is read from its non-NULL ``value``.
_READS = {
    **{column: "epoch + value * ms" for column in base.INSTANT_FIELDS},
    "data": "loads(value)", "skip_days": "loads(value)",
    "disabled": "bool(value)", "fork": "bool(value)",
}
_NAMESPACE = {"epoch": EPOCH, "ms": MS, "loads": json.loads}


@functools.lru_cache(maxsize=32)
def decoder(columns: tuple[str, ...]) -> Decode:
    """The conversion of a row whose columns are ``columns`` (in order) to a job: extra
    columns (``created_at``, ``row_order``, ``state``) are ignored."""
    return job_decoder(columns, _READS, _NAMESPACE, "sqlite")


def job_from_row(row: dict[str, Any]) -> JobParameters[Any]:
    """A job from a row read as a dict (column -> value, in the statement's order)."""
    return decoder(tuple(row))(tuple(row.values()))


def fetch_jobs(
    c: sqlite3.Connection, statement: str, params: Any
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The column names and the rows of ``statement``, as tuples (no dict per row: the
    claim reads whole rows of every job a worker runs)."""
    cursor = c.cursor()
    cursor.row_factory = None
    rows = cursor.execute(statement, params).fetchall()
    columns = tuple(column[0] for column in cursor.description or ())
    return columns, rows
