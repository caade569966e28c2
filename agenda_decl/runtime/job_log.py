"""The Agenda's job log: which events are written (Agenda 6.2's points, levels, messages and
fields), for which jobs (the definition's ``logging``, else the Agenda's default), and writing
them off the job's path.

Writes are fire and forget, as in Node: an entry is queued and a group commit sends what
queued up meanwhile in one ``log_many`` call, so a burst of events costs one round trip. A
job never waits for its entries, and a write that fails or hangs never fails or delays it:
failures are reported as ``error`` events (at most one a minute, with the count of the
entries lost), and at most :data:`MAX_PENDING` entries wait (more are dropped and counted).
A stop or drain flushes the queue for up to :data:`FLUSH_TIMEOUT_S` before the store closes;
the entries of a run that outlives ``stop()`` are dropped (the store is closed by then).

Retention (the logger's ``retention``) is applied on write: after a batch is written, at most
once per :data:`PRUNE_EVERY_MS`, in the background. So only a process that writes entries
prunes them, starting with its first batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypedDict

from agenda_decl._clock import Clock
from agenda_decl._group_commit import GroupCommit
from agenda_decl._job_data import truncate_reason
from agenda_decl._job_log import (
    JobLogEntry,
    JobLogEvent,
    JobLogQuery,
    JobLogQueryResult,
    LogLevel,
    duration_ms,
    format_failure,
)
from agenda_decl._secrets import mask_text
from agenda_decl._tasks import BackgroundTasks
from agenda_decl.errors import AgendaError, InvalidOptionError
from agenda_decl.interfaces import AgendaBackend, JobLogger
from agenda_decl.job import Job, JobDefinition
from agenda_decl.runtime.events import JobEvent

__all__ = [
    "FLUSH_TIMEOUT_S",
    "MAX_PENDING",
    "PRUNE_EVERY_MS",
    "JobLog",
    "JobLogWriteError",
    "LoggingOption",
    "LoggingOptions",
    "choose_logger",
]

#: Entries that may wait to be written; beyond it new ones are dropped (and counted).
MAX_PENDING = 10_000
#: How long a stop or drain waits for the queued entries before it drops them (seconds).
FLUSH_TIMEOUT_S = 2.0
#: How often retention runs at most (milliseconds).
PRUNE_EVERY_MS = 60_000
#: How often a failing log is reported at most (seconds).
REPORT_EVERY_S = 60.0
_ONE_MICROSECOND = timedelta(microseconds=1)


class JobLogWriteError(AgendaError):
    """Job log entries were not written (the ``error`` event of a failing job log)."""


class JobLog:
    """What one Agenda writes to its job logger (``logger`` ``None``: nothing)."""

    def __init__(
        self,
        logger: JobLogger | None,
        default: bool,
        *,
        agenda_name: str,
        clock: Clock,
        definitions: Mapping[str, JobDefinition],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.logger = logger
        #: Whether a job whose definition says nothing (``logging=None``) is logged.
        self.default = default
        self._name = agenda_name
        self._clock = clock
        self._definitions = definitions
        self._writer = _Writer(logger, on_error) if logger is not None else None
        self._last_stamp: datetime | None = None

    def logs(self, job_name: str) -> bool:
        """Whether events of jobs called ``job_name`` are written."""
        if self.logger is None:
            return False
        definition = self._definitions.get(job_name)
        flag = definition.logging if definition is not None else None
        return self.default if flag is None else flag

    async def connect(self) -> None:
        """Create the logger's storage where missing; a failure is reported, not raised (the
        scheduler runs without its log rather than not at all)."""
        if self._writer is not None:
            await self._writer.connect()

    async def settle(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout`` seconds, default :data:`FLUSH_TIMEOUT_S`) until the
        entries queued so far are written, so that a read sees them."""
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writer.settle(), timeout or FLUSH_TIMEOUT_S)

    async def flush(self, timeout: float | None = None) -> None:
        """Before the store closes: write what is queued (up to ``timeout`` seconds, default
        :data:`FLUSH_TIMEOUT_S`; the rest is dropped and reported) and stop pruning. Until the
        next :meth:`connect`, entries are dropped (those of runs that outlive a ``stop()``:
        the store is closed)."""
        if self._writer is not None:
            await self._writer.flush(timeout or FLUSH_TIMEOUT_S)

    async def read(self, query: JobLogQuery | None) -> JobLogQueryResult:
        """The logger's entries (after the ones queued so far are written); none without a
        logger."""
        if self.logger is None:
            return JobLogQueryResult(entries=[], total=0)
        await self.settle()
        return await self.logger.get_logs(query)

    async def clear(self, query: JobLogQuery | None) -> int:
        """Delete the logger's entries matching ``query`` (queued ones written first)."""
        if self.logger is None:
            return 0
        await self.settle()
        return await self.logger.clear_logs(query)

    # -- the events ----------------------------------------------------------------------

    def event(self, event: JobEvent) -> None:
        """Write the entry of a local job event (``progress`` has none; relayed events are
        the other worker's to write)."""
        job = event.job
        if isinstance(job, Job) and self.logs(job.attrs.name):
            write = _EVENTS.get(event.name)
            if write is not None:
                write(self, event, job)

    def locked(self, job: Job[Any]) -> None:
        """A claim locked ``job`` (debug)."""
        if self.logs(job.attrs.name):
            self._write(job, "debug", "locked", "job locked")

    def expired(self, job: Job[Any]) -> None:
        """``job`` ran past its lock lifetime without ``touch()`` (its run is abandoned)."""
        if self.logs(job.attrs.name):
            self._write(job, "warn", "expired", "job expired (lock lifetime exceeded)")

    def abandoned(self, job: Job[Any], error: BaseException) -> None:
        """A claim found ``job``'s previous run unfinished (its lock expired: Node's
        ``expired`` entry, written by the worker that takes the job over)."""
        if self.logs(job.attrs.name):
            self._write(job, "warn", "expired", f"job expired: {_reason(error)}",
                        error=format_failure(error), fail_count=job.attrs.fail_count)

    def _start(self, event: JobEvent, job: Job[Any]) -> None:
        self._write(job, "info", "start", "job started")

    def _success(self, event: JobEvent, job: Job[Any]) -> None:
        attrs = job.attrs
        self._write(job, "info", "success", "job succeeded",
                    duration=duration_ms(attrs.last_run_at, attrs.last_finished_at))

    def _fail(self, event: JobEvent, job: Job[Any]) -> None:
        error = _error_of(event)
        self._write(job, "error", "fail", f"job failed: {_reason(error)}",
                    error=format_failure(error), fail_count=job.attrs.fail_count)

    def _complete(self, event: JobEvent, job: Job[Any]) -> None:
        attrs = job.attrs
        self._write(job, "info", "complete", "job complete",
                    duration=duration_ms(attrs.last_run_at, attrs.last_finished_at))

    def _retry(self, event: JobEvent, job: Job[Any]) -> None:
        delay = event.details.delay if event.details is not None else None
        attempt = job.attrs.fail_count
        self._write(job, "info", "retry", f"retry #{attempt} scheduled in {delay}ms",
                    retry_delay=delay, retry_attempt=attempt, error=_reason(_error_of(event)))

    def _retry_exhausted(self, event: JobEvent, job: Job[Any]) -> None:
        reason, count = _reason(_error_of(event)), job.attrs.fail_count
        self._write(job, "warn", "retry:exhausted",
                    f"retry exhausted after {count} failures: {reason}",
                    error=reason, fail_count=count)

    def _write(self, job: Job[Any], level: LogLevel, event: JobLogEvent, message: str,
               **fields: Any) -> None:
        assert self._writer is not None  # only called when self.logs(...)
        now = self._clock.now()
        self._writer.submit(JobLogEntry(
            timestamp=self._stamp(now), level=level, event=event, job_id=job.attrs.id,
            job_name=job.attrs.name, message=message, agenda_name=self._name, **fields,
        ), now)

    def _stamp(self, now: datetime) -> datetime:
        """``now``, or a microsecond after the previous entry's timestamp when that is not
        earlier: the entries of one millisecond keep the order they were written in a store
        that keeps microseconds (PostgreSQL, whose random ids cannot order them); stores that
        keep milliseconds drop the microseconds and order ties themselves."""
        last = self._last_stamp
        stamp = now if last is None or now > last else last + _ONE_MICROSECOND
        self._last_stamp = stamp
        return stamp


