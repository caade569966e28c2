"""A job: its stored parameters plus what can be done with it.

Builder methods (``schedule``, ``repeat_every``, ``unique``, ...) change ``attrs`` and return
the job without any I/O; ``save()``, ``touch()``, ``remove()`` and ``run()`` talk to the store.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Self

import attrs

from agenda_decl import timing
from agenda_decl._clock import truncate_ms
from agenda_decl._job_data import check_unique_keys, truncate_reason
from agenda_decl._model import (
    DATA,
    DebounceOptions,
    DebounceStrategy,
    JobParameters,
    RemoveJobsOptions,
    UniqueOptions,
)
from agenda_decl.backoff import BackoffContext
from agenda_decl.errors import (
    AbandonedRunError,
    AgendaError,
    JobCanceledError,
    LockLostError,
    UnknownJobError,
)

if TYPE_CHECKING:
    from agenda_decl.agenda import Agenda, JobDefinition

log = logging.getLogger("agenda_decl")

Duration = int | float | timedelta | str


class Job(Generic[DATA]):
    """One stored job. ``attrs`` holds its :class:`JobParameters`."""

    def __init__(
        self, agenda: Agenda, attrs: JobParameters[DATA], *, lock_token: datetime | None = None
    ) -> None:
        self.agenda = agenda
        self.attrs = attrs
        self._canceled: str | None = None
        #: The lock this worker holds on the job (fencing token): the ``locked_at`` its claim
        #: stored, then the one of each successful ``touch()``. Its state writes are applied
        #: only while the stored lock is this one. ``None``: not claimed here (unfenced).
        self._lock_token = lock_token
        #: The scheduler's generation when this run started (None: not run here).
        self._generation: int | None = None

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
        """Record a failure (in memory; the processor saves it)."""
        message = str(reason) or type(reason).__name__
        now = self.agenda.clock.now()
        self.attrs.fail_reason = truncate_reason(message)
        self.attrs.fail_count = (self.attrs.fail_count or 0) + 1
        self.attrs.failed_at = self.attrs.last_finished_at = now
        return self

    # -- store I/O -----------------------------------------------------------------------

    async def save(self) -> Self:
        """Insert or update the job and announce it on the notification channel."""
        stored = await self.agenda.save_job(self.attrs)
        self.attrs.id = stored.id
        self.attrs.next_run_at = stored.next_run_at
        self.attrs.debounce_started_at = stored.debounce_started_at
        if self.attrs.unique_opts and self.attrs.unique_opts.insert_only:
            self.attrs.data = stored.data
        await self.agenda.publish_job_notification(self)
        return self

    async def remove(self) -> int:
        if self.attrs.id is None:
            return 0
        return await self.agenda.cancel(RemoveJobsOptions(id=self.attrs.id))

    async def touch(self, progress: float | None = None) -> None:
        """Renew the lock of a running job (call it in long handlers); optionally set progress."""
        if self._canceled is not None:
            raise JobCanceledError(f"job {self.attrs.name} got canceled already: {self._canceled}!")
        previous = self.attrs.locked_at
        self.attrs.locked_at = truncate_ms(self.agenda.clock.now())
        self.attrs.progress = progress
        try:
            await self.agenda.save_job_state(
                self.attrs, started_in=self._generation, lock_token=self._lock_token
            )
        except LockLostError:  # taken over: the write changed nothing, the handler should stop
            self.attrs.locked_at = previous
            raise
        if self._lock_token is not None:
            self._lock_token = self.attrs.locked_at
        if progress is not None:
            await self.agenda.emit_job_event("progress", self, progress=progress)

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
        caller: a running job keeps its own, so its overrun is still reported and canceled."""
        if self._lock_token is not None:
            self._lock_token = locked_at

    def cancel(self, reason: str) -> None:
        """Mark a run as abandoned: later ``touch()`` calls raise."""
        self._canceled = reason

    @property
    def canceled(self) -> str | None:
        return self._canceled

    # -- one execution -------------------------------------------------------------------

    async def run(self) -> None:
        """Run the handler once, saving state before and after and emitting the events."""
        definition = self.agenda.definitions.get(self.attrs.name)
        self._generation = self.agenda.generation
        abandoned = self._abandoned_run()
        if abandoned is not None:
            self.fail(abandoned)  # before the start: this run's start must read as later
        self._begin()
        if abandoned is not None and not await self._retry_abandoned(abandoned, definition):
            await self._finish(False, definition)  # retries exhausted: give up, do not run
            return
        # The start state (last_run_at, the next run) is written while the handler starts:
        # the job is already locked, so waiting for the write first would only add a round
        # trip to every job's latency. The final write is queued after it.
        started = self.agenda.submit_job_state(self.attrs, lock_token=self._lock_token)
        succeeded = False
        try:
            await self.agenda.emit_job_event("start", self)
            await self._execute(definition)
            self.attrs.last_finished_at = self._success_time()
            succeeded = True
            await self.agenda.emit_job_event("success", self)
        except Exception as error:
            await self._failed(error, definition)
        except asyncio.CancelledError:
            # The loop is shutting down under the handler: writing now would reopen
            # connections that nothing will close. The lock expires as after a crash.
            started.add_done_callback(_ignore_result)
            raise
        await _report_failed_write(started, self)
        await self._finish(succeeded, definition)

    def _abandoned_run(self) -> AbandonedRunError | None:
        """The previous run, if it started and never recorded an end (success or failure)."""
        started, ended = self.attrs.last_run_at, self.attrs.last_finished_at
        if started is None or (ended is not None and ended >= started):
            return None
        return AbandonedRunError(
            f"the run started at {started.isoformat(timespec='milliseconds')} never finished: "
            "its worker stopped (crash?) or it ran past lock_lifetime without touch()"
        )

    async def _retry_abandoned(
        self, error: AbandonedRunError, definition: JobDefinition | None
    ) -> bool:
        """An abandoned run counts as a failed attempt (``fail()`` was called), so a job that
        kills its worker does not loop unseen forever; whether to run again now is the
        definition's retry policy (no policy: run, as Agenda does)."""
        log.warning("job %s (ID %s): %s", self.attrs.name, self.attrs.id, error)
        await self.agenda.emit_job_event("fail", self, error=error)
        if definition is None or definition.backoff is None:
            return True
        if self._backoff_delay(error, definition) is not None:
            return True
        await self.agenda.emit_job_event("retry exhausted", self, error=error)
        return False

    def _backoff_delay(self, error: Exception, definition: JobDefinition) -> int | None:
        """The definition's retry policy for this failure (``None``: retries exhausted)."""
        assert definition.backoff is not None
        return definition.backoff(BackoffContext(
            attempt=self.attrs.fail_count or 1, error=error,
            job_name=self.attrs.name, job_data=self.attrs.data,
        ))

    def _success_time(self) -> datetime:
        """Now, but after the last failure: a success in the same millisecond as the
        previous failure must not read as failed (state compares the two times)."""
        now = self.agenda.clock.now()
        failed_at = self.attrs.failed_at
        if failed_at is not None and now <= failed_at:
            return failed_at + timedelta(milliseconds=1)
        return now

    def _begin(self) -> None:
        now = self.agenda.clock.now()
        ended = self.attrs.last_finished_at
        if ended is not None and now <= ended:  # a start must read as after the last end
            now = ended + timedelta(milliseconds=1)
        self.attrs.last_run_at = now
        try:
            self.attrs.next_run_at = timing.compute_next_run_at(self.attrs, now)
        except AgendaError as error:
            self.attrs.next_run_at = None
            self.fail(error)

    async def _execute(self, definition: JobDefinition | None) -> None:
        if definition is None or definition.handler is None:
            raise UnknownJobError(f"Undefined job: no handler for {self.attrs.name!r}")
        handler = definition.handler
        if inspect.iscoroutinefunction(handler):
            await handler(self)
            return
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(self.agenda.executor, context.run, handler, self)
        if inspect.isawaitable(result):
            await result

    async def _failed(self, error: Exception, definition: JobDefinition | None) -> None:
        self.fail(error)
        await self.agenda.emit_job_event("fail", self, error=error)
        if definition is not None and definition.backoff is not None:
            await self._retry(error, definition)

    async def _retry(self, error: Exception, definition: JobDefinition) -> None:
        delay = self._backoff_delay(error, definition)
        if delay is None:
            await self.agenda.emit_job_event("retry exhausted", self, error=error)
            return
        self.attrs.next_run_at = self.agenda.clock.now() + timedelta(milliseconds=delay)
        await self.agenda.emit_job_event("retry", self, error=error, delay=delay)

    async def _finish(self, succeeded: bool, definition: JobDefinition | None) -> None:
        self.attrs.locked_at = None
        taken_over = False
        try:
            await self.agenda.save_job_state(
                self.attrs, started_in=self._generation, lock_token=self._lock_token
            )
        except LockLostError:  # fenced out: another worker holds the job now
            taken_over = True
            await self.agenda.emit_error(LockLostError(
                f"job {self.attrs.name} (ID {self.attrs.id}) was taken over by another worker "
                "while this run went on (its lock expired): this run's result is dropped",
                job_id=self.attrs.id, job_name=self.attrs.name,
            ))
        except Exception as error:  # removed while it ran, or its scheduler stopped
            log.info("final state of job %s not saved: %s", self.attrs.id, error)
        await self.agenda.emit_job_event("complete", self)
        remove = definition.remove_on_complete if definition else None
        if remove is None:
            remove = self.agenda.remove_on_complete
        outlived = self._generation != self.agenda.generation  # don't reconnect to remove
        if (succeeded and remove and self.attrs.next_run_at is None and not outlived
                and not taken_over):
            try:
                await self.remove()
            except Exception:
                log.exception("removing completed job %s failed", self.attrs.id)

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
        return locked_at < now - timedelta(milliseconds=lifetime)

    async def _fetch(self) -> JobParameters[Any]:
        if self.attrs.id is None:
            raise AgendaError(f"job {self.attrs.name!r} has not been saved")
        stored = await self.agenda.repository.get_job_by_id(self.attrs.id)
        if stored is None:
            raise AgendaError(f"job with id {self.attrs.id} not found in database")
        return stored


def _ignore_result(write: asyncio.Future[None]) -> None:
    if not write.cancelled():
        write.exception()


async def _report_failed_write(write: asyncio.Future[None], job: Job[Any]) -> None:
    try:
        await write
    except LockLostError as error:  # the final write is fenced out too, and reports it
        log.warning("start state of job %s rejected: %s", job.attrs.id, error)
    except Exception as error:  # e.g. the job was removed after it was claimed
        log.info("start state of job %s not saved: %s", job.attrs.id, error)
