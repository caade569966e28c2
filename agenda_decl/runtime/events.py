"""The Agenda's events, typed: one argument shape per event, whether this process ran the job
or another worker did and its state notification was relayed here.

    agenda.on("complete:send-email", listener)   # listener(job)
    agenda.on("fail", listener)                  # listener(error, job)
    agenda.on("retry", listener)                 # listener(job, details)
    agenda.on("progress", listener)              # listener(job, progress)
    agenda.on("claim", listener)                 # listener(ClaimReport): this worker's claims
    agenda.on("poll", listener)                  # listener(PollReport): each poll's outcome

``job`` is the :class:`~agenda_decl.job.Job` this process ran, or a :class:`RemoteJob` when
another worker ran it: both have ``attrs`` (a ``JobParameters``), so ``job.attrs.name`` and
``job.attrs.id`` read the same either way, and ``isinstance(job, RemoteJob)`` tells them apart.
The error of a relayed ``fail`` is an ``AgendaError`` holding the other worker's message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, get_args, overload

import attrs

from agenda_decl._events import EventEmitter
from agenda_decl._model import JobParameters, JobStateNotification, StateNotificationType
from agenda_decl._tasks import BackgroundTasks
from agenda_decl.errors import AgendaError
from agenda_decl.job import Job

log = logging.getLogger("agenda_decl")

JobEventName = Literal[
    "start", "success", "fail", "complete", "progress", "retry", "retry exhausted"
]
#: The events other workers send on the channel's state side (``start``, ``complete``, ...).
STATE_EVENTS: frozenset[str] = frozenset(get_args(StateNotificationType))
JOB_EVENTS: frozenset[str] = frozenset(get_args(JobEventName))


@attrs.define(kw_only=True, frozen=True)
class RetryDetails:
    attempt: int
    delay: int
    next_run_at: datetime | None
    error: BaseException


@attrs.frozen
class RemoteJob:
    """A job another worker ran, as its state notification tells it.

    ``attrs`` holds what the notification carries: ``id``, ``name``, ``last_run_at``,
    ``last_finished_at``, and on a failure ``fail_count`` and ``fail_reason``, on a retry
    ``next_run_at``, on progress ``progress``; every other field keeps its default (the data
    is not sent). ``notification`` is the message itself (type, source, timestamp, duration,
    retry attempt).
    """

    attrs: JobParameters[Any]
    notification: JobStateNotification

    @classmethod
    def of(cls, notification: JobStateNotification) -> RemoteJob:
        params: JobParameters[Any] = JobParameters(
            id=notification.job_id,
            name=notification.job_name,
            next_run_at=notification.retry_at,
            last_run_at=notification.last_run_at,
            last_finished_at=notification.last_finished_at,
            fail_count=notification.fail_count,
            fail_reason=notification.error,
            progress=notification.progress,
        )
        return cls(params, notification)


#: The job an event is about: run here, or by another worker (relayed).
EventJob = Job[Any] | RemoteJob


@attrs.define(kw_only=True, frozen=True)
class ClaimReport:
    """One claim of due jobs of a name from the store (the ``claim`` event): how many it
    got, how long the store took (monotonic seconds), and what failed, if it did."""

    name: str
    claimed: int
    seconds: float
    error: BaseException | None = None


@attrs.define(kw_only=True, frozen=True)
class PollReport:
    """One poll of a started Agenda (the ``poll`` event, every ``process_every``):
    ``error`` is what made it fail (the store, a claim), None when it succeeded."""

    at: datetime
    error: BaseException | None = None


#: ``claim`` and ``poll`` listeners: what a started Agenda tells about its own work.
ClaimListener = Callable[[ClaimReport], Any]
PollListener = Callable[[PollReport], Any]

ReadyListener = Callable[[], Any]
ErrorListener = Callable[[BaseException], Any]
#: ``start``, ``success``, ``complete``.
JobListener = Callable[[EventJob], Any]
#: ``fail``, ``retry exhausted``.
FailListener = Callable[[BaseException, EventJob], Any]
RetryListener = Callable[[EventJob, RetryDetails], Any]
ProgressListener = Callable[[EventJob, float | None], Any]
#: Any of the above; the ``EVENT:<job name>`` forms take the listener of their event.
Listener = Callable[..., Any]


@attrs.define(kw_only=True, frozen=True)
class JobEvent:
    """One job event, local or relayed; :meth:`arguments` is the one place that decides what
    its listeners receive."""

    name: JobEventName
    job: EventJob
    #: ``fail`` and ``retry exhausted``: what failed; ``retry``: the failure retried.
    error: BaseException | None = None
    #: ``retry`` only.
    details: RetryDetails | None = None
    #: ``progress`` only.
    progress: float | None = None

    def arguments(self) -> tuple[Any, ...]:
        if self.name in ("fail", "retry exhausted"):
            return (self.error, self.job)
        if self.name == "retry":
            return (self.job, self.details)
        if self.name == "progress":
            return (self.job, self.progress)
        return (self.job,)

    @classmethod
    def retry(cls, job: Job[Any], *, error: BaseException, delay: int) -> JobEvent:
        """A local retry: the job's ``next_run_at`` is the time of the next attempt."""
        details = RetryDetails(attempt=job.attrs.fail_count or 1, delay=delay,
                               next_run_at=job.attrs.next_run_at, error=error)
        return cls(name="retry", job=job, error=error, details=details)

    @classmethod
    def relayed(cls, notification: JobStateNotification, now: datetime) -> JobEvent:
        """The event of another worker's state notification, in the local shape."""
        job = RemoteJob.of(notification)
        kind = notification.type
        error = None
        if kind in ("fail", "retry"):
            error = AgendaError(notification.error or "Unknown error")
        if kind == "retry":
            assert error is not None
            details = RetryDetails(attempt=notification.retry_attempt or 1, delay=0,
                                   next_run_at=notification.retry_at or now, error=error)
            return cls(name=kind, job=job, error=error, details=details)
        progress = notification.progress if kind == "progress" else None
        return cls(name=kind, job=job, error=error, progress=progress)