_EVENTS: dict[str, Callable[[JobLog, JobEvent, Job[Any]], None]] = {
    "start": JobLog._start,
    "success": JobLog._success,
    "fail": JobLog._fail,
    "complete": JobLog._complete,
    "retry": JobLog._retry,
    "retry exhausted": JobLog._retry_exhausted,
}


def _error_of(event: JobEvent) -> BaseException:
    return event.error if event.error is not None else AgendaError("Unknown error")


def _reason(error: BaseException) -> str:
    """An error's message as Node's ``error.message`` (the type when it has none), masked
    and bounded like a job's ``fail_reason``."""
    return truncate_reason(mask_text(str(error) or type(error).__name__)) or ""


class _Writer:
    """The queue to one logger: group commit, the bound, failure reports and retention."""

    def __init__(self, logger: JobLogger, on_error: Callable[[BaseException], None]) -> None:
        self._logger = logger
        self._on_error = on_error
        self._commit: GroupCommit[JobLogEntry, None] = GroupCommit(self._send)
        self._lost = 0
        self._last_report: float | None = None
        self._last_prune: datetime | None = None
        self._now: datetime | None = None
        self._pruning = BackgroundTasks(self._pruning_failed, what="job log retention")
        self._closed = False

    async def connect(self) -> None:
        self._closed = False
        try:
            await self._logger.connect()
        except Exception as error:
            self._report(error, what="cannot prepare its storage", force=True)

    def submit(self, entry: JobLogEntry, now: datetime) -> None:
        if self._closed:
            return
        self._now = now
        if len(self._commit) >= MAX_PENDING:
            self._lost += 1
            self._report(None, what="too many entries waiting")
            return
        self._commit.submit_nowait(entry)

    async def settle(self) -> None:
        await self._commit.flush()

    async def flush(self, timeout: float) -> None:
        self._closed = True
        try:
            await asyncio.wait_for(self._commit.flush(), timeout)
        except TimeoutError:
            self._lost += len(self._commit)
            await self._commit.close()
            self._report(None, what=f"not written within {timeout:g} s of stopping",
                         force=True)
        await self._pruning.close()

    async def _send(self, batch: list[JobLogEntry]) -> list[None]:
        try:
            await self._logger.log_many(batch)
        except Exception as error:
            self._lost += len(batch)
            self._report(error, what="the write failed")
        else:
            self._prune_if_due()
        return [None] * len(batch)

    def _prune_if_due(self) -> None:
        now = self._now
        if self._logger.retention is None or now is None or len(self._pruning):
            return
        last = self._last_prune
        if last is None or now - last >= timedelta(milliseconds=PRUNE_EVERY_MS):
            self._last_prune = now
            self._pruning.spawn(self._logger.prune(now))

    def _pruning_failed(self, error: BaseException) -> None:
        self._on_error(JobLogWriteError(f"job log retention failed: {_described(error)}"))

    def _report(self, error: BaseException | None, *, what: str, force: bool = False) -> None:
        """An ``error`` event for lost entries, at most once per :data:`REPORT_EVERY_S`."""
        clock = time.monotonic()
        if not force and self._last_report is not None and (
            clock - self._last_report < REPORT_EVERY_S
        ):
            return
        self._last_report = clock
        lost, self._lost = self._lost, 0
        cause = f": {_described(error)}" if error is not None else ""
        count = f"{lost} entries not written" if lost else "the job log is not working"
        report = JobLogWriteError(f"job log: {count} ({what}){cause}")
        report.__cause__ = error
        self._on_error(report)


