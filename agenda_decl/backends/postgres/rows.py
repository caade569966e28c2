"""What the rows of the jobs table become: the job a row holds (``base.rows``: a conversion
generated per column list), the claim's rows in the claim's order, one state write per job of
a batch, and the overview's counts."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agenda_decl._convert import parse_datetime
from agenda_decl._model import JobParameters, JobsOverview
from agenda_decl.backends import base
from agenda_decl.backends.base.rows import Decode, job_decoder
from agenda_decl.backends.postgres.queries import CLAIM_COLUMNS

__all__ = ["claimed_jobs", "latest_per_id", "overview", "row_job"]


def _interval(value: str) -> str | int:
    """The interval column is text (Agenda's); one saved as milliseconds reads as a number."""
    return int(value) if value.isascii() and value.isdigit() else value


#: How each column that is not taken as psycopg gives it is read from its non-NULL ``value``.
_READS = {
    **{column: "instant(value)" for column in base.INSTANT_FIELDS},
    "id": "str(value)", "repeat_interval": "interval(value)",
}
_NAMESPACE = {"instant": parse_datetime, "interval": _interval}


@functools.lru_cache(maxsize=32)
def decoder(columns: tuple[str, ...]) -> Decode:
    """The conversion of a row whose columns are ``columns`` (in order) to a job: other
    columns (``state``, ``claimed_stale``) are ignored."""
    return job_decoder(columns, _READS, _NAMESPACE, "postgres")


def row_job(row: Mapping[str, Any]) -> JobParameters[Any]:
    """The job a row of the table holds (a row read as a dict: column -> value)."""
    return decoder(tuple(row))(tuple(row.values()))


_NEVER = datetime.max.replace(tzinfo=UTC)
_STALE, _NEXT_RUN_AT, _PRIORITY, _CREATED_AT, _ID = (CLAIM_COLUMNS.index(column) for column in (
    "claimed_stale", "next_run_at", "priority", "created_at", "id"))


def claimed_jobs(rows: Sequence[Sequence[Any]]) -> list[JobParameters[Any]]:
    """The jobs of the claim's rows (``CLAIM_COLUMNS``, in any order) in the claim's order:
    stale locks first, then next_run_at nulls last, priority desc, created_at, id."""
    decode = decoder(CLAIM_COLUMNS)
    if len(rows) > 1:
        rows = sorted(rows, key=lambda row: (
            not row[_STALE], row[_NEXT_RUN_AT] is None, row[_NEXT_RUN_AT] or _NEVER,
            -row[_PRIORITY], row[_CREATED_AT] or _NEVER, str(row[_ID])))
    return [decode(row) for row in rows]


def latest_per_id(jobs: Sequence[JobParameters[Any]]) -> list[JobParameters[Any]]:
    """One write per job, the last one requested (a row is updated once per statement)."""
    latest: dict[str, JobParameters[Any]] = {}
    for job in jobs:
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        latest.pop(job.id, None)
        latest[job.id] = job
    return list(latest.values())


def overview(rows: Sequence[Mapping[str, Any]]) -> list[JobsOverview]:
    """The overview of each name from the ``overview`` statement's counts per name, state
    and pause (sorted by name)."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = counts.setdefault(row["name"], {"total": 0, "paused": 0})
        entry["total"] += row["jobs"]
        entry[row["state"]] = entry.get(row["state"], 0) + row["jobs"]
        entry["paused"] += row["jobs"] if row["paused"] else 0
    return [JobsOverview(name=name, **entry) for name, entry in counts.items()]
