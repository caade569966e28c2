"""What an operator does to stored jobs: retry, run now, delete, purge.

Every write goes through the store's ordinary calls (``save_job`` for an update by id, which
never touches what workers write: the lock, run times, failures; ``remove_jobs``), and a
saved job is announced on the notification channel, so workers pick it up at once.

Decisions (README, "Operating jobs"):

* **retry** runs a failed job again now: ``next_run_at`` becomes now, nothing else changes.
  ``fail_count`` is kept: it is the job's failure history and what its backoff counts, so a
  job past its retry limit gets this one run and, if it fails again, no automatic retries
  (an operator's retry during an incident starts no retry storm). ``fail_reason`` and
  ``failed_at`` stay until the run replaces them, so the job reads ``failed`` until then.
* **run now** of a repeating job (a schedule) enqueues a one-off copy with the same data
  (the schedule markers left out) and priority, due now: the schedule's own job keeps its
  ``next_run_at``, phase, run history and failures. Setting the repeating job's
  ``next_run_at`` to now instead would make the run compute its next run from now, which
  moves an ``every`` schedule's phase (every hour at :00 would become every hour at :20).
  Run now of a one-off job moves its ``next_run_at`` to now (it has no schedule to keep).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from agenda_decl._model import JobParameters, JobsQueryOptions, RemoveJobsOptions
from agenda_decl.agenda import Agenda
from agenda_decl.config.payload import RESERVED_DATA_KEYS
from agenda_decl.job import Job
from agenda_decl.operations.targets import OperationRefusedError, plain, repeats, state_of

__all__ = ["PURGE_PAGE", "RunNow", "purge_completed", "remove", "retry", "run_now"]

#: Jobs read per query while purging.
PURGE_PAGE = 500


async def retry(agenda: Agenda, jobs: Sequence[JobParameters[Any]]) -> list[JobParameters[Any]]:
    """Run failed jobs again now (module docstring); every job must be ``failed``, else
    :class:`OperationRefusedError` and nothing is written."""
    for job in jobs:
        state = state_of(job, agenda)
        if state != "failed":
            raise OperationRefusedError(
                f"job {job.id} ({job.name}) is {state}, not failed: only failed jobs are "
                "retried (agenda-decl jobs run-now runs a job once now)")
    now = agenda.clock.now()
    return [await _save(agenda, attrs.evolve(plain(job), next_run_at=now)) for job in jobs]


@attrs.define(kw_only=True, frozen=True)
class RunNow:
    """What run now did: ``copy`` (a one-off copy of a repeating job, ``job`` is the copy)
    or ``moved`` (a one-off job's next run moved to now)."""

    how: str
    job: JobParameters[Any]
    of: JobParameters[Any]


async def run_now(agenda: Agenda, job: JobParameters[Any]) -> RunNow:
    """Run ``job`` once now without changing its schedule (module docstring)."""
    now = agenda.clock.now()
    if repeats(job):
        copy: JobParameters[Any] = JobParameters(
            name=job.name, data=_payload_only(job.data), priority=job.priority,
            next_run_at=now)
        return RunNow(how="copy", job=await _save(agenda, copy), of=job)
    state = state_of(job, agenda)
    if state == "running":
        raise OperationRefusedError(f"job {job.id} ({job.name}) is running now")
    if job.disabled:
        raise OperationRefusedError(
            f"job {job.id} ({job.name}) is paused: resume it first (agenda-decl jobs resume "
            f"{job.name})")
    moved = await _save(agenda, attrs.evolve(plain(job), next_run_at=now))
    return RunNow(how="moved", job=moved, of=job)


def _payload_only(data: Any) -> Any:
    """The data of a schedule's job without agenda-decl's markers: the copy is a plain
    one-off job, which no ``apply`` takes for the schedule's own."""
    if not isinstance(data, Mapping):
        return data
    return {key: value for key, value in data.items() if key not in RESERVED_DATA_KEYS}


async def _save(agenda: Agenda, params: JobParameters[Any]) -> JobParameters[Any]:
    saved = await Job(agenda, params).save()
    return saved.attrs


async def remove(agenda: Agenda, jobs: Sequence[JobParameters[Any]]) -> int:
    """Delete these jobs (each still of its name); return how many were deleted. A running
    job's run goes on; its end is not recorded."""
    by_name: dict[str, list[str]] = {}
    for job in jobs:
        assert job.id is not None
        by_name.setdefault(job.name, []).append(job.id)
    removed = 0
    for name, ids in by_name.items():
        removed += await agenda.cancel(RemoveJobsOptions(ids=ids, name=name))
    return removed


async def purge_completed(
    agenda: Agenda, older_than: timedelta, *, names: Sequence[str] | None = None,
    dry_run: bool = False,
) -> int:
    """Delete completed jobs (the computed state: one-off jobs that ran and succeeded) that
    finished more than ``older_than`` ago, of ``names`` (None: every name). Returns how many
    were deleted (with ``dry_run``, how many would be). A job without a finish time is kept."""
    if names is not None and not names:
        return 0
    cutoff = agenda.clock.now() - older_than
    count = skip = 0
    while True:
        page = await agenda.query_jobs(JobsQueryOptions(
            names=list(names) if names is not None else None, state="completed",
            sort={"last_finished_at": "asc"}, skip=skip, limit=PURGE_PAGE))
        old = [job.id for job in page.jobs if _finished_before(job, cutoff)]
        if old and not dry_run:
            count += await agenda.cancel(RemoveJobsOptions(ids=[i for i in old if i]))
            skip += len(page.jobs) - len(old)
        else:
            count += len(old)
            skip += len(page.jobs)
        if len(page.jobs) < PURGE_PAGE:
            return count


def _finished_before(job: JobParameters[Any], cutoff: datetime) -> bool:
    return job.last_finished_at is not None and job.last_finished_at < cutoff
