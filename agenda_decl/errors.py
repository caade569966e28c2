"""Exceptions raised by agenda-decl. Each message names the offending value.

Also the errors of a rejected state write (the job is gone, or its lock is another run's
now), which the scheduler and every store raise with the same messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from agenda_decl._clock import truncate_ms

if TYPE_CHECKING:
    from agenda_decl._model import JobParameters


class AgendaError(Exception):
    """Base of every error agenda-decl raises on purpose."""


class InvalidIntervalError(AgendaError, ValueError):
    """A duration, interval or cron expression that cannot be read."""


class InvalidDateError(AgendaError, ValueError):
    """A date or time that cannot be read, or a naive datetime."""


class InvalidTimezoneError(AgendaError, ValueError):
    """A time zone name the IANA database does not know."""


class InvalidOptionError(AgendaError, ValueError):
    """An option with a value outside what it allows (a negative concurrency, ...)."""


class BatchItemError(AgendaError, ValueError):
    """An item of a bulk enqueue (``now_many``, ``save_many``) that cannot be stored: nothing
    of the batch was stored. ``index`` is the item's position in what was given; the item's
    own error (which names the field and the value) is the ``__cause__`` and is repeated in
    the message."""

    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.cause = error
        reason = str(error) or type(error).__name__
        super().__init__(f"item [{index}] of the batch: {reason} (nothing of the batch was "
                         "stored)")


class UnknownJobError(AgendaError, KeyError):
    """A job name that has no definition where one is required."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class JobNotFoundError(AgendaError, LookupError):
    """A state write to a job that no longer exists in the store."""


class NotConnectedError(AgendaError, ConnectionError):
    """Publishing on a notification channel that is not connected."""


class BackendUnavailableError(AgendaError, ConnectionError):
    """The store cannot be reached (the message never contains a password)."""


class AgendaNotRunningError(AgendaError, RuntimeError):
    """An operation that needs ``start()`` first."""


class JobCanceledError(AgendaError, RuntimeError):
    """``touch()`` on a run that the processor abandoned (its lock expired)."""


class _AboutAJob(AgendaError):
    """An error about one job: ``job_id`` and ``job_name`` say which (for ``error``
    listeners, which receive the error alone)."""

    def __init__(self, message: str, *, job_id: str | None = None,
                 job_name: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.job_name = job_name


class AbandonedRunError(_AboutAJob, RuntimeError):
    """The previous run of a job started and never finished: its worker stopped (a crash, a
    kill) or the run outlived its lock without ``touch()``. The worker that claims the job
    again reports it as an ``error`` event and stores it as a failed attempt while its own
    run goes on (so a job that keeps killing its worker stops at its retry limit); once that
    run ends, the attempt is withdrawn (a slow run is not a crash)."""


class LockLostError(JobCanceledError, _AboutAJob):
    """A worker-owned state write (start, ``touch()``, end) whose lock is no longer the one the
    run holds: the lock expired and another worker claimed the job (fencing). Nothing of the
    write was stored. ``touch()`` raises it so the handler can stop; the scheduler reports a
    rejected end write as an ``error`` event instead."""


class StateWriteError(_AboutAJob, RuntimeError):
    """A run's start or end state was not stored (the store failed, the job was removed
    while it ran, or ``stop()`` closed the store before the run ended), reported as an
    ``error`` event; ``__cause__`` is the reason. A run whose end was not stored is not
    reported as ``success``; the job keeps its lock until ``lock_lifetime`` runs out, then a
    worker runs it again."""


# -- rejected state writes -----------------------------------------------------------------------


class _StoredJobs(Protocol):
    """What :func:`rejected_state_write` reads of a store (a ``JobRepository`` has it)."""

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None: ...


def job_not_found(job: JobParameters[Any]) -> JobNotFoundError:
    """The error of a state write whose job is gone (removed while it was claimed or ran)."""
    return JobNotFoundError(
        f"job ID {job.id} (name: {job.name}) cannot be updated in the database, "
        "maybe it does not exist anymore?"
    )


def lock_lost(job: JobParameters[Any], lock_token: datetime | None) -> LockLostError:
    """The error of a fenced state write whose lock is no longer the writer's."""
    token = "none" if lock_token is None else truncate_ms(lock_token).isoformat()
    return LockLostError(
        f"job {job.name} (ID {job.id}) was taken over by another worker: its lock is no longer "
        f"the one this run holds ({token}); this write was rejected and nothing of it stored",
        job_id=None if job.id is None else str(job.id), job_name=job.name,
    )


async def rejected_state_write(
    repository: _StoredJobs, job: JobParameters[Any], lock_token: datetime | None
) -> AgendaError:
    """Why a state write was not applied: the job is gone (``JobNotFoundError``) or, for a
    fenced write, its lock belongs to someone else now (``LockLostError``). Read only on this
    rare path; the write itself decided atomically."""
    if lock_token is None or job.id is None:
        return job_not_found(job)
    stored = await repository.get_job_by_id(str(job.id))
    if stored is None or stored.name != job.name:
        return job_not_found(job)
    return lock_lost(job, lock_token)