class Events:
    """The listeners of one Agenda and the emitting of its events."""

    def __init__(self) -> None:
        self._emitter = EventEmitter()
        #: ``error`` events emitted from code that cannot wait for the listeners.
        self._soon = BackgroundTasks(what="error event")
        #: :meth:`listens_to_job_events` as of the emitter's ``version`` (asked per event).
        self._job_listeners: tuple[int, bool] = (-1, False)

    def on(self, event: str, listener: Listener) -> None:
        self._emitter.on(event, listener)

    def once(self, event: str, listener: Listener) -> None:
        self._emitter.once(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        self._emitter.off(event, listener)

    def listens_to_job_events(self) -> bool:
        """Whether any listener waits for a job event (``start``, ``fail``, ..., or a per-name
        form); recomputed only after listeners changed."""
        version, listening = self._job_listeners
        if version != self._emitter.version:
            version = self._emitter.version
            listening = any(event.partition(":")[0] in JOB_EVENTS
                            for event in self._emitter.events())
            self._job_listeners = (version, listening)
        return listening

    def listens_to_state_events(self) -> bool:
        """Whether any listener waits for an event other workers relay (or its per-name
        form)."""
        return any(event.partition(":")[0] in STATE_EVENTS for event in self._emitter.events())

    async def emit_ready(self) -> None:
        await self._emitter.emit("ready")

    def listens_to(self, event: JobEvent) -> bool:
        """Whether ``event`` or its ``EVENT:<job name>`` form has a listener (a worker
        nobody listens to emits three per job: asked before any coroutine is made)."""
        emitter = self._emitter
        return bool(emitter.listener_count(event.name)
                    or emitter.listener_count(f"{event.name}:{event.job.attrs.name}"))

    async def emit_job(self, event: JobEvent) -> None:
        """Emit ``event`` and its ``EVENT:<job name>`` form, awaiting each listener."""
        if not self.listens_to(event):
            return
        emitter, name = self._emitter, event.name
        arguments = event.arguments()
        await emitter.emit(name, *arguments)
        await emitter.emit(f"{name}:{event.job.attrs.name}", *arguments)

    async def emit_report(self, report: ClaimReport | PollReport) -> None:
        """A ``claim`` or ``poll`` event."""
        await self._emitter.emit("claim" if isinstance(report, ClaimReport) else "poll", report)

    async def emit_error(self, error: BaseException) -> None:
        """An ``error`` event; logged when nothing listens (Agenda would throw)."""
        if self._emitter.listener_count("error"):
            await self._emitter.emit("error", error)
        elif isinstance(error, AgendaError | ConnectionError):
            log.error("agenda error: %s", error)
        else:  # not one of ours: the traceback helps
            log.error("agenda error: %s", error, exc_info=error)

    def emit_error_soon(self, error: BaseException) -> None:
        """:meth:`emit_error` from code that does not wait for the listeners."""
        self._soon.spawn(self.emit_error(error))

    def emit_error_now(self, error: BaseException) -> bool:
        """Call the ``error`` listeners at once (async ones run as tasks); whether there were
        any."""
        if not self._emitter.listener_count("error"):
            return False
        self._emitter.emit_sync("error", error)
        return True


class EventSubscriptions:
    """The typed ``on``/``once``/``off`` of the Agenda facade: each event name with the
    listener shape it calls (the overloads), over :class:`Events`. A subclass learns of every
    change through ``_listeners_changed`` (the Agenda subscribes to relayed job states only
    while someone listens)."""

    _events: Events

    def _listeners_changed(self) -> None:
        """Called after every ``on``, ``once`` and ``off``."""

    @overload
    def on(self, event: Literal["ready"], listener: ReadyListener) -> None: ...
    @overload
    def on(self, event: Literal["error"], listener: ErrorListener) -> None: ...
    @overload
    def on(self, event: Literal["start", "success", "complete"], listener: JobListener) -> None: ...
    @overload
    def on(self, event: Literal["fail", "retry exhausted"], listener: FailListener) -> None: ...
    @overload
    def on(self, event: Literal["retry"], listener: RetryListener) -> None: ...
    @overload
    def on(self, event: Literal["progress"], listener: ProgressListener) -> None: ...
    @overload
    def on(self, event: Literal["claim"], listener: ClaimListener) -> None: ...
    @overload
    def on(self, event: Literal["poll"], listener: PollListener) -> None: ...
    @overload
    def on(self, event: str, listener: Listener) -> None: ...

    def on(self, event: str, listener: Listener) -> None:
        """Listen to ``ready``, ``error``, ``start``, ``success``, ``fail``, ``complete``,
        ``progress``, ``retry``, ``retry exhausted``, or ``EVENT:<job name>``; ``claim`` and
        ``poll`` report this worker's claims and polls (metrics, health). A job event's
        listener gets the same arguments whether this process ran the job or another worker
        did (see :mod:`agenda_decl.runtime.events`)."""
        self._events.on(event, listener)
        self._listeners_changed()

    @overload
    def once(self, event: Literal["ready"], listener: ReadyListener) -> None: ...
    @overload
    def once(self, event: Literal["error"], listener: ErrorListener) -> None: ...
    @overload
    def once(self, event: Literal["start", "success", "complete"],
             listener: JobListener) -> None: ...
    @overload
    def once(self, event: Literal["fail", "retry exhausted"], listener: FailListener) -> None: ...
    @overload
    def once(self, event: Literal["retry"], listener: RetryListener) -> None: ...
    @overload
    def once(self, event: Literal["progress"], listener: ProgressListener) -> None: ...
    @overload
    def once(self, event: str, listener: Listener) -> None: ...

    def once(self, event: str, listener: Listener) -> None:
        """:meth:`on`, for the next event only."""
        self._events.once(event, listener)
        self._listeners_changed()

    def off(self, event: str, listener: Listener) -> None:
        self._events.off(event, listener)
        self._listeners_changed()
