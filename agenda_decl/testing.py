"""Helpers for testing code that uses agenda-decl: an in-memory store, a clock you move by
hand, and a recorder of scheduler events.

The in-memory repository runs through the same conformance suite as the real backends, so
what passes against it behaves the same on SQLite, PostgreSQL, Redis and MongoDB.

    clock = FakeClock()
    agenda = Agenda(backend=InMemoryBackend(), clock=clock, process_every="1 second")
    events = EventRecorder(agenda)
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from agenda_decl._clock import truncate_ms, utcnow
from agenda_decl._job_data import (
    check_data_filter,
    data_contains,
    encode_data,
    matches_unique,
    truncate_reason,
)
from agenda_decl._model import (
    PROCESSOR_FIELDS,
    STATE_FIELDS,
    TIMING_FIELDS,
    JobId,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    JobWithState,
    RemoveJobsOptions,
    compute_job_state,
)
from agenda_decl.backends import base
from agenda_decl.errors import job_not_found, lock_lost
from agenda_decl.interfaces import AgendaBackend, NotificationChannel
from agenda_decl.notifications.memory import InMemoryNotificationChannel

if TYPE_CHECKING:
    from agenda_decl.agenda import Agenda

__all__ = [
    "EventRecorder",
    "FakeClock",
    "InMemoryBackend",
    "InMemoryJobRepository",
    "RecordedEvent",
]


class FakeClock:
    """A clock that moves only when told to. Starts at ``start`` (default: a fixed instant)."""

    is_system = False

    def __init__(self, start: datetime | None = None) -> None:
        self._now = truncate_ms(start or datetime(2026, 1, 5, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | int) -> datetime:
        """Move forward by a timedelta or a number of milliseconds; return the new now."""
        step = delta if isinstance(delta, timedelta) else timedelta(milliseconds=delta)
        self._now = truncate_ms(self._now + step)
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = truncate_ms(instant)


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
            _with_state(job, now)
            for job in self._jobs.values()
            if _query_match(job, options, criteria)
        ]
        found = [job for job in found if _state_match(job, options.state)]
        found.sort(key=lambda job: self._order[str(job.id)])
        for key, direction in reversed(_sort_spec(options)):
            found = _sorted_nulls_last(found, key, descending=direction == "desc")
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
            if job.name == job_name and _claimable(job, next_scan_at, lock_deadline)
        ]
        best = sorted(eligible, key=self._claim_order)[:limit]
        return [self._lock(job, now or utcnow(), last_modified_by) for job in best]

    # -- internals -----------------------------------------------------------------------

    def _claim_order(self, job: JobParameters[Any]) -> tuple[bool, datetime, int, int]:
        never = datetime.max.replace(tzinfo=UTC)
        return (
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
            job_id for job_id, job in self._jobs.items() if _remove_match(job, options, criteria)
        ]

    def _set_disabled(self, options: RemoveJobsOptions, *, disabled: bool) -> int:
        matched = self._matching(options)
        for job_id in matched:
            self._jobs[job_id].disabled = disabled
        return len(matched)


class InMemoryBackend(AgendaBackend):
    """An in-memory store with an in-process notification channel (pass ``notifications=False``
    to test polling alone)."""

    name = "InMemory"

    def __init__(self, *, notifications: bool = True) -> None:
        self._repository = InMemoryJobRepository()
        self._channel = InMemoryNotificationChannel() if notifications else None

    @property
    def repository(self) -> InMemoryJobRepository:
        return self._repository

    @property
    def notification_channel(self) -> NotificationChannel | None:
        return self._channel


# -- matching helpers (the in-memory twin of each store's WHERE clause) ---------------------


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


def _claimable(job: JobParameters[Any], next_scan_at: datetime, lock_deadline: datetime) -> bool:
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


def _remove_match(
    job: JobParameters[Any], options: RemoveJobsOptions, criteria: base.IdNameCriteria
) -> bool:
    return _id_name_match(job, criteria) and (
        options.data is None or data_contains(job.data, options.data)
    )


def _query_match(
    job: JobParameters[Any], options: JobsQueryOptions, criteria: base.IdNameCriteria
) -> bool:
    return (
        _id_name_match(job, criteria)
        and (options.search is None or options.search.lower() in job.name.lower())
        and (options.data is None or data_contains(job.data, options.data))
        and (options.include_disabled or not job.disabled)
    )


def _state_match(job: JobWithState[Any], state: str | None) -> bool:
    if state is None:
        return True
    return job.disabled if state == "paused" else job.state == state


def _with_state(job: JobParameters[Any], now: datetime) -> JobWithState[Any]:
    values = attrs.asdict(job, recurse=False)
    return JobWithState(**copy.deepcopy(values), state=compute_job_state(job, now))


def _sort_spec(options: JobsQueryOptions) -> list[tuple[str, str]]:
    if options.sort:
        return list(options.sort.items())
    return [("next_run_at", "desc"), ("last_run_at", "desc")]


def _sorted_nulls_last(
    jobs: list[JobWithState[Any]], key: str, *, descending: bool
) -> list[JobWithState[Any]]:
    def value(job: JobWithState[Any]) -> Any:
        raw = getattr(job, key)
        return encode_data(raw, name=job.name) if key == "data" else raw

    present = [job for job in jobs if getattr(job, key) is not None]
    missing = [job for job in jobs if getattr(job, key) is None]
    return sorted(present, key=value, reverse=descending) + missing


# -- event capture ---------------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class RecordedEvent:
    event: str
    job_name: str | None
    job_id: str | None
    data: Any
    error: str | None
    at: datetime


class EventRecorder:
    """Records the job events of an :class:`Agenda` (start, success, fail, complete, retry)."""

    EVENTS = ("start", "success", "fail", "complete", "retry", "retry exhausted")

    def __init__(self, agenda: Agenda, clock: Callable[[], datetime] = utcnow) -> None:
        self.events: list[RecordedEvent] = []
        self._clock = clock
        self._changed = asyncio.Event()
        for event in self.EVENTS:
            agenda.on(event, self._listener(event))

    def _listener(self, event: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            error = next((a for a in args if isinstance(a, BaseException)), None)
            job = next((a for a in args if hasattr(a, "attrs")), None)
            self.events.append(
                RecordedEvent(
                    event=event,
                    job_name=job.attrs.name if job else None,
                    job_id=job.attrs.id if job else None,
                    data=copy.deepcopy(job.attrs.data) if job else None,
                    error=str(error) if error else None,
                    at=self._clock(),
                )
            )
            self._changed.set()

        return record

    def of(self, event: str, job_name: str | None = None) -> list[RecordedEvent]:
        return [
            e for e in self.events if e.event == event and job_name in (None, e.job_name)
        ]

    async def wait_for(
        self, event: str, count: int = 1, *, job_name: str | None = None, timeout: float = 10
    ) -> list[RecordedEvent]:
        """Wait until ``count`` events of this kind were recorded (raises on timeout)."""
        async with asyncio.timeout(timeout):
            while len(self.of(event, job_name)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(event, job_name)
