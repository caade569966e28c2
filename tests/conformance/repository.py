"""What the JobRepository conformance tests share: a job of a name, saved, and instants
relative to now."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agenda_decl._clock import utcnow
from agenda_decl._model import JobParameters, JobsQueryOptions
from agenda_decl.interfaces import JobRepository


def at(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def job(name: str = "test-job", **fields: Any) -> JobParameters[Any]:
    fields.setdefault("next_run_at", utcnow())
    fields.setdefault("data", {})
    return JobParameters(name=name, **fields)


async def save(repo: JobRepository, name: str = "test-job", **fields: Any) -> JobParameters[Any]:
    return await repo.save_job(job(name, **fields))


async def names_of(repo: JobRepository, **options: Any) -> list[str]:
    result = await repo.query_jobs(JobsQueryOptions(**options))
    return [j.name for j in result.jobs]


async def claim(repository: JobRepository, name: str, **kwargs: Any) -> JobParameters[Any] | None:
    now = utcnow()
    return await repository.get_next_job_to_run(
        name,
        kwargs.get("next_scan_at", now + timedelta(seconds=5)),
        kwargs.get("lock_deadline", now - timedelta(minutes=10)),
        now,
        last_modified_by="tester",
    )
