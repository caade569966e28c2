"""One execution of a job: the abandoned-run accounting, the start write, the handler, the
events, backoff, the fenced end write and ``remove_on_complete``."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import attrs

from agenda_decl import timing
from agenda_decl._clock import truncate_ms
from agenda_decl.backoff import BackoffContext
from agenda_decl.errors import (
    AbandonedRunError,
    AgendaError,
    JobNotFoundError,
    LockLostError,
    StateWriteError,
    UnknownJobError,
)
from agenda_decl.job import Handler, Job, JobDefinition
from agenda_decl.runtime.events import JobEvent
from agenda_decl.runtime.scheduler import Scheduler

log = logging.getLogger("agenda_decl")


class Runner:
    """Runs jobs for one scheduler (what ``Job.run()`` ends up in)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        #: Per job name, its handler and whether it is a coroutine function: inspect's
        #: answer costs microseconds, and a busy worker would ask it once per job.
        self._async: dict[str, tuple[Handler, bool]] = {}

    def run(self, job: Job[Any]) -> Coroutine[Any, Any, None]:
        """Run the handler once, saving state before and after and emitting the events (the
        execution's coroutine itself: no frame of its own per job)."""
        return _Execution(self._scheduler, job, self).run()

    def is_async(self, name: str, handler: Handler) -> bool:
        """Whether ``handler``, the handler of ``name``, is a coroutine function."""
        known = self._async.get(name)
        if known is None or known[0] is not handler:  # first run, or defined again
            known = self._async[name] = (handler, inspect.iscoroutinefunction(handler))
        return known[1]


class _Execution:
    def __init__(self, scheduler: Scheduler, job: Job[Any], runner: Runner) -> None:
        self.scheduler = scheduler
        self.job = job
        self.runner = runner
        self.definition: JobDefinition | None = scheduler.definitions.get(job.attrs.name)

    async def run(self) -> None:
        job = self.job
        job.started_in = self.scheduler.generation
        abandoned = self._abandoned_run()
        # Kept only when there is something to restore (a frozen instance per job otherwise).
        before = _Failures.of(job) if abandoned is not None else None
        if abandoned is not None:
            # Counted at once, and stored by the start write: if this run never ends either,
            # the next worker counts on top, so a job that keeps killing its worker stops at
            # its retry limit. Before the start: this run's start must read as later.
            job.fail(abandoned)
        self._begin()
        if abandoned is not None and not await self._retry_abandoned(abandoned):
            await self._finish(succeeded=False)  # retries exhausted: give up, do not run
            return
        # The start state (last_run_at, the next run) is written while the handler starts:
        # the job is already locked, so waiting for the write first would only add a round
        # trip to every job's latency. The final write is queued after it.
        started = self._write_start()
        succeeded = False
        try:
            if (event := self._event("start")) is not None:
                await self.scheduler.emit_job_event(event)
            await self._execute()
            if before is not None:
                before.restore(job)  # this run ended: the previous one may have been slow
            job.attrs.last_finished_at = self._success_time()
            succeeded = True
        except Exception as error:
            if before is not None:
                before.restore(job)
            await self._failed(error)
        except asyncio.CancelledError:
            # The loop is shutting down under the handler: writing now would reopen
            # connections that nothing will close. The lock expires as after a crash.
            started.add_done_callback(_ignore_result)
            raise
        await self._finish(succeeded=succeeded, started=started)

    def _write_start(self) -> asyncio.Future[None]:
        """Queue the start write. It also renews the lock (a touch): the run's lock_lifetime
        counts from its start, not from the claim, so a job that waited in this worker's
        queue is not taken over while it runs within its lifetime. Fenced by the claim's
        lock; later writes carry the new one."""
        job = self.job
        claimed = job.lock_token
        if claimed is None:  # not claimed (run directly): nothing to renew
            return self.scheduler.submit_job_state(job.attrs)
        job.attrs.locked_at = truncate_ms(self.scheduler.clock.now())
        write = self.scheduler.submit_job_state(job.attrs, lock_token=claimed)
        job.adopt_lock(job.attrs.locked_at)
        return write

    def _event(self, name: Literal["start", "success", "complete"]) -> JobEvent | None:
        """This run's event ``name``, or None when nothing hears job events here (a busy
        worker nobody listens to makes three per job for nothing)."""
        return JobEvent(name=name, job=self.job) if self.scheduler.hears_job_events() else None

    def _abandoned_run(self) -> AbandonedRunError | None:
        """The previous run, if it started and never recorded an end (success or failure)."""
        attrs = self.job.attrs
        started, ended = attrs.last_run_at, attrs.last_finished_at
        if started is None or (ended is not None and ended >= started):
            return None
        return AbandonedRunError(
            f"job {attrs.name} (ID {attrs.id}): the run started at "
            f"{started.isoformat(timespec='milliseconds')} never finished: its worker stopped "
            "(crash?) or it ran past lock_lifetime without touch()",
            job_id=attrs.id, job_name=attrs.name,
        )

    async def _retry_abandoned(self, error: AbandonedRunError) -> bool:
        """Report the abandoned run (an ``error`` event: not a ``fail`` of this run; if its
        worker is alive, its end write reports the lost lock) and apply the definition's
        retry policy to it (no policy: run, as Agenda does)."""
        job = self.job
        self.scheduler.job_log.abandoned(job, error)
        await self.scheduler.emit_error(error)
        if self.definition is None or self.definition.backoff is None:
            return True
        if self._backoff_delay(error, self.definition) is not None:
            return True
        await self.scheduler.emit_job_event(JobEvent(name="fail", job=job, error=error))
        await self.scheduler.emit_job_event(JobEvent(name="retry exhausted", job=job, error=error))
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
        if self.runner.is_async(job.attrs.name, handler):
            await cast(Awaitable[None], handler(job))
            return
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        result = await loop.run_in_executor(self.scheduler.executor, context.run, handler, job)
        if inspect.isawaitable(result):
            await result

    async def _failed(self, error: Exception) -> None:
        self.job.fail(error)
        await self.scheduler.emit_job_event(JobEvent(name="fail", job=self.job, error=error))
        if self.definition is not None and self.definition.backoff is not None:
            await self._retry(error, self.definition)

    async def _retry(self, error: Exception, definition: JobDefinition) -> None:
        job = self.job
        delay = self._backoff_delay(error, definition)
        if delay is None:
            await self.scheduler.emit_job_event(
                JobEvent(name="retry exhausted", job=job, error=error))
            return
        job.attrs.next_run_at = self.scheduler.clock.now() + timedelta(milliseconds=delay)
        await self.scheduler.emit_job_event(JobEvent.retry(job, error=error, delay=delay))

    async def _finish(
        self, *, succeeded: bool, started: asyncio.Future[None] | None = None
    ) -> None:
        """The fenced end write, then ``success`` only if it was stored (else an ``error``
        naming the job and why), then ``complete``.

        The end write is queued before the start write is awaited: a run that ended before
        its start write went out is stored by one write (the group commit keeps a job's last
        state, fenced by the lock the start write was to check), so a short job costs one
        state write, not two. The start write's failure is still reported first."""
        job, scheduler = self.job, self.scheduler
        job.attrs.locked_at = None
        end = self._submit_end()
        if started is not None:
            await self._report_start_write(started, end)
        stored = False
        try:
            await end
            stored = True
        except LockLostError:  # fenced out: another worker holds the job now
            await scheduler.emit_error(LockLostError(
                f"job {job.attrs.name} (ID {job.attrs.id}) was taken over by another worker "
                "while this run went on (its lock expired): this run's result is dropped",
                job_id=job.attrs.id, job_name=job.attrs.name,
            ))
        except Exception as error:  # the store failed, the job was removed, or stop() closed
            await scheduler.emit_error(_not_stored(job, "end", error))
        if succeeded and stored and (event := self._event("success")) is not None:
            await self.scheduler.emit_job_event(event)
        if (event := self._event("complete")) is not None:
            await self.scheduler.emit_job_event(event)
        remove = self.definition.remove_on_complete if self.definition else None
        if remove is None:
            remove = scheduler.remove_on_complete
        outlived = job.started_in != scheduler.generation  # don't reconnect to remove
        if succeeded and stored and remove and job.attrs.next_run_at is None and not outlived:
            try:
                await job.remove()
            except Exception:
                log.exception("removing completed job %s failed", job.attrs.id)

    def _submit_end(self) -> asyncio.Future[None]:
        """Queue the end write (fenced by the lock the run holds); a write refused at once
        (a job without an id) is a failed future, reported like a failed write."""
        job = self.job
        try:
            return self.scheduler.submit_job_state(
                job.attrs, lock_token=job.lock_token, started_in=job.started_in
            )
        except Exception as error:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            return failed

    async def _report_start_write(
        self, write: asyncio.Future[None], end: asyncio.Future[None]
    ) -> None:
        """A failed start write is an ``error`` event, unless the end write that follows
        is bound to fail the same way and report it (fenced out, or the job is gone), or
        the start write went out as part of the end write (merged: one write, one failure,
        reported by the end write)."""
        try:
            await write
        except (LockLostError, JobNotFoundError) as error:
            log.warning("start state of job %s not stored: %s", self.job.attrs.id, error)
        except Exception as error:
            if not _same_failure(end, error):
                await self.scheduler.emit_error(_not_stored(self.job, "start", error))


