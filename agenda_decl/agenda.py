"""The scheduler facade: definitions, creating and managing jobs, lifecycle and event
registration. It wires a backend and a notification channel into the runtime
(:mod:`agenda_decl.runtime`), which does the work and sees the Agenda only through the
protocols it defines (``JobOwner`` in :mod:`agenda_decl.job`, ``Scheduler`` in
:mod:`agenda_decl.runtime.scheduler`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar, overload

from agenda_decl import timing
from agenda_decl._clock import Clock, StoreAlignedClock
from agenda_decl._job_data import not_a_plain_insert
from agenda_decl._job_log import JobLogQuery, JobLogQueryResult
from agenda_decl._model import (
    DrainResult,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
)
from agenda_decl.backoff import BackoffStrategy
from agenda_decl.errors import (
    AgendaNotRunningError,
    BackendUnavailableError,
    BatchItemError,
    InvalidOptionError,
    NotConnectedError,
    UnknownJobError,
)
from agenda_decl.interfaces import AgendaBackend, JobRepository, NotificationChannel
from agenda_decl.job import Handler, Job, JobDefinition
from agenda_decl.runtime.channel_link import ChannelLink
from agenda_decl.runtime.events import (
    ClaimReport,
    Events,
    EventSubscriptions,
    JobEvent,
    PollReport,
    RetryDetails,
)
from agenda_decl.runtime.job_log import JobLog, LoggingOption, choose_logger
from agenda_decl.runtime.processor import JobProcessor
from agenda_decl.runtime.runner import Runner
from agenda_decl.runtime.state_writer import StateWriter
from agenda_decl.runtime.stats import RunningStats, running_stats
from agenda_decl.timing import Duration

#: ``Handler``, ``JobDefinition`` and ``RetryDetails`` live below the facade (job, runtime);
#: they stay importable from here.
__all__ = ["Agenda", "Handler", "JobDefinition", "RetryDetails", "RunningStats"]

log = logging.getLogger("agenda_decl")
H = TypeVar("H", bound=Callable[..., Any])


def _count(value: int, *, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidOptionError(f"invalid {field}: {value!r} (an integer >= {minimum})")
    return value


def _default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Agenda(EventSubscriptions):
    """Schedules and runs jobs stored in ``backend``.

        agenda = Agenda(backend=SQLiteBackend(path="jobs.db"), process_every="1 second")
        agenda.define("send-email", send_email, concurrency=5)
        await agenda.start()
        await agenda.now("send-email", {"to": "a@b.c"})
    """

    def __init__(
        self,
        backend: AgendaBackend,
        *,
        notification_channel: NotificationChannel | None = None,
        name: str | None = None,
        process_every: Duration = "5 seconds",
        max_concurrency: int = 20,
        default_concurrency: int = 5,
        lock_limit: int = 0,
        default_lock_limit: int = 0,
        default_lock_lifetime: Duration = 600_000,
        remove_on_complete: bool = False,
        clock: Clock | None = None,
        logging: LoggingOption = None,
    ) -> None:
        self.backend = backend
        #: Written as ``last_modified_by`` and sent as ``source``; unique per instance by default
        #: so that two unnamed workers still hear each other's state events.
        self.name = name or _default_name()
        self.process_every = timing.parse_duration(process_every, field="process_every")
        if self.process_every <= 0:
            raise InvalidOptionError(f"invalid process_every: {process_every!r} (must be > 0)")
        self.max_concurrency = _count(max_concurrency, field="max_concurrency", minimum=1)
        self.default_concurrency = _count(
            default_concurrency, field="default_concurrency", minimum=1
        )
        self.lock_limit = _count(lock_limit, field="lock_limit", minimum=0)
        self.default_lock_limit = _count(default_lock_limit, field="default_lock_limit", minimum=0)
        self.default_lock_lifetime = timing.parse_duration(
            default_lock_lifetime, field="default_lock_lifetime"
        )
        self.remove_on_complete = remove_on_complete
        self.clock: Clock = clock or StoreAlignedClock()
        self.definitions: dict[str, JobDefinition] = {}
        self._events = Events()
        self._link = ChannelLink(
            self, notification_channel or backend.notification_channel, self._events,
            store_name=backend.name, store_channel=notification_channel is None,
        )
        self._processor: JobProcessor | None = None
        self._ready = False
        self._ready_lock = asyncio.Lock()
        #: Counts stops: a job that started under an earlier value outlived its scheduler.
        self.generation = 0
        #: stop() or drain() closed the store: runs that outlive it write nothing.
        self._store_closed = False
        self._executor: ThreadPoolExecutor | None = None
        self._state_writer = StateWriter(backend.repository, self.name)
        self._runner = Runner(self)
        #: The job log (Agenda 6.2's ``logging``): see :mod:`agenda_decl.runtime.job_log`.
        self.job_log = JobLog(*choose_logger(logging, backend), agenda_name=self.name,
                              clock=self.clock, definitions=self.definitions,
                              on_error=self.emit_error_soon)

    @property
    def repository(self) -> JobRepository:
        return self.backend.repository

    @property
    def channel(self) -> NotificationChannel | None:
        """The notification channel: the one given, else the backend's own (or none)."""
        return self._link.channel

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Threads for plain ``def`` handlers: one per possible concurrent job, so a slow
        sync handler never waits behind others for a thread while its lock ages."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="agenda-job"
            )
        return self._executor

    # -- definitions ---------------------------------------------------------------------

    @overload
    def define(self, name: str, handler: None = None, **options: Any) -> Callable[[H], H]: ...
    @overload
    def define(self, name: str, handler: Handler, **options: Any) -> JobDefinition: ...

    def define(
        self, name: str, handler: Handler | None = None, **options: Any
    ) -> JobDefinition | Callable[[H], H]:
        """Define how jobs called ``name`` run. Without ``handler`` it is a decorator.

        Options: ``concurrency``, ``lock_limit``, ``lock_lifetime``, ``priority``, ``backoff``,
        ``remove_on_complete``, ``validate_data`` (a function that checks the data of every
        job created with this name and returns what to store), ``logging`` (whether the job
        log records its events; default: the Agenda's). Defining a name again replaces the
        definition.
        """
        if handler is None:

            def decorator(function: H) -> H:
                self.define(name, function, **options)
                return function

            return decorator
        return self._register(name, handler, **options)

    def declare(self, name: str, **options: Any) -> JobDefinition:
        """Make a job name known without a handler: this process may create such jobs but
        never runs them (a web app that only enqueues)."""
        return self._register(name, None, **options)

    def _register(
        self,
        name: str,
        handler: Handler | None,
        *,
        concurrency: int | None = None,
        lock_limit: int | None = None,
        lock_lifetime: Duration | None = None,
        priority: int | str | None = None,
        backoff: BackoffStrategy | None = None,
        remove_on_complete: bool | None = None,
        validate_data: Callable[[Any], Any] | None = None,
        logging: bool | None = None,
    ) -> JobDefinition:
        if not isinstance(name, str) or not name or len(name) > 255:
            raise InvalidOptionError(f"invalid job name {name!r} (1 to 255 characters)")
        if handler is not None and not callable(handler):
            raise InvalidOptionError(f"handler for {name!r} is not callable: {handler!r}")
        if logging is not None and not isinstance(logging, bool):
            raise InvalidOptionError(f"invalid logging of {name!r}: {logging!r} (a bool)")
        lifetime = self.default_lock_lifetime if lock_lifetime is None else lock_lifetime
        definition = JobDefinition(
            name=name,
            handler=handler,
            concurrency=_count(
                self.default_concurrency if concurrency is None else concurrency,
                field=f"concurrency of {name!r}", minimum=1,
            ),
            lock_limit=_count(
                self.default_lock_limit if lock_limit is None else lock_limit,
                field=f"lock_limit of {name!r}", minimum=0,
            ),
            lock_lifetime=timing.parse_duration(lifetime, field=f"lock_lifetime of {name!r}"),
            priority=timing.parse_priority(priority),
            backoff=backoff,
            remove_on_complete=remove_on_complete,
            validate_data=validate_data,
            logging=logging,
        )
        self.definitions[name] = definition
        return definition

    def runnable_names(self) -> list[str]:
        return [name for name, d in self.definitions.items() if d.handler is not None]

    # -- creating jobs -------------------------------------------------------------------

    def create(self, name: str, data: Any = None, *, validate: bool = True) -> Job[Any]:
        """A new, unsaved job of a defined (or declared) name, due now. The definition's
        ``validate_data`` checks ``data`` first (``validate=False`` skips it, for data that
        was checked already)."""
        definition = self._definition(name)
        if validate and definition.validate_data is not None:
            data = definition.validate_data(data)
        params: JobParameters[Any] = JobParameters(
            name=name, data=data, priority=definition.priority, next_run_at=self.clock.now()
        )
        return Job(self, params)

    async def now(self, name: str, data: Any = None) -> Job[Any]:
        """Create and save a job that runs as soon as possible."""
        return await self.create(name, data).schedule(self.clock.now()).save()

    async def now_many(self, name: str, items: Iterable[Any]) -> list[Job[Any]]:
        """:meth:`now` for many jobs of one name, one per item (its data), saved as
        :meth:`save_many` saves. An item the definition's ``validate_data`` refuses raises
        ``BatchItemError`` naming its index (and the field and value), and nothing is stored."""
        definition = self._definition(name)
        validate, priority = definition.validate_data, definition.priority
        # What create() builds, without its per-job lookups: one instant for the batch (every
        # job is due now; the store keeps the batch's order among equal times).
        now = self.clock.now()
        jobs = []
        for index, data in enumerate(items):
            if validate is not None:
                try:
                    data = validate(data)
                except Exception as error:  # whatever validate_data raises: refused
                    raise BatchItemError(index, error) from error
            jobs.append(Job(self, JobParameters(name=name, data=data, priority=priority,
                                                next_run_at=now)))
        return await self.save_many(jobs)

    async def save_many(self, jobs: Iterable[Job[Any]]) -> list[Job[Any]]:
        """Save new jobs from :meth:`create` together and return them, saved, in order:
        ``JobRepository.insert_jobs`` says what is accepted (plain inserts), how a bad job is
        refused (``BatchItemError`` naming its index; nothing stored) and how the batches and
        their notifications (one per job name and batch) go out."""
        batch = list(jobs)
        if batch:
            await self.ready()
            stored = await self._link.insert([job.attrs for job in batch])
            for job, params in zip(batch, stored, strict=True):
                job.saved_as(params)
        return batch

    @overload
    async def schedule(self, when: datetime | str, names: str, data: Any = None,
                       **options: Any) -> Job[Any]: ...
    @overload
    async def schedule(self, when: datetime | str, names: list[str], data: Any = None,
                       **options: Any) -> list[Job[Any]]: ...

    async def schedule(
        self, when: datetime | str, names: str | list[str], data: Any = None, **options: Any
    ) -> Job[Any] | list[Job[Any]]:
        """Create and save one-off jobs that run at ``when``. Options: ``start_date``,
        ``end_date``, ``skip_days``."""
        jobs = [self._constrain(self.create(name, data), **options).schedule(when)
                for name in _as_list(names)]
        return await self._save_all(jobs, single=isinstance(names, str))

    @overload
    async def every(self, interval: Duration, names: str, data: Any = None,
                    **options: Any) -> Job[Any]: ...
    @overload
    async def every(self, interval: Duration, names: list[str], data: Any = None,
                    **options: Any) -> list[Job[Any]]: ...

    async def every(
        self, interval: Duration, names: str | list[str], data: Any = None, **options: Any
    ) -> Job[Any] | list[Job[Any]]:
        """Create or update the one repeating job of each name. Options: ``timezone``,
        ``skip_immediate``, ``start_date``, ``end_date``, ``skip_days``."""
        timezone = options.pop("timezone", None)
        skip_immediate = options.pop("skip_immediate", False)
        jobs = []
        for name in _as_list(names):
            job = self._constrain(self.create(name, data), **options)
            job.attrs.type = "single"
            jobs.append(job.repeat_every(interval, timezone=timezone,
                                         skip_immediate=skip_immediate))
        return await self._save_all(jobs, single=isinstance(names, str))

    def _constrain(
        self,
        job: Job[Any],
        *,
        start_date: datetime | str | None = None,
        end_date: datetime | str | None = None,
        skip_days: Iterable[int] | None = None,
    ) -> Job[Any]:
        if start_date is not None:
            job.start_date(start_date)
        if end_date is not None:
            job.end_date(end_date)
        if skip_days is not None:
            job.skip_days(skip_days)
        return job

    async def _save_all(self, jobs: list[Job[Any]], *, single: bool) -> Job[Any] | list[Job[Any]]:
        saved = [await job.save() for job in jobs]
        return saved[0] if single else saved

    def _definition(self, name: str) -> JobDefinition:
        definition = self.definitions.get(name)
        if definition is None:
            known = ", ".join(sorted(self.definitions)) or "none"
            raise UnknownJobError(
                f"unknown job name {name!r}: define() or declare() it first (known: {known})"
            )
        return definition

    # -- managing jobs -------------------------------------------------------------------

    async def query_jobs(
        self, options: JobsQueryOptions | None = None, **filters: Any
    ) -> JobsResult:
        """Jobs with their computed state: ``query_jobs(JobsQueryOptions(...))`` or keywords."""
        await self.ready()
        return await self.repository.query_jobs(options or JobsQueryOptions(**filters))

    async def get_jobs_overview(self) -> list[JobsOverview]:
        await self.ready()
        return await self.repository.get_jobs_overview()

    async def cancel(self, options: RemoveJobsOptions | None = None, **criteria: Any) -> int:
        """Delete matching jobs; return how many. Empty criteria delete nothing."""
        await self.ready()
        return await self.repository.remove_jobs(options or RemoveJobsOptions(**criteria))

    async def disable(self, options: RemoveJobsOptions | None = None, **criteria: Any) -> int:
        await self.ready()
        return await self.repository.disable_jobs(options or RemoveJobsOptions(**criteria))

    async def enable(self, options: RemoveJobsOptions | None = None, **criteria: Any) -> int:
        await self.ready()
        return await self.repository.enable_jobs(options or RemoveJobsOptions(**criteria))

    async def get_logs(
        self, query: JobLogQuery | None = None, **criteria: Any
    ) -> JobLogQueryResult:
        """Entries of the job log (``get_logs(JobLogQuery(...))`` or keywords), newest first;
        none when this Agenda does not log (as Node's ``getLogs``)."""
        if self.job_log.logger is not None:
            await self.ready()
        return await self.job_log.read(query or JobLogQuery(**criteria))

    async def clear_logs(self, query: JobLogQuery | None = None, **criteria: Any) -> int:
        """Delete the job log's entries matching ``query`` (all of them without criteria);
        return how many (0 when this Agenda does not log)."""
        if self.job_log.logger is not None:
            await self.ready()
        return await self.job_log.clear(query or (JobLogQuery(**criteria) if criteria else None))

    async def purge(self) -> int:
        """Delete jobs whose name has no definition here (nothing when nothing is defined)."""
        if not self.definitions:
            return 0
        return await self.cancel(RemoveJobsOptions(not_names=sorted(self.definitions)))

    # -- lifecycle -----------------------------------------------------------------------

    async def ready(self) -> None:
        """Connect the backend (once) and, if there is one, the notification channel.

        A channel that cannot connect is reported as an ``error`` event and the scheduler
        goes on polling (one whose configuration is refused raises ``InvalidOptionError``);
        a backend that cannot connect raises ``BackendUnavailableError``.
        """
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            await self._connect_backend()
            self._store_closed = False
            await self.job_log.connect()
            await self._link.attach()
            self._ready = True
        await self._events.emit_ready()

    async def _connect_backend(self) -> None:
        try:
            await self.backend.connect()
        except Exception as error:
            await self.emit_error(error)
            raise BackendUnavailableError(
                f"cannot connect to the {self.backend.name} backend: {error}"
            ) from error
        await self._link.measure_skew()

    async def start(self) -> None:
        """Start processing jobs in the background. Does nothing when already started."""
        await self.ready()
        if self._processor is not None:
            return
        self._processor = JobProcessor(
            self,
            max_concurrency=self.max_concurrency,
            lock_limit=self.lock_limit,
            process_every=self.process_every,
            tend=self._link.tend,
        )
        self._link.processor = self._processor
        self._processor.start()

    async def stop(self, *, close_connection: bool | None = None) -> None:
        """Stop processing, release the claimed jobs that have not started and close the
        connections. Running handlers are not awaited (use :meth:`drain` to let them finish)
        and keep their locks: another worker takes such a job over only once its lock
        expires (Agenda unlocks them, so a second worker could run them at once). A run that
        outlives ``stop()`` still writes its state if the store stays open."""
        processor = self._processor
        if processor is not None:
            released = await processor.stop()
            # State writes already submitted go out before the connection closes.
            await self._state_writer.flush()
            if released:
                await self.repository.unlock_jobs(released)
        if self._ready:
            await self._teardown(close_connection)

    async def drain(
        self,
        timeout: Duration | None = None,
        *,
        abort: asyncio.Event | None = None,
        close_connection: bool | None = None,
    ) -> DrainResult:
        """Stop claiming, release queued jobs, and wait for running ones (up to ``timeout``)."""
        processor = self._processor
        if processor is None:
            return DrainResult(completed=0, running=0, timed_out=False, aborted=False)
        started = processor.completed
        released = await processor.stop()
        if released:
            await self.repository.unlock_jobs(released)
        seconds = None if timeout is None else timing.parse_duration(timeout) / 1000
        result = await processor.wait_idle(completed_before=started, timeout=seconds,
                                           abort=abort)
        await self._teardown(close_connection)
        return result

    async def _teardown(self, close_connection: bool | None) -> None:
        self._processor = self._link.processor = None
        await self._link.detach()
        await self.job_log.flush()
        close = self.backend.owns_connection if close_connection is None else close_connection
        if close:
            self._store_closed = True
            await self.backend.disconnect()
        self._ready = False
        self.generation += 1

    async def get_running_stats(self, full_details: bool = False) -> RunningStats:
        processor = self._processor
        if processor is None:
            raise AgendaNotRunningError("agenda not running!")
        return await running_stats(
            processor, name=self.name, repository=self.repository, definitions=self.definitions,
            config={"lock_limit": self.lock_limit, "max_concurrency": self.max_concurrency,
                    "process_every": self.process_every},
            backend={"name": self.backend.name, "has_notification_channel": bool(self.channel)},
            full_details=full_details,
        )

    @property
    def is_active_job_processor(self) -> bool:
        return self._processor is not None

    def _listeners_changed(self) -> None:
        self._link.sync_state_subscription()

    # -- what jobs and the runtime call (JobOwner, Scheduler) ----------------------------

    async def save_job(self, params: JobParameters[Any]) -> JobParameters[Any]:
        """Store ``params`` and announce it (a plain insert in one round trip with its
        notification where the store can)."""
        await self.ready()
        if not_a_plain_insert(params) is None:
            try:
                return (await self._link.insert([params]))[0]
            except BatchItemError as error:  # a lone save: the job's own error
                raise error.cause from None
        stored = await self.repository.save_job(
            params, last_modified_by=self.name, now=self.clock.now()
        )
        await self._link.publish_saved([stored])
        return stored

    async def save_job_state(
        self,
        params: JobParameters[Any],
        *,
        started_in: int | None = None,
        lock_token: datetime | None = None,
    ) -> None:
        """Write the state fields of a job. A job started before the last stop
        (``started_in`` older than :attr:`generation`) writes only if the store is still open:
        when ``stop()`` closed it, the write raises ``NotConnectedError`` on every backend and
        reconnects nothing (the loop may be shutting down). With a
        ``lock_token`` (the lock the running job holds) the write is fenced: it raises
        ``LockLostError`` and stores nothing when the stored lock is another one."""
        if started_in is None or started_in == self.generation:
            await self.ready()
        elif self._store_closed:
            raise NotConnectedError(
                f"stop() closed the {self.backend.name} store before this run ended"
            )
        await self._state_writer.save(params, lock_token=lock_token)

    def submit_job_state(
        self,
        params: JobParameters[Any],
        *,
        lock_token: datetime | None = None,
        started_in: int | None = None,
    ) -> asyncio.Future[None]:
        """:meth:`save_job_state` without waiting for it (a run's start and end writes): the
        state is queued at once while the store is open for this run, else the checks of
        :meth:`save_job_state` run first (as a task)."""
        if self._ready and (started_in is None or started_in == self.generation):
            return self._state_writer.submit(params, lock_token=lock_token)
        return asyncio.ensure_future(
            self.save_job_state(params, started_in=started_in, lock_token=lock_token)
        )

    def run_job(self, job: Job[Any]) -> Coroutine[Any, Any, None]:
        """The run of ``job`` (the runner's coroutine itself: one frame less per job)."""
        return self._runner.run(job)

    async def report_progress(self, job: Job[Any], progress: float) -> None:
        await self.emit_job_event(JobEvent(name="progress", job=job, progress=progress))

    async def emit_error(self, error: BaseException) -> None:
        await self._events.emit_error(error)

    async def emit_report(self, report: ClaimReport | PollReport) -> None:
        await self._events.emit_report(report)

    def emit_error_soon(self, error: BaseException) -> None:
        self._events.emit_error_soon(error)

    def hears_job_events(self) -> bool:
        """Whether a job event would reach anything: a listener, the job log, or the other
        workers (a channel that carries states). A worker nobody hears skips making them."""
        return (self._events.listens_to_job_events() or self.job_log.logger is not None
                or self._link.publishes_states)

    async def emit_job_event(self, event: JobEvent) -> None:
        """Log ``event``, emit it and ``event:<name>`` locally, then tell other workers."""
        self.job_log.event(event)
        if self._events.listens_to(event):
            await self._events.emit_job(event)
        self._link.publish_state(event)


def _as_list(names: str | Sequence[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)
