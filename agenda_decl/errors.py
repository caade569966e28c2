"""Exceptions raised by agenda-decl. Each message names the offending value."""

from __future__ import annotations


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


class AbandonedRunError(AgendaError, RuntimeError):
    """The previous run of a job started and never finished: its worker stopped (a crash, a
    kill) or the run outlived its lock without ``touch()``. Counted as a failed attempt when
    the job is claimed again."""


class LockLostError(JobCanceledError):
    """A worker-owned state write (start, ``touch()``, end) whose lock is no longer the one the
    run holds: the lock expired and another worker claimed the job (fencing). Nothing of the
    write was stored. ``touch()`` raises it so the handler can stop; the scheduler reports a
    rejected start or end write as an ``error`` event instead."""

    def __init__(self, message: str, *, job_id: str | None = None,
                 job_name: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.job_name = job_name