@attrs.frozen
class _Failures:
    """The failure fields of a job before a run counted its abandoned predecessor."""

    fail_count: int | None
    fail_reason: str | None
    failed_at: datetime | None
    last_finished_at: datetime | None

    @classmethod
    def of(cls, job: Job[Any]) -> _Failures:
        a = job.attrs
        return cls(a.fail_count, a.fail_reason, a.failed_at, a.last_finished_at)

    def restore(self, job: Job[Any]) -> None:
        a = job.attrs
        a.fail_count, a.fail_reason = self.fail_count, self.fail_reason
        a.failed_at, a.last_finished_at = self.failed_at, self.last_finished_at


def _not_stored(job: Job[Any], which: str, reason: Exception) -> StateWriteError:
    """The ``error`` of a start or end write that failed, naming the job, the reason and
    what becomes of the job."""
    attrs = job.attrs
    if which == "start":
        outcome = "the end write stores the run's whole state if it succeeds"
    elif isinstance(reason, JobNotFoundError):
        outcome = "the job was removed while it ran"
    else:
        outcome = ("the job keeps its lock until lock_lifetime runs out, then a worker runs "
                   "it again")
    error = StateWriteError(
        f"the {which} state of job {attrs.name} (ID {attrs.id}) was not stored: {reason}; "
        f"{outcome}",
        job_id=attrs.id, job_name=attrs.name,
    )
    error.__cause__ = reason
    return error


def _same_failure(write: asyncio.Future[None], error: Exception) -> bool:
    """Whether ``write`` failed with ``error`` itself: it was the same write (a group commit
    settles every waiter of a merged write with one outcome)."""
    return write.done() and not write.cancelled() and write.exception() is error


def _ignore_result(write: asyncio.Future[None]) -> None:
    if not write.cancelled():
        write.exception()
