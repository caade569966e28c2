"""A job: its stored parameters plus what can be done with it.

Builder methods (``schedule``, ``repeat_every``, ``unique``, ...) change ``attrs`` and return
the job without any I/O; ``save()``, ``touch()`` and ``remove()`` talk to the store, and
``run()`` hands the job to the scheduler's runner. What a job needs of its scheduler is
:class:`JobOwner` (the Agenda implements it); this module imports neither the Agenda nor the
runtime.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, Self

import attrs

from agenda_decl import timing
from agenda_decl._clock import Clock, truncate_ms
from agenda_decl._job_data import check_unique_keys, truncate_reason
from agenda_decl._model import (
    DATA,
    DebounceOptions,
    DebounceStrategy,
    JobParameters,
    RemoveJobsOptions,
    UniqueOptions,
)
from agenda_decl.backoff import BackoffStrategy
from agenda_decl.errors import AgendaError, JobCanceledError, LockLostError
from agenda_decl.interfaces import JobRepository
from agenda_decl.timing import Duration

Handler = Callable[["Job[Any]"], Awaitable[None] | None]


@attrs.define(kw_only=True, frozen=True)
class JobDefinition:
    name: str
    handler: Handler | None
    concurrency: int
    lock_limit: int
    #: Milliseconds a lock stays valid without ``touch()``.
    lock_lifetime: int
    priority: int
    backoff: BackoffStrategy | None = None
    remove_on_complete: bool | None = None
    #: Called with the data of every job created with this name; returns the data to store
    #: (defaults filled in, values made JSON) or raises. agenda.yaml's typed payloads use it.
    validate_data: Callable[[Any], Any] | None = None
    #: Whether the job log records this job's events (``None``: the Agenda's default).
    logging: bool | None = None


class JobRunner(Protocol):
    """Runs one execution of a job (``Job.run()`` hands the job over)."""

    async def run_job(self, job: Job[Any]) -> None: ...


class JobOwner(JobRunner, Protocol):
    """What a job needs of the scheduler it belongs to: the time, its definition, the store
    calls (a save is announced to listening workers), progress, and running it. The Agenda
    implements it."""

    @property
    def clock(self) -> Clock: ...
    @property
    def repository(self) -> JobRepository: ...
    @property
    def definitions(self) -> Mapping[str, JobDefinition]: ...
    @property
    def default_lock_lifetime(self) -> int: ...

    async def save_job(self, params: JobParameters[Any]) -> JobParameters[Any]:
        """Store ``params`` and announce it; return the stored record."""
        ...

    async def save_job_state(
        self,
        params: JobParameters[Any],
        *,
        started_in: int | None = None,
        lock_token: datetime | None = None,
    ) -> None: ...

    async def cancel(self, options: RemoveJobsOptions | None = None, **criteria: Any) -> int: ...

    async def report_progress(self, job: Job[Any], progress: float) -> None: ...


class Job(Generic[DATA]):
    """One stored job. ``attrs`` holds its :class:`JobParameters`."""

    def __init__(
        self, agenda: JobOwner, attrs: JobParameters[DATA], *, lock_token: datetime | None = None
    ) -> None:
        self.agenda = agenda
        self.attrs = attrs
        self._abandon_reason: str | None = None
        #: The lock this worker holds on the job (fencing token): the ``locked_at`` its claim
        #: stored, then the one of each successful ``touch()``. Its state writes are applied
        #: only while the stored lock is this one. ``None``: not claimed here (unfenced).
        self._lock_token = lock_token
        #: The scheduler's generation when this run started (None: not run here).
        self.started_in: int | None = None

    def __repr__(self) -> str:
        return f"<Job {self.attrs.name!r} id={self.attrs.id} next_run_at={self.attrs.next_run_at}>"

    # -- builders (no I/O) ---------------------------------------------------------------

    def repeat_every(
        self, interval: Duration, *, timezone: str | None = None, skip_immediate: bool = False
    ) -> Self:
        """Repeat on a human interval ("5 minutes"), a cron expression or milliseconds."""
        self.attrs.repeat_interval = timing.validate_interval(interval, field="interval")
        if timezone is not None:
            timing.get_zone(timezone)
        self.attrs.repeat_timezone = timezone
        now = self.agenda.clock.now()
        if skip_immediate:
            self.attrs.last_run_at = self.attrs.next_run_at or now
        self.attrs.next_run_at = timing.compute_next_run_at(self.attrs, now)
        if skip_immediate:
            self.attrs.last_run_at = None
        return self

    def repeat_at(self, time_of_day: str) -> Self:
        """Run every day at this time ("3:30pm", "15:30"), in ``repeat_timezone`` or UTC."""
        timing.next_time_of_day(time_of_day, self.agenda.clock.now())
        self.attrs.repeat_at = time_of_day
        return self

    def schedule(self, when: datetime | str) -> Self:
        """Run at ``when``: an aware datetime, ISO 8601 text, "now" or "in 5 minutes"."""
        run_at = timing.parse_date(when, now=self.agenda.clock.now(), field="when")
        self.attrs.next_run_at = self._constrained(run_at)
        return self

    def priority(self, priority: int | str) -> Self:
        self.attrs.priority = timing.parse_priority(priority)
        return self

    def unique(self, key: Mapping[str, Any], *, insert_only: bool = False) -> Self:
        """Save as an upsert on ``key`` (field paths like ``{"data.user_id": 7}``) plus name."""
        check_unique_keys(key)
        self.attrs.unique = dict(key)
        self.attrs.unique_opts = UniqueOptions(insert_only=insert_only)
        return self

    def debounce(
        self,
        delay: Duration,
        *,
        max_wait: Duration | None = None,
        strategy: DebounceStrategy = "trailing",
    ) -> Self:
        """Coalesce saves of the same unique key: call after :meth:`unique`."""
        wait = None if max_wait is None else timing.parse_duration(max_wait, field="max_wait")
        options = DebounceOptions(
            delay=timing.parse_duration(delay, field="delay"), max_wait=wait, strategy=strategy
        )
        current = self.attrs.unique_opts or UniqueOptions()
        self.attrs.unique_opts = attrs.evolve(current, debounce=options)
        return self

    def start_date(self, when: datetime | str) -> Self:
        self.attrs.start_date = timing.parse_date(when, field="start_date")
        return self

    def end_date(self, when: datetime | str) -> Self:
        self.attrs.end_date = timing.parse_date(when, field="end_date")
        return self

    def skip_days(self, days: Iterable[int]) -> Self:
        """Weekdays (0 = Sunday) on which the job does not run, in its time zone."""
        self.attrs.skip_days = timing.validate_skip_days(days)
        return self

    def disable(self) -> Self:
        self.attrs.disabled = True
        return self

    def enable(self) -> Self:
        self.attrs.disabled = False
        return self

    def fail(self, reason: BaseException | str) -> Self:
        """Record a failure (in memory; the runner saves it)."""
        message = str(reason) or type(reason).__name__
        now = self.agenda.clock.now()
        self.attrs.fail_reason = truncate_reason(message)
        self.attrs.fail_count = (self.attrs.fail_count or 0) + 1
        self.attrs.failed_at = self.attrs.last_finished_at = now
        return self

    # -- store I/O -----------------------------------------------------------------------

    async def save(self) -> Self:
        """Insert or update the job and announce it on the notification channel."""
        return self.saved_as(await self.agenda.save_job(self.attrs))

    def saved_as(self, stored: JobParameters[Any]) -> Self:
        """Take what the store decided on saving this job: its id, its next run (a single or
        debounced save may keep the stored one) and, for an insert-only save that found a
        match, the stored data."""
        self.attrs.id = stored.id
        self.attrs.next_run_at = stored.next_run_at
        self.attrs.debounce_started_at = stored.debounce_started_at
        if self.attrs.unique_opts and self.attrs.unique_opts.insert_only:
            self.attrs.data = stored.data
        return self

    async def remove(self) -> int:
        if self.attrs.id is None:
            return 0
        return await self.agenda.cancel(RemoveJobsOptions(id=self.attrs.id))

    async def touch(self, progress: float | None = None) -> None:
        """Renew the lock of a running job (call it in long handlers); optionally set progress."""
        if self._abandon_reason is not None:
            raise JobCanceledError(
                f"job {self.attrs.name} got canceled already: {self._abandon_reason}!"
            )
        previous = self.attrs.locked_at
        self.attrs.locked_at = truncate_ms(self.agenda.clock.now())
        self.attrs.progress = progress
        try:
            await self.save_state()
        except LockLostError:  # taken over: the write changed nothing, the handler should stop
            self.attrs.locked_at = previous
            raise
        if self._lock_token is not None:
            self._lock_token = self.attrs.locked_at
        if progress is not None:
            await self.agenda.report_progress(self, progress)

    async def save_state(self) -> None:
        """Write the state fields (lock, run times, failure, next run, progress). While this
        worker holds the job's lock the write is fenced: it raises ``LockLostError`` and
        stores nothing when the stored lock is another worker's."""
        await self.agenda.save_job_state(
            self.attrs, started_in=self.started_in, lock_token=self._lock_token
        )

    async def is_running(self) -> bool:
        """Whether the stored job is running now (reads the store)."""
        stored = await self._fetch()
        if stored.last_run_at is None:
            return False
        if stored.last_finished_at is None:
            return True
        return stored.locked_at is not None and stored.last_run_at > stored.last_finished_at

    async def is_expired(self) -> bool:
        """Whether the stored lock is older than the definition's lock lifetime."""
        stored = await self._fetch()
        return self._lock_expired(stored.locked_at, self.agenda.clock.now())

    def lock_expired(self, now: datetime) -> bool:
        """The same check on the in-memory lock (what the processor holds)."""
        return self._lock_expired(self.attrs.locked_at, now)

    def adopt_lock(self, locked_at: datetime | None) -> None:
        """This worker claimed the job again after its own lock went stale: the new lock is
        the one it holds from now on (the fencing token). ``attrs.locked_at`` is left to the
        caller: a running job keeps its own, so its overrun is still reported and the run
        abandoned."""
        if self._lock_token is not None:
            self._lock_token = locked_at

    @property
    def lock_token(self) -> datetime | None:
        """The lock this worker holds on the job (``None``: not claimed here)."""
        return self._lock_token

    def abandon_run(self, reason: str) -> None:
        """Give up this run (its lock expired without ``touch()``, so another worker may take
        the job over): later ``touch()`` calls raise ``JobCanceledError`` with ``reason``."""
        self._abandon_reason = reason

    @property
    def abandon_reason(self) -> str | None:
        """Why this run was abandoned (``None``: it was not)."""
        return self._abandon_reason

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the handler once, saving state before and after and emitting the events."""
        await self.agenda.run_job(self)

    # -- helpers -------------------------------------------------------------------------

    def _constrained(self, run_at: datetime) -> datetime | None:
        job = self.attrs
        if job.start_date is None and job.end_date is None and not job.skip_days:
            return run_at
        return timing.apply_all_date_constraints(
            run_at,
            start_date=job.start_date,
            end_date=job.end_date,
            skip_days=job.skip_days,
            timezone=job.repeat_timezone,
        )

    def _lock_expired(self, locked_at: datetime | None, now: datetime) -> bool:
        if locked_at is None:
            return False
        definition = self.agenda.definitions.get(self.attrs.name)
        lifetime = definition.lock_lifetime if definition else self.agenda.default_lock_lifetime
        return locked_at < now - _milliseconds(lifetime)

    async def _fetch(self) -> JobParameters[Any]:
        if self.attrs.id is None:
            raise AgendaError(f"job {self.attrs.name!r} has not been saved")
        stored = await self.agenda.repository.get_job_by_id(self.attrs.id)
        if stored is None:
            raise AgendaError(f"job with id {self.attrs.id} not found in database")
        return stored


@functools.lru_cache(maxsize=64)
def _milliseconds(count: int) -> timedelta:
    """``timedelta(milliseconds=count)``, made once per lock lifetime (checked several times
    per job run)."""
    return timedelta(milliseconds=count)
