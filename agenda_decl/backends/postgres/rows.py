"""What the rows of the jobs table become: the job a row holds, the order the claim
statement returns rows in, one state write per job of a batch, and the overview's counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agenda_decl._convert import job_from_row
from agenda_decl._model import JobParameters, JobsOverview

__all__ = ["claim_order", "latest_per_id", "overview", "row_job"]


def row_job(row: Mapping[str, Any]) -> JobParameters[Any]:
    """The job a row of the table holds."""
    values = dict(row)
    values["id"] = str(row["id"])
    interval = values.get("repeat_interval")
    # The column is text (Agenda's); an interval saved as milliseconds comes back as a number.
    if isinstance(interval, str) and interval.isascii() and interval.isdigit():
        values["repeat_interval"] = int(interval)
    return job_from_row(values)


def claim_order(row: Mapping[str, Any]) -> tuple[bool, bool, datetime, int, datetime, str]:
    """The claim statement's order: stale locks first, then next_run_at nulls last, priority
    desc, created_at, id."""
    never = datetime.max.replace(tzinfo=UTC)
    return (
        not row["claimed_stale"],
        row["next_run_at"] is None,
        row["next_run_at"] or never,
        -row["priority"],
        row["created_at"] or never,
        str(row["id"]),
    )


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
