"""agenda-decl: a typed job queue and scheduler (a Python counterpart of Agenda v6)."""

from agenda_decl import backoff
from agenda_decl._clock import Clock, SystemClock
from agenda_decl._job_log import JobLogEntry, JobLogQuery, JobLogQueryResult, JobLogRetention
from agenda_decl._model import (
    DebounceOptions,
    DrainResult,
    JobId,
    JobNotification,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    JobState,
    JobStateNotification,
    JobWithState,
    NotificationChannelState,
    RemoveJobsOptions,
    UniqueOptions,
    compute_job_state,
    to_job_id,
)
from agenda_decl._sync import run_sync
from agenda_decl.agenda import Agenda, RunningStats
from agenda_decl.config import LoadedConfig, load
from agenda_decl.errors import (
    AbandonedRunError,
    AgendaError,
    BackendUnavailableError,
    BatchItemError,
    InvalidDateError,
    InvalidIntervalError,
    InvalidOptionError,
    InvalidTimezoneError,
    JobCanceledError,
    JobNotFoundError,
    LockLostError,
    NotConnectedError,
    StateWriteError,
    UnknownJobError,
)
from agenda_decl.handles import ConfigAgenda, JobHandle
from agenda_decl.interfaces import AgendaBackend, JobLogger, JobRepository, NotificationChannel
from agenda_decl.job import Job, JobDefinition
from agenda_decl.notifications import BaseNotificationChannel, InMemoryNotificationChannel
from agenda_decl.runtime.events import ClaimReport, PollReport, RemoteJob, RetryDetails

__version__ = "0.1.0"

__all__ = [
    "AbandonedRunError",
    "Agenda",
    "AgendaBackend",
    "AgendaError",
    "BackendUnavailableError",
    "BaseNotificationChannel",
    "BatchItemError",
    "ClaimReport",
    "Clock",
    "ConfigAgenda",
    "DebounceOptions",
    "DrainResult",
    "InMemoryNotificationChannel",
    "InvalidDateError",
    "InvalidIntervalError",
    "InvalidOptionError",
    "InvalidTimezoneError",
    "Job",
    "JobCanceledError",
    "JobDefinition",
    "JobHandle",
    "JobId",
    "JobLogEntry",
    "JobLogQuery",
    "JobLogQueryResult",
    "JobLogRetention",
    "JobLogger",
    "JobNotFoundError",
    "JobNotification",
    "JobParameters",
    "JobRepository",
    "JobState",
    "JobStateNotification",
    "JobWithState",
    "JobsOverview",
    "JobsQueryOptions",
    "JobsResult",
    "LoadedConfig",
    "LockLostError",
    "NotConnectedError",
    "NotificationChannel",
    "NotificationChannelState",
    "PollReport",
    "RemoteJob",
    "RemoveJobsOptions",
    "RetryDetails",
    "RunningStats",
    "StateWriteError",
    "SystemClock",
    "UniqueOptions",
    "UnknownJobError",
    "backoff",
    "compute_job_state",
    "load",
    "run_sync",
    "to_job_id",
]
