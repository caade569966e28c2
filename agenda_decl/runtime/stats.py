"""``Agenda.get_running_stats()``: what a started Agenda holds and runs, as Agenda's
``getRunningStats`` reports it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from agenda_decl.interfaces import JobRepository
from agenda_decl.job import Job, JobDefinition
from agenda_decl.runtime.processor import JobProcessor

__all__ = ["RunningStats", "running_stats"]


@attrs.define(kw_only=True, frozen=True)
class RunningStats:
    version: str
    queue_name: str
    total_queue_size_db: int
    config: dict[str, int]
    backend: dict[str, Any]
    job_status: dict[str, dict[str, Any]]
    queued_jobs: int | list[dict[str, Any]]
    running_jobs: int | list[dict[str, Any]]
    locked_jobs: int | list[dict[str, Any]]


async def running_stats(
    processor: JobProcessor,
    *,
    name: str,
    repository: JobRepository,
    definitions: Mapping[str, JobDefinition],
    config: dict[str, int],
    backend: dict[str, Any],
    full_details: bool,
) -> RunningStats:
    """The stats of ``processor`` (jobs as counts, or in full with ``full_details``)."""
    return RunningStats(
        version=_version(),
        queue_name=name,
        total_queue_size_db=await repository.get_queue_size(),
        config=config,
        backend=backend,
        job_status={
            job_name: {**attrs.asdict(status), "config": definitions.get(job_name)}
            for job_name, status in processor.status.items()
        },
        queued_jobs=_listed(processor.queued_jobs(), full_details),
        running_jobs=_listed(list(processor.running.values()), full_details),
        locked_jobs=_listed(list(processor.locked.values()), full_details),
    )


def _listed(jobs: list[Job[Any]], full: bool) -> int | list[dict[str, Any]]:
    if not full:
        return len(jobs)
    return [{**attrs.asdict(job.attrs), "canceled": job.abandon_reason} for job in jobs]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agenda-decl")
    except PackageNotFoundError:
        return "0+unknown"
