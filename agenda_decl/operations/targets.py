"""Finding the jobs an operator acts on: by id, by name (and computed state), or the job of one
of the file's schedules. A job that cannot be found is an error (``JobNotFoundError``) with a
message naming what was looked for; nothing is done to the others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from agenda_decl._model import (
    JobParameters,
    JobsQueryOptions,
    JobState,
    JobWithState,
    compute_job_state,
)
from agenda_decl.agenda import Agenda
from agenda_decl.config.model import AgendaConfig
from agenda_decl.config.payload import MANAGED_BY_KEY, SCHEDULE_KEY_KEY
from agenda_decl.errors import AgendaError, JobNotFoundError

__all__ = [
    "OperationRefusedError",
    "found_by_ids",
    "jobs_of_name",
    "plain",
    "repeats",
    "schedule_job",
    "schedule_of",
    "state_of",
]


class OperationRefusedError(AgendaError):
    """An operator's action that does not apply to the job (retrying a job that did not
    fail, resuming a schedule the file declares disabled, ...); nothing was written."""


def plain(job: JobParameters[Any]) -> JobParameters[Any]:
    """A job's stored fields alone (a query's ``JobWithState`` carries its state too)."""
    return JobParameters(**{field.name: getattr(job, field.name)
                            for field in attrs.fields(JobParameters)})


def state_of(job: JobParameters[Any], agenda: Agenda) -> JobState:
    return job.state if isinstance(job, JobWithState) else compute_job_state(
        job, agenda.clock.now())


def repeats(job: JobParameters[Any]) -> bool:
    """Whether the job repeats (an interval, a cron expression or a time of day)."""
    return bool(job.repeat_interval or job.repeat_at)


def schedule_of(job: JobParameters[Any]) -> tuple[str, str] | None:
    """(owner, schedule key) of a job that stands for a schedule of some agenda.yaml."""
    data = job.data
    if not isinstance(data, Mapping) or MANAGED_BY_KEY not in data:
        return None
    return str(data[MANAGED_BY_KEY]), str(data.get(SCHEDULE_KEY_KEY))


async def found_by_ids(agenda: Agenda, ids: Sequence[str]) -> list[JobParameters[Any]]:
    """The jobs with these ids, in the order given; ``JobNotFoundError`` naming every id that
    matches no job."""
    found: list[JobParameters[Any]] = []
    missing: list[str] = []
    for job_id in dict.fromkeys(ids):  # each once, in order
        job = await agenda.repository.get_job_by_id(job_id)
        if job is None:
            missing.append(job_id)
        else:
            found.append(job)
    if missing:
        listed = ", ".join(missing)
        raise JobNotFoundError(f"no job with id {listed}" if len(missing) == 1
                               else f"no jobs with ids {listed}")
    return found


async def jobs_of_name(
    agenda: Agenda, name: str, *, state: JobState | None = None,
    config: AgendaConfig | None = None,
) -> list[JobWithState[Any]]:
    """Every job of ``name`` (in ``state``, when given). A name that has no job at all and
    that the file does not declare either is an error: most likely a typo."""
    result = await agenda.query_jobs(JobsQueryOptions(name=name, state=state))
    if result.jobs:
        return result.jobs
    if (config is not None and name in config.jobs) or (
            state is not None and await _has_jobs(agenda, name)):
        return []
    raise JobNotFoundError(f"no job named {name!r} in storage"
                           + _declared_hint(config))


async def _has_jobs(agenda: Agenda, name: str) -> bool:
    return bool((await agenda.query_jobs(JobsQueryOptions(name=name, limit=1))).total)


def _declared_hint(config: AgendaConfig | None) -> str:
    if config is None or not config.jobs:
        return ""
    return f" (jobs of {config.owner!r}: {', '.join(sorted(config.jobs))})"


async def schedule_job(
    agenda: Agenda, config: AgendaConfig, name: str, key: str | None
) -> JobParameters[Any]:
    """The stored job of the file's schedule of job ``name`` with ``key`` (default: the job's
    only schedule, else the one without a key)."""
    declared = [schedule.schedule_key for schedule in config.schedules if schedule.job == name]
    key = key or (declared[0] if len(declared) == 1 else name)
    if key not in declared:
        keys = ", ".join(repr(k) for k in declared) or "none"
        raise JobNotFoundError(
            f"agenda.yaml declares no schedule of job {name!r} with key {key!r} "
            f"(its schedules' keys: {keys})")
    result = await agenda.query_jobs(JobsQueryOptions(
        name=name, data={MANAGED_BY_KEY: config.owner, SCHEDULE_KEY_KEY: key}))
    if not result.jobs:
        raise JobNotFoundError(f"the schedule {key!r} of job {name!r} is not in storage yet: "
                               "run agenda-decl apply first")
    return result.jobs[0]
