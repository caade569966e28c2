"""The in-memory store: a complete ``JobRepository`` in a dict, run through the same
conformance suite as the real stores (``agenda_decl.testing`` re-exports it for tests)."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from agenda_decl._clock import utcnow
from agenda_decl._job_data import check_data_filter, matches_unique, truncate_reason
from agenda_decl._model import (
    PROCESSOR_FIELDS,
    STATE_FIELDS,
    TIMING_FIELDS,
    Announcement,
    JobId,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
    compute_job_state,
)
from agenda_decl.backends import base
from agenda_decl.backends.memory.queries import (
    claimable,
    query_match,
    remove_match,
    sort_spec,
    sorted_nulls_last,
    state_match,
    with_computed_state,
)
from agenda_decl.errors import job_not_found, lock_lost


class InMemoryJobRepository(base.ClaimsInBatches):
    """A complete :class:`JobRepository` in a dict. Every call is atomic (no awaits inside)."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobParameters[Any]] = {}
        self._order: dict[str, int] = {}
        self._sequence = itertools.count()

    async def connect(self) -> None:
        return None

    # -- reading -------------------------------------------------------------------------

    async def query_jobs(self, options: JobsQueryOptions | None = None) -> JobsResult:
        options = options or JobsQueryOptions()
        check_data_filter(options.data)
        criteria = base.id_name_criteria(options)
        now = utcnow()
        found = [
            with_computed_state(job, now)
            for job in self._jobs.values()
            if query_match(job, options, criteria)
        ]
        found = [job for job in found if state_match(job, options.state)]
        found.sort(key=lambda job: self._order[str(job.id)])
        for key, direction in reversed(sort_spec(options)):
            found = sorted_nulls_last(found, key, descending=direction == "desc")
        page = found[options.skip :]
        return JobsResult(jobs=page[: options.limit] if options.limit else page, total=len(found))

    async def get_jobs_overview(self) -> list[JobsOverview]:
        now = utcnow()
        counts: dict[str, dict[str, int]] = {}
        for job in self._jobs.values():
            entry = counts.setdefault(job.name, {"total": 0, "paused": 0})
            entry["total"] += 1
            state = compute_job_state(job, now)
            entry[state] = entry.get(state, 0) + 1
            entry["paused"] += int(job.disabled)
        return [JobsOverview(name=name, **counts[name]) for name in sorted(counts)]

    async def get_distinct_job_names(self) -> list[str]:
        return sorted({job.name for job in self._jobs.values()})

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        job = self._jobs.get(job_id)
        return _copy(job) if job else None

    async def get_queue_size(self) -> int:
        now = utcnow()
        return sum(1 for job in self._jobs.values() if job.next_run_at and job.next_run_at < now)

    # -- writing -------------------------------------------------------------------------

    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        matched = self._matching(options)
        for job_id in matched:
            del self._jobs[job_id]
        return len(matched)

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return self._set_disabled(options, disabled=True)

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return self._set_disabled(options, disabled=False)

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        base.check_job(job)
        now = now or utcnow()
        incoming = _without_processor_fields(job, last_modified_by)
        if job.id is not None:
            return self._update_by_id(incoming, job)
        if job.type == "single":
            return self._upsert_single(incoming, now)
        if job.unique:
            return self._upsert_unique(incoming, job, now)
        return self._insert(incoming)

    async def insert_jobs(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        announce: Announcement | None = None,
    ) -> list[JobParameters[Any]]:
        """Every job at once (no await between them, so no reader sees half a batch)."""
        base.check_inserts(jobs)
        return [self._insert(_without_processor_fields(job, last_modified_by)) for job in jobs]

    async def save_job_state(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        lock_token: datetime | None = None,
    ) -> None:
        stored = self._jobs.get(str(job.id)) if job.id else None
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        if stored is None or stored.name != job.name:
            raise job_not_found(job)
        if not base.holds_lock(stored.locked_at, lock_token):
            raise lock_lost(job, lock_token)
        same_timing = all(getattr(stored, f) == getattr(job, f) for f in TIMING_FIELDS)
        for field in STATE_FIELDS:
            if field != "next_run_at" or same_timing:
                setattr(stored, field, copy.deepcopy(getattr(job, field)))
        stored.fail_reason = truncate_reason(stored.fail_reason)
        stored.last_modified_by = last_modified_by

    # -- locking -------------------------------------------------------------------------

    async def lock_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any] | None:
        stored = self._jobs.get(str(job.id))
        if (
            stored is None
            or stored.name != job.name
            or stored.locked_at is not None
            or stored.disabled
            or stored.next_run_at != job.next_run_at
        ):
            return None
        return self._lock(stored, now or utcnow(), last_modified_by)

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        stored = self._jobs.get(str(job.id))
        if stored is not None and stored.next_run_at is not None:
            stored.locked_at = None

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            if job_id in self._jobs:
                self._jobs[job_id].locked_at = None

    async def get_next_jobs_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        limit: int,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> list[JobParameters[Any]]:
        eligible = [
            job
            for job in self._jobs.values()
            if job.name == job_name and claimable(job, next_scan_at, lock_deadline)
        ]
        best = sorted(eligible, key=self._claim_order)[:limit]
        return [self._lock(job, now or utcnow(), last_modified_by) for job in best]

    # -- internals -----------------------------------------------------------------------

    def _claim_order(self, job: JobParameters[Any]) -> tuple[bool, bool, datetime, int, int]:
        """Stale locks first (crash recovery never waits for the backlog), then next_run_at
        nulls last, priority desc, insertion order."""
        never = datetime.max.replace(tzinfo=UTC)
        return (
            job.locked_at is None,
            job.next_run_at is None,
            job.next_run_at or never,
            -job.priority,
            self._order[str(job.id)],
        )

    def _lock(
        self, stored: JobParameters[Any], now: datetime, by: str | None
    ) -> JobParameters[Any]:
        stored.locked_at = now
        stored.last_modified_by = by
        return _copy(stored)

    def _insert(self, incoming: JobParameters[Any]) -> JobParameters[Any]:
        job_id = JobId(uuid.uuid4().hex)
        incoming.id = job_id
        self._jobs[job_id] = incoming
        self._order[job_id] = next(self._sequence)
        return _copy(incoming)

    def _update_by_id(
        self, incoming: JobParameters[Any], original: JobParameters[Any]
    ) -> JobParameters[Any]:
        stored = self._jobs.get(str(incoming.id))
        if stored is None or stored.name != incoming.name:
            return original
        _overwrite(stored, incoming)
        return _copy(stored)

    def _upsert_single(self, incoming: JobParameters[Any], now: datetime) -> JobParameters[Any]:
        stored = next(
            (j for j in self._jobs.values() if j.name == incoming.name and j.type == "single"),
            None,
        )
        if stored is None:
            return self._insert(incoming)
        incoming.next_run_at = base.single_next_run_at(
            incoming.next_run_at, stored.next_run_at, now,
            same_timing=all(getattr(stored, f) == getattr(incoming, f) for f in TIMING_FIELDS),
        )
        _overwrite(stored, incoming)
        return _copy(stored)

    def _upsert_unique(
        self, incoming: JobParameters[Any], job: JobParameters[Any], now: datetime
    ) -> JobParameters[Any]:
        unique = job.unique or {}
        stored = next(
            (j for j in self._jobs.values() if matches_unique(j, unique, incoming.name)),
            None,
        )
        if stored is not None and base.is_insert_only(job):
            return _copy(stored)
        if base.is_debounced(job):
            outcome = base.debounce_outcome(job, stored, now)
            incoming.next_run_at = outcome.next_run_at
            incoming.debounce_started_at = outcome.debounce_started_at
        if stored is None:
            return self._insert(incoming)
        _overwrite(stored, incoming)
        return _copy(stored)

    def _matching(self, options: RemoveJobsOptions) -> list[str]:
        if options.matches_nothing():
            return []
        check_data_filter(options.data)
        criteria = base.id_name_criteria(options)
        return [
            job_id for job_id, job in self._jobs.items() if remove_match(job, options, criteria)
        ]

    def _set_disabled(self, options: RemoveJobsOptions, *, disabled: bool) -> int:
        matched = self._matching(options)
        for job_id in matched:
            self._jobs[job_id].disabled = disabled
        return len(matched)


# -- copies (the store never hands out its own objects) ---------------------------------------


def _copy(job: JobParameters[Any]) -> JobParameters[Any]:
    return copy.deepcopy(job)


def _without_processor_fields(
    job: JobParameters[Any], last_modified_by: str | None
) -> JobParameters[Any]:
    clean = copy.deepcopy(job)
    for field in PROCESSOR_FIELDS:
        setattr(clean, field, None)
    clean.unique = None
    clean.unique_opts = None
    clean.last_modified_by = last_modified_by
    return clean


def _overwrite(stored: JobParameters[Any], incoming: JobParameters[Any]) -> None:
    """Copy every non-processor field of ``incoming`` onto ``stored`` (id kept)."""
    for field in attrs.fields(JobParameters):
        if field.name not in PROCESSOR_FIELDS and field.name != "id":
            setattr(stored, field.name, copy.deepcopy(getattr(incoming, field.name)))
