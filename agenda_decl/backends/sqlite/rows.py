"""Rows of the jobs table as :class:`JobParameters`, and the claim's rows read as tuples.

A worker reads every job it runs through here (the claim returns whole rows), so the
conversion is generated once per column list, the way attrs generates its own methods: each
field set straight from its column (instants from integer milliseconds, data and skip_days
from JSON text, the flags as bools), no keyword handling, no dict per row. It builds what
``_convert.job_from_row`` builds from the same values (an absent or NULL column leaves the
field's default), in a fifth of the time.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from agenda_decl._model import JobParameters
from agenda_decl.backends import base
from agenda_decl.backends.sqlite.queries import EPOCH, MS

Decode = Callable[[Sequence[Any]], JobParameters[Any]]

#: Columns read from JSON text, and the integer flags read as bools.
_JSON_COLUMNS = frozenset({"data", "skip_days"})
_FLAG_COLUMNS = frozenset({"disabled", "fork"})
#: Fields a row never sets (``_convert.job_from_row`` drops them too): save options only.
_NOT_STORED = frozenset({"unique", "unique_opts"})


@functools.lru_cache(maxsize=32)
def decoder(columns: tuple[str, ...]) -> Decode:
    """The conversion of a row whose columns are ``columns`` (in order) to a job: extra
    columns (``created_at``, ``row_order``, ``state``) are ignored, a field without a column
    keeps its default."""
    lines = ["def decode(row):", "    job = new(cls)"]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": JobParameters, "epoch": EPOCH,
                                 "ms": MS, "loads": json.loads}
    position = {column: index for index, column in enumerate(columns)}
    for field in attrs.fields(JobParameters):
        name, default = field.name, field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            raise TypeError(f"JobParameters.{name} has a factory default: decode it by hand")
        namespace[f"default_{name}"] = default
        index = None if name in _NOT_STORED else position.get(name)
        if index is None:
            lines.append(f"    job.{name} = default_{name}")
            continue
        lines.append(f"    value = row[{index}]")
        lines.append(f"    job.{name} = default_{name} if value is None else {_read(name)}")
    lines.append("    return job")
    exec(compile("\n".join(lines), "<sqlite job row decoder>", "exec"), namespace)
    decode: Decode = namespace["decode"]
    return decode


def _read(column: str) -> str:
    """The expression that reads ``value``, the non-NULL value of ``column``."""
    if column in base.INSTANT_FIELDS:
        return "epoch + value * ms"
    if column in _JSON_COLUMNS:
        return "loads(value)"
    if column in _FLAG_COLUMNS:
        return "bool(value)"
    return "value"


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