def _described(error: BaseException) -> str:
    return mask_text(f"{type(error).__name__}: {error}")


# -- the Agenda's ``logging`` option -------------------------------------------------------------


class LoggingOptions(TypedDict, total=False):
    """``Agenda(logging={...})``, as Node's ``{logger?, default?}``."""

    #: The logger (default: the backend's built-in one).
    logger: JobLogger
    #: Whether jobs whose definition says nothing are logged (default ``True``; ``False``
    #: logs only the definitions with ``logging=True``).
    default: bool


#: ``True`` (the backend's logger), ``False``, a :class:`JobLogger`, :class:`LoggingOptions`,
#: or ``None`` (the backend's logger if the backend was built with ``logging=True``).
LoggingOption = bool | JobLogger | LoggingOptions | None


def choose_logger(option: LoggingOption, backend: AgendaBackend) -> tuple[JobLogger | None, bool]:
    """The logger an Agenda writes to and its default, from its ``logging`` option."""
    if option is None:
        return (backend.logger if backend.logging else None), True
    if isinstance(option, bool):
        return (_builtin(backend) if option else None), True
    if isinstance(option, JobLogger):
        return option, True
    if isinstance(option, Mapping):
        unknown = set(option) - {"logger", "default"}
        default = option.get("default", True)
        if unknown or not isinstance(default, bool):
            raise InvalidOptionError(
                f"invalid logging options {dict(option)!r}: 'logger' (a JobLogger) and "
                "'default' (a bool)"
            )
        logger = option.get("logger")
        if logger is not None and not isinstance(logger, JobLogger):
            raise InvalidOptionError(f"invalid logging logger {logger!r} (a JobLogger)")
        return logger or _builtin(backend), default
    raise InvalidOptionError(
        f"invalid logging: {option!r} (True, False, a JobLogger or {{'logger': ..., "
        "'default': ...}})"
    )


def _builtin(backend: AgendaBackend) -> JobLogger:
    if backend.logger is None:
        raise InvalidOptionError(
            f"the {backend.name} backend has no built-in job logger: pass one "
            "(logging=a JobLogger)"
        )
    return backend.logger
