"""What storage holds for one owner: its managed jobs, grouped by the schedule they stand for,
in the order every applier agrees on, and the fingerprint a plan records of them.

A managed job is one whose ``data`` carries the owner's marker (``__managed_by__``); its
schedule is identified by (job name, ``__schedule_key__``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agenda_decl._model import JobId, JobParameters, JobsQueryOptions
from agenda_decl.agenda import Agenda
from agenda_decl.config.payload import MANAGED_BY_KEY, SCHEDULE_KEY_KEY

__all__ = [
    "COMPARED_FIELDS",
    "by_identity",
    "delete_filter",
    "fingerprint",
    "id_order",
    "job_id",
    "managed_jobs",
    "normalized_field",
]

#: The stored fields a declared schedule sets, in the order diffs are shown.
COMPARED_FIELDS: tuple[str, ...] = (
    "repeat_interval",
    "repeat_timezone",
    "repeat_at",
    "start_date",
    "end_date",
    "skip_days",
    "disabled",
    "priority",
    "type",
    "data",
)
_NO_KEY = "<no key"


async def managed_jobs(agenda: Agenda, owner: str) -> list[JobParameters[Any]]:
    """This owner's managed jobs, smallest id first."""
    result = await agenda.query_jobs(JobsQueryOptions(data={MANAGED_BY_KEY: owner}))
    jobs: list[JobParameters[Any]] = [
        job for job in result.jobs
        if isinstance(job.data, Mapping) and job.data.get(MANAGED_BY_KEY) == owner
    ]
    return sorted(jobs, key=lambda job: id_order(job_id(job)))


def by_identity(
    jobs: Sequence[JobParameters[Any]],
) -> dict[tuple[str, str], list[JobParameters[Any]]]:
    """Jobs grouped by what identifies a schedule: (job name, schedule key)."""
    groups: dict[tuple[str, str], list[JobParameters[Any]]] = {}
    for job in jobs:
        groups.setdefault((job.name, key_of(job)), []).append(job)
    return groups


def key_of(job: JobParameters[Any]) -> str:
    key = job.data.get(SCHEDULE_KEY_KEY) if isinstance(job.data, Mapping) else None
    return key if isinstance(key, str) else f"{_NO_KEY}: job {job.id}>"


def job_id(job: JobParameters[Any]) -> JobId:
    assert job.id is not None  # stored jobs always have one
    return job.id


def id_order(job_id: str) -> tuple[int, int, str]:
    """Numeric ids (SQL stores) in numeric order, others as text: the same on every machine,
    which is all concurrent appliers need to agree on the survivor."""
    return (0, int(job_id), "") if job_id.isdigit() else (1, 0, job_id)


def delete_filter(owner: str, key: str) -> dict[str, str]:
    """The data filter of a delete: only a job that is still ours (and still holds the key)
    is removed."""
    if key.startswith(_NO_KEY):
        return {MANAGED_BY_KEY: owner}
    return {MANAGED_BY_KEY: owner, SCHEDULE_KEY_KEY: key}


def normalized_field(name: str, value: Any) -> Any:
    """Stored values as compared: stores may hand an interval back as text, skip days in
    another order, an empty list as null."""
    if name == "repeat_interval":
        return None if value in (None, "") else str(value)
    if name in ("repeat_timezone", "repeat_at"):
        return value or None
    if name == "skip_days":
        return sorted(value) if value else None
    if name == "data":
        return json.loads(json.dumps(value, sort_keys=True, default=str))
    return value


def fingerprint(jobs: Iterable[JobParameters[Any]]) -> str:
    """A digest of what a plan decides from: which managed jobs there are (id, name) and the
    fields a schedule sets (:data:`COMPARED_FIELDS`). What workers write as they run the jobs
    (next and last run, locks, failures) is left out: running a job does not make a plan
    stale, and apply reads those fields afresh."""
    described = [
        [str(job.id), job.name,
         {name: normalized_field(name, getattr(job, name)) for name in COMPARED_FIELDS}]
        for job in sorted(jobs, key=lambda job: id_order(job_id(job)))
    ]
    text = json.dumps(described, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
