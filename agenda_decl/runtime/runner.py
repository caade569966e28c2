"""One execution of a job: the abandoned-run accounting, the start write, the handler, the
events, backoff, the fenced end write and ``remove_on_complete``."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from datetime import datetime, timedelta
from typing import Any

from agenda_decl import timing
from agenda_decl.backoff import BackoffContext
from agenda_decl.errors import AbandonedRunError, AgendaError, LockLostError, UnknownJobError
from agenda_decl.job import Job, JobDefinition
from agenda_decl.runtime.events import JobEvent
from agenda_decl.runtime.scheduler import Scheduler

log = logging.getLogger("agenda_decl")


class Runner:
    """Runs jobs for one scheduler (what ``Job.run()`` ends up in)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    async def run(self, job: Job[Any]) -> None:
        """Run the handler once, saving state before and after and emitting the events."""
        await _Execution(self._scheduler, job).run()


class _Execution:
    def __init__(self, scheduler: Scheduler, job: Job[Any]) -> None:
        self.scheduler = scheduler
        self.job = job
        self.definition: JobDefinition | None = scheduler.definitions.get(job.attrs.name)

    async def run(self) -> None:
        job = self.job
        job.started_in = self.scheduler.generation
        abandoned = self._abandoned_run()
        if abandoned is not None:
            job.fail(abandoned)  # before the start: this run's start must read as later
        self._begin()
        if abandoned is not None and not await self._retry_abandoned(abandoned):
            await self._finish(succeeded=False)  # retries exhausted: give up, do not run
            return
        # The start state (last_run_at, the next run) is written while the handler starts:
        # the job is already locked, so waiting for the write first would only add a round
        # trip to every job's latency. The final write is queued after it.
        started = self.scheduler.submit_job_state(job.attrs, lock_token=job.lock_token)
        succeeded = False
        try:
            await self._emit(JobEvent(name="start", job=job))
            await self._execute()
            job.attrs.last_finished_at = self._success_time()
            succeeded = True
            await self._emit(JobEvent(name="success", job=job))
        except Exception as error:
            await self._failed(error)
        except asyncio.CancelledError:
            # The loop is shutting down under the handler: writing now would reopen
            # connections that nothing will close. The lock expires as after a crash.
            started.add_done_callback(_ignore_result)
            raise
        await _report_failed_write(started, job)
        await self._finish(succeeded=succeeded)

    async def _emit(self, event: JobEvent) -> None:
        await self.scheduler.emit_job_event(event)

    def _abandoned_run(self) -> AbandonedRunError | None:
        """The previous run, if it started and never recorded an end (success or failure)."""
        started, ended = self.job.attrs.last_run_at, self.job.attrs.last_finished_at
        if started is None or (ended is not None and ended >= started):
            return None
        return AbandonedRunError(
            f"the run started at {started.isoformat(timespec='milliseconds')} never finished: "
            "its worker stopped (crash?) or it ran past lock_lifetime without touch()"
        )

    async def _retry_abandoned(self, error: AbandonedRunError) -> bool:
        """An abandoned run counts as a failed attempt (``fail()`` was called), so a job that
        kills its worker does not loop unseen forever; whether to run again now is the
        definition's retry policy (no policy: run, as Agenda does)."""
        job = self.job
        log.warning("job %s (ID %s): %s", job.attrs.name, job.attrs.id, error)
        await self._emit(JobEvent(name="fail", job=job, error=error))
        if self.definition is None or self.definition.backoff is None:
            return True
        if self._backoff_delay(error, self.definition) is not None:
            return True
        await self._emit(JobEvent(name="retry exhausted", job=job, error=error))
        return False

    def _backoff_delay(self, error: Exception, definition: JobDefinition) -> int | None:
        """The definition's retry policy for this failure (``None``: retries exhausted)."""
        assert definition.backoff is not None
        attrs = self.job.attrs
        return definition.backoff(BackoffContext(
            attempt=attrs.fail_count or 1, error=error, job_name=attrs.name, job_data=attrs.data,
        ))

    def _success_time(self) -> datetime:
        """Now, but after the last failure: a success in the same millisecond as the
        previous failure must not read as failed (state compares the two times)."""
        now = self.scheduler.clock.now()
        failed_at = self.job.attrs.failed_at
        if failed_at is not None and now <= failed_at:
            return failed_at + timedelta(milliseconds=1)
        return now

    def _begin(self) -> None:
        attrs = self.job.attrs
        now = self.scheduler.clock.now()
        ended = attrs.last_finished_at
        if ended is not None and now <= ended:  # a start must read as after the last end
            now = ended + timedelta(milliseconds=1)
        attrs.last_run_at = now
        try:
            attrs.next_run_at = timing.compute_next_run_at(attrs, now)
        except AgendaError as error:
            attrs.next_run_at = None
            self.job.fail(error)

    async def _execute(self) -> None:
        definition, job = self.definition, self.job
        if definition is None or definition.handler is None:
            raise UnknownJobError(f"Undefined job: no handler for {job.attrs.name!r}")
        handler = definition.handler
        if inspect.iscoroutinefunction(handler):
            await handler(job)
            return
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(self.scheduler.executor, context.run, handler, job)
        if inspect.isawaitable(result):
            await result

    async def _failed(self, error: Exception) -> None:
        self.job.fail(error)
        await self._emit(JobEvent(name="fail", job=self.job, error=error))
        if self.definition is not None and self.definition.backoff is not None:
            await self._retry(error, self.definition)

    async def _retry(self, error: Exception, definition: JobDefinition) -> None:
        job = self.job
        delay = self._backoff_delay(error, definition)
        if delay is None:
            await self._emit(JobEvent(name="retry exhausted", job=job, error=error))
            return
        job.attrs.next_run_at = self.scheduler.clock.now() + timedelta(milliseconds=delay)
        await self._emit(JobEvent.retry(job, error=error, delay=delay))

    async def _finish(self, *, succeeded: bool) -> None:
        job, scheduler = self.job, self.scheduler
        job.attrs.locked_at = None
        taken_over = False
        try:
            await job.save_state()
        except LockLostError:  # fenced out: another worker holds the job now
            taken_over = True
            await scheduler.emit_error(LockLostError(
                f"job {job.attrs.name} (ID {job.attrs.id}) was taken over by another worker "
                "while this run went on (its lock expired): this run's result is dropped",
                job_id=job.attrs.id, job_name=job.attrs.name,
            ))
        except Exception as error:  # removed while it ran, or its scheduler stopped
            log.info("final state of job %s not saved: %s", job.attrs.id, error)
        await self._emit(JobEvent(name="complete", job=job))
        remove = self.definition.remove_on_complete if self.definition else None
        if remove is None:
            remove = scheduler.remove_on_complete
        outlived = job.started_in != scheduler.generation  # don't reconnect to remove
        if (succeeded and remove and job.attrs.next_run_at is None and not outlived
                and not taken_over):
            try:
                await job.remove()
            except Exception:
                log.exception("removing completed job %s failed", job.attrs.id)


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
