"""The processing loop: claim due jobs, queue them in order, run them within the limits.

One processor lives between ``Agenda.start()`` and ``stop()``/``drain()``. Every
``process_every`` it claims, for each defined name, the jobs due before the next scan (up to
the lock limits and a prefetch of twice the name's concurrency), keeps them in one priority
queue per name ordered by (next_run_at, -priority, arrival), and starts them at their time
within ``max_concurrency`` and each definition's ``concurrency``. A notification, a finished
job or a reconnected channel triggers a claim at once; polling never stops, so a silent
channel costs latency, never jobs.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import attrs

from agenda_decl._model import DrainResult, JobNotification, JobParameters
from agenda_decl._tasks import BackgroundTasks
from agenda_decl.errors import AgendaError
from agenda_decl.job import Job, JobDefinition
from agenda_decl.runtime.events import ClaimReport, PollReport
from agenda_decl.runtime.scheduler import Scheduler

log = logging.getLogger("agenda_decl")

_NEVER = datetime.min.replace(tzinfo=UTC)


@attrs.define
class NameStatus:
    locked: int = 0
    running: int = 0


class _NameQueue:
    """Claimed jobs of one name, earliest first, then higher priority, then arrival."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, int, Job[Any]]] = []
        self._sequence = itertools.count()

    def push(self, job: Job[Any]) -> None:
        key = (job.attrs.next_run_at or _NEVER, -job.attrs.priority, next(self._sequence), job)
        heapq.heappush(self._heap, key)

    def peek(self) -> Job[Any] | None:
        return self._heap[0][3] if self._heap else None

    def pop(self) -> Job[Any]:
        return heapq.heappop(self._heap)[3]

    def __len__(self) -> int:
        return len(self._heap)

    def jobs(self) -> list[Job[Any]]:
        return [entry[3] for entry in self._heap]


