"""The in-memory twin of each store's WHERE and ORDER BY clauses: which jobs a claim, a query or
a removal matches, and the order a query returns them in."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import attrs

from agenda_decl._job_data import data_contains, encode_data
from agenda_decl._model import (
    JobParameters,
    JobsQueryOptions,
    JobWithState,
    RemoveJobsOptions,
    compute_job_state,
)
from agenda_decl.backends import base


def claimable(job: JobParameters[Any], next_scan_at: datetime, lock_deadline: datetime) -> bool:
    if job.disabled:
        return False
    if job.locked_at is None:
        return job.next_run_at is not None and job.next_run_at <= next_scan_at
    return job.locked_at <= lock_deadline


def _id_name_match(job: JobParameters[Any], criteria: base.IdNameCriteria) -> bool:
    return (
        (criteria.ids is None or str(job.id) in criteria.ids)
        and (criteria.names is None or job.name in criteria.names)
        and (criteria.not_names is None or job.name not in criteria.not_names)
    )


def remove_match(
    job: JobParameters[Any], options: RemoveJobsOptions, criteria: base.IdNameCriteria
) -> bool:
    return _id_name_match(job, criteria) and (
        options.data is None or data_contains(job.data, options.data)
    )


def query_match(
    job: JobParameters[Any], options: JobsQueryOptions, criteria: base.IdNameCriteria
) -> bool:
    return (
        _id_name_match(job, criteria)
        and (options.search is None or options.search.lower() in job.name.lower())
        and (options.data is None or data_contains(job.data, options.data))
        and (options.include_disabled or not job.disabled)
    )


def state_match(job: JobWithState[Any], state: str | None) -> bool:
    if state is None:
        return True
    return job.disabled if state == "paused" else job.state == state


def with_computed_state(job: JobParameters[Any], now: datetime) -> JobWithState[Any]:
    values = attrs.asdict(job, recurse=False)
    return JobWithState(**copy.deepcopy(values), state=compute_job_state(job, now))


def sort_spec(options: JobsQueryOptions) -> list[tuple[str, str]]:
    if options.sort:
        return list(options.sort.items())
    return [("next_run_at", "desc"), ("last_run_at", "desc")]


def sorted_nulls_last(
    jobs: list[JobWithState[Any]], key: str, *, descending: bool
) -> list[JobWithState[Any]]:
    def value(job: JobWithState[Any]) -> Any:
        raw = getattr(job, key)
        return encode_data(raw, name=job.name) if key == "data" else raw

    present = [job for job in jobs if getattr(job, key) is not None]
    missing = [job for job in jobs if getattr(job, key) is None]
    return sorted(present, key=value, reverse=descending) + missing