class JobProcessor:
    def __init__(
        self,
        scheduler: Scheduler,
        *,
        max_concurrency: int,
        lock_limit: int,
        process_every: int,
        tend: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.scheduler = scheduler
        #: Called before each poll's claim (the channel link: clock skew, channel revival).
        self._tend = tend
        self.max_concurrency = max_concurrency
        self.lock_limit = lock_limit
        self.process_every = process_every
        #: ``process_every`` as a duration (compared with every job started).
        self._window = timedelta(milliseconds=process_every)
        self.is_running = False
        self.dispatching = True
        self.locked: dict[str, Job[Any]] = {}
        self.running: dict[str, Job[Any]] = {}
        self.status: dict[str, NameStatus] = {}
        self._queues: dict[str, _NameQueue] = {}
        #: The poll and the claims: cancelled, and awaited, when claiming stops.
        self._claims = BackgroundTasks(what="claim")
        #: Runs, and unlocks of jobs not due soon: never cancelled here (a stop leaves running
        #: handlers to finish or to be abandoned with the loop).
        self._runs = BackgroundTasks(what="job run")
        self._releases = BackgroundTasks(what="unlock of a claimed job not due soon")
        #: The claim in flight per name (one at a time; see :meth:`wake`).
        self._filling: dict[str, asyncio.Task[None]] = {}
        self._refill: set[str] = set()
        #: Names whose last claim found fewer due jobs than it had room for.
        self._drained: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.completed = 0
        self._reserved = 0  # claim slots promised to fills in flight (global lock limit)
        self._idle = asyncio.Event()
        self._idle.set()
        self.next_scan_at = scheduler.clock.now()
        #: What made a claim of the current poll fail (reported with the poll).
        self._claim_error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.is_running = True
        self._claims.spawn(self._poll_forever())

    async def stop(self) -> list[str]:
        """Stop polling, claiming and starting jobs (drain and stop), forget the claimed jobs
        that have not started, and wait until the claims in flight have ended; running jobs
        carry on. Returns the ids to unlock (see :meth:`_release_queued`)."""
        self.is_running = False
        if self._timer is not None:
            self._timer.cancel()
        self._claims.cancel()
        released = self._release_queued()
        await self._claims.close()
        return released

    def _release_queued(self) -> list[str]:
        """Forget every claimed job that has not started; return the ids to unlock: those
        whose lock is still live. An expired one may belong to another worker by now, and
        unlocking by id would clear that worker's lock; if nobody took it, it is stale anyway
        and the next claim takes it."""
        self.dispatching = False
        now = self.scheduler.clock.now()
        ids = [job_id for job_id, job in self.locked.items()
               if job_id not in self.running and not job.lock_expired(now)]
        for queue in self._queues.values():
            for job in queue.jobs():
                self._forget(job)
        self._queues.clear()
        return ids

    async def wait_idle(
        self, *, completed_before: int, timeout: float | None, abort: asyncio.Event | None
    ) -> DrainResult:
        """Wait until no job runs, at most ``timeout`` seconds or until ``abort`` is set;
        ``completed`` counts the runs that ended since :attr:`completed` was
        ``completed_before``."""
        if abort is not None and abort.is_set():
            return DrainResult(completed=0, running=len(self.running), timed_out=False,
                               aborted=True)
        outcome = await _first_of(self._idle.wait(), timeout, abort)
        return DrainResult(
            completed=self.completed - completed_before,
            running=len(self.running),
            timed_out=outcome == "timeout",
            aborted=outcome == "abort",
        )

    # -- claiming ------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while self.is_running:
            self._claim_error = None
            failure: BaseException | None = None
            try:
                if self._tend is not None:
                    await self._tend()
                await self.process()
                self._check_expired_locks()
            except Exception as error:  # a store outage must not end the loop
                failure = error
                await self.scheduler.emit_error(error)
            await self.scheduler.emit_report(PollReport(
                at=self.scheduler.clock.now(), error=failure or self._claim_error))
            await asyncio.sleep(self.process_every / 1000)

    async def process(self, names: Iterable[str] | None = None) -> None:
        """Claim for ``names`` (default: every defined name with a handler), then dispatch."""
        now = self.scheduler.clock.now()
        self.next_scan_at = now + self._window
        targets = list(names) if names is not None else self.scheduler.runnable_names()
        # Through wake(): one claim per name at a time. Two concurrent claims of one name
        # interleave their SKIP LOCKED picks and mix up the arrival order of equal jobs.
        for name in targets:
            self.wake(name)
        filling = [task for name in targets if (task := self._filling.get(name)) is not None]
        await asyncio.gather(*filling, return_exceptions=True)
        self.dispatch()

    def wake(self, name: str) -> None:
        """Claim for one name soon (coalesced: one claim per name in flight)."""
        if not self.is_running:
            return
        definition = self.scheduler.definitions.get(name)
        if definition is None or definition.handler is None:  # runnable_names(), unlisted
            return
        if name in self._filling:
            self._refill.add(name)
            return
        self._filling[name] = self._claims.spawn(self._fill_and_dispatch(name))

    def wake_all(self) -> None:
        """Claim soon for every name with a handler here (after the channel reconnected)."""
        for name in self.scheduler.runnable_names():
            self.wake(name)

    async def _fill_and_dispatch(self, name: str) -> None:
        try:
            while True:
                self._refill.discard(name)
                await self._fill(name)
                self.dispatch()
                if name not in self._refill or not self.is_running:
                    break
        except Exception as error:
            await self.scheduler.emit_error(error)
        finally:
            self._filling.pop(name, None)

    async def _fill(self, name: str) -> None:
        definition = self.scheduler.definitions[name]
        self._drained.discard(name)
        while self.is_running and (room := self._room(definition)) > 0:
            now = self.scheduler.clock.now()
            deadline = now - timedelta(milliseconds=definition.lock_lifetime)
            self._reserved += room
            try:
                claimed = await self._claim(name, deadline, room, now)
            finally:
                self._reserved -= room
            for params in claimed:
                self._accept(params)
            if len(claimed) < room:
                self._drained.add(name)
                return

    async def _claim(
        self, name: str, deadline: datetime, room: int, now: datetime
    ) -> list[JobParameters[Any]]:
        """One claim from the store, reported to the ``claim`` listeners (and a failure to
        the poll it belongs to)."""
        started = time.perf_counter()
        try:
            claimed = await self.scheduler.repository.get_next_jobs_to_run(
                name, self.next_scan_at, deadline, room, now,
                last_modified_by=self.scheduler.name,
            )
        except Exception as error:
            self._claim_error = error
            await self.scheduler.emit_report(ClaimReport(
                name=name, claimed=0, seconds=time.perf_counter() - started, error=error))
            raise
        await self.scheduler.emit_report(ClaimReport(
            name=name, claimed=len(claimed), seconds=time.perf_counter() - started))
        return claimed

    def _room(self, definition: JobDefinition) -> int:
        status = self._status(definition.name)
        limits = [definition.concurrency * 2 - status.locked]
        if self.lock_limit > 0:
            limits.append(self.lock_limit - len(self.locked) - self._reserved)
        if definition.lock_limit > 0:
            limits.append(definition.lock_limit - status.locked)
        return max(0, min(limits))

    def _accept(self, params: JobParameters[Any]) -> None:
        assert params.id is not None
        held = self.locked.get(params.id)
        if held is not None:  # our own stale lock, claimed again: the new lock is ours
            held.adopt_lock(params.locked_at)
            if params.id not in self.running:  # still queued: it may run on the new lock
                held.attrs.locked_at = params.locked_at
            return
        job: Job[Any] = Job(self.scheduler, params, lock_token=params.locked_at)
        self.scheduler.job_log.locked(job)
        self.locked[params.id] = job
        self._status(params.name).locked += 1
        queue = self._queues.get(params.name)
        if queue is None:
            queue = self._queues[params.name] = _NameQueue()
        queue.push(job)

    def handle_notification(self, notification: JobNotification) -> None:
        if not self.is_running:
            return
        next_run_at = notification.next_run_at
        if next_run_at is not None and next_run_at > self.next_scan_at:
            return  # the poll will see it in time
        self.wake(notification.job_name)

    # -- dispatching ---------------------------------------------------------------------

    def dispatch(self) -> None:
        """Start every due job that fits the limits; arm a timer for the next one."""
        if not self.dispatching:
            return
        now = self.scheduler.clock.now()
        while len(self.running) < self.max_concurrency:
            job = self._next_due(now)
            if job is None:
                break
            self._start(job)
        self._arm_timer(now)

    def _next_due(self, now: datetime) -> Job[Any] | None:
        best: tuple[datetime, int] | None = None
        best_queue: _NameQueue | None = None
        for name, queue in self._queues.items():
            job = self._head(queue, now)
            if job is None or not self._has_capacity(name):
                continue
            if job.attrs.next_run_at is not None and job.attrs.next_run_at > now:
                continue
            key = (job.attrs.next_run_at or _NEVER, -job.attrs.priority)
            if best is None or key < best:
                best, best_queue = key, queue
        return best_queue.pop() if best_queue is not None else None

    def _head(self, queue: _NameQueue, now: datetime) -> Job[Any] | None:
        """The first job of a queue whose lock is still ours; drop expired or far-off ones."""
        while (job := queue.peek()) is not None:
            if job.lock_expired(now):
                queue.pop()
                self._forget(job)  # another worker may own it now: never run it
            elif self._too_far(job, now):
                queue.pop()
                self._release(job)
            else:
                return job
        return None

    def _too_far(self, job: Job[Any], now: datetime) -> bool:
        next_run_at = job.attrs.next_run_at
        return next_run_at is not None and next_run_at - now > self._window

    def _has_capacity(self, name: str) -> bool:
        definition = self.scheduler.definitions.get(name)
        if definition is None:
            return False
        return self._status(name).running < definition.concurrency

    def _arm_timer(self, now: datetime) -> None:
        upcoming = [
            job.attrs.next_run_at
            for queue in self._queues.values()
            if (job := queue.peek()) is not None and job.attrs.next_run_at is not None
            and job.attrs.next_run_at > now
        ]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if upcoming and self.dispatching:
            # Capped at one poll so a moved (fake or corrected) clock is noticed.
            delay = min((min(upcoming) - now).total_seconds(), self.process_every / 1000)
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0), self.dispatch)

    # -- running -------------------------------------------------------------------------

    def _start(self, job: Job[Any]) -> None:
        assert job.attrs.id is not None
        self.running[job.attrs.id] = job
        self.status[job.attrs.name].running += 1
        self._idle.clear()
        self._runs.spawn(self._run(job))

    async def _run(self, job: Job[Any]) -> None:
        try:
            await self.scheduler.run_job(job)  # what job.run() does, one frame less
        except Exception as error:
            await self.scheduler.emit_error(error)
        finally:
            self.completed += 1
            self._forget(job)
            if not self.running:
                self._idle.set()
            if self._may_have_more(job):
                self.wake(job.attrs.name)
            self.dispatch()

    def _may_have_more(self, job: Job[Any]) -> bool:
        """Whether a freed slot is worth a claim: not when the last claim of the name came
        back short and this job's own next run is beyond the poll window (new jobs announce
        themselves, and the poll covers the rest), so a trickle of jobs costs one claim each."""
        name, next_run_at = job.attrs.name, job.attrs.next_run_at
        if name not in self._drained:
            return True
        return next_run_at is not None and next_run_at <= self.next_scan_at

    def _check_expired_locks(self) -> None:
        """Tell about runs that outlived their lock without ``touch()``: another worker may
        take the job over now."""
        now = self.scheduler.clock.now()
        for job in list(self.running.values()):
            if job.abandon_reason is None and job.lock_expired(now):
                definition = self.scheduler.definitions[job.attrs.name]
                message = (
                    f"execution of {job.attrs.name!r} canceled, execution took more than "
                    f"{definition.lock_lifetime}ms. Call touch() for long running jobs to keep "
                    "them alive."
                )
                job.abandon_run(message)
                self.scheduler.job_log.expired(job)
                self.scheduler.emit_error_soon(AgendaError(message))

    def _status(self, name: str) -> NameStatus:
        """The counts of ``name`` (made on first use; not with ``setdefault``, which would
        build a new one per call: several calls per job)."""
        status = self.status.get(name)
        if status is None:
            status = self.status[name] = NameStatus()
        return status

    def _forget(self, job: Job[Any]) -> None:
        job_id = job.attrs.id
        assert job_id is not None
        status = self._status(job.attrs.name)
        if self.locked.pop(job_id, None) is not None:
            status.locked -= 1
        if self.running.pop(job_id, None) is not None:
            status.running -= 1

    def _release(self, job: Job[Any]) -> None:
        """Give a claimed job back to the store (it is not due within this window)."""
        self._forget(job)
        self._releases.spawn(self.scheduler.repository.unlock_job(job.attrs))

    def queued_jobs(self) -> list[Job[Any]]:
        return [job for queue in self._queues.values() for job in queue.jobs()]


async def _first_of(
    idle: Awaitable[Any], seconds: float | None, abort: asyncio.Event | None
) -> Literal["idle", "timeout", "abort"]:
    waiters: dict[asyncio.Task[Any], Literal["idle", "abort"]] = {
        asyncio.ensure_future(idle): "idle"
    }
    if abort is not None:
        waiters[asyncio.ensure_future(abort.wait())] = "abort"
    done, pending = await asyncio.wait(waiters, timeout=seconds,
                                       return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if not done:
        return "timeout"
    return "idle" if any(waiters[t] == "idle" for t in done) else "abort"
