"""How a stored job is shown to an operator, by ``agenda-decl jobs``, ``jobs show`` and the
dashboard: one dict of its fields, computed state, pause and last failure.

A job of one of this file's schedules shows as the file would: its data and the fields its
schedule's options set show values taken from the environment as their ``${VAR}`` reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from agenda_decl._job_log import JobLogEntry
from agenda_decl._model import JobParameters, JobState
from agenda_decl._secrets import shown
from agenda_decl.config.load import shown_data, shown_field
from agenda_decl.config.model import AgendaConfig
from agenda_decl.config.pause import pause_of
from agenda_decl.config.payload import MANAGED_BY_KEY, SCHEDULE_KEY_KEY

__all__ = ["MORE_FIELDS", "failure_json", "job_details", "job_json", "last_failure",
           "short_time"]

#: Fields of ``jobs show`` (and the dashboard's job page) beyond those of ``jobs --json``,
#: in this order.
MORE_FIELDS = ("locked_at", "progress", "start_date", "end_date", "skip_days",
               "debounce_started_at", "last_modified_by", "fork")


def job_json(job: JobParameters[Any], state: JobState, config: AgendaConfig) -> dict[str, Any]:
    """The job as ``jobs --json`` prints it."""
    data = job.data if isinstance(job.data, Mapping) else None
    field = _shown_field(job, config)
    paused = pause_of(job)
    return {
        "id": job.id,
        "name": job.name,
        "state": state,
        "disabled": job.disabled,
        "paused": paused.to_data() if paused is not None else None,
        "next_run_at": job.next_run_at,
        "last_run_at": job.last_run_at,
        "last_finished_at": job.last_finished_at,
        "failed_at": job.failed_at,
        "fail_count": job.fail_count or 0,
        "fail_reason": job.fail_reason,
        "last_run_failed": last_failure(job) is not None,
        "priority": field("priority", job.priority),
        "type": job.type,
        "repeat_interval": field("repeat_interval", job.repeat_interval),
        "repeat_timezone": field("repeat_timezone", job.repeat_timezone),
        "repeat_at": field("repeat_at", job.repeat_at),
        "managed_by": _managed_by(job, config),
        "schedule_key": data.get(SCHEDULE_KEY_KEY) if data else None,
        "data": _shown_job_data(job, config),
    }


def last_failure(job: JobParameters[Any]) -> str | None:
    """The reason of the job's last finished run, if it failed."""
    failed_at, finished = job.failed_at, job.last_finished_at
    if failed_at is None or (finished is not None and failed_at < finished):
        return None
    return job.fail_reason or "failed"


def _schedule_key(job: JobParameters[Any], config: AgendaConfig) -> str | None:
    """The key of the schedule of this file that ``job`` belongs to, if it is one of them."""
    data = job.data
    if not isinstance(data, Mapping) or data.get(MANAGED_BY_KEY) != config.owner:
        return None
    return str(data.get(SCHEDULE_KEY_KEY))


def _shown_job_data(job: JobParameters[Any], config: AgendaConfig) -> Any:
    """The data of a job of one of this file's schedules, as the file would print it."""
    key = _schedule_key(job, config)
    if key is None:
        return job.data
    # The owner marker is scheduler.name: printed as the file has it.
    return {**shown_data(config, job.name, key, job.data), MANAGED_BY_KEY: shown(config.owner)}


def _managed_by(job: JobParameters[Any], config: AgendaConfig) -> Any:
    if _schedule_key(job, config) is not None:
        return shown(config.owner)
    return job.data.get(MANAGED_BY_KEY) if isinstance(job.data, Mapping) else None


def _shown_field(job: JobParameters[Any], config: AgendaConfig) -> Callable[[str, Any], Any]:
    """The same for the fields its schedule's options set (``every``, ``timezone``, ...)."""
    key = _schedule_key(job, config)
    if key is None:
        return lambda _name, value: value
    return lambda name, value: shown_field(config, job.name, key, name, value)


def job_details(job: JobParameters[Any], state: JobState, config: AgendaConfig,
                entry: JobLogEntry | None) -> dict[str, Any]:
    """Everything ``jobs show`` prints of a job: :func:`job_json`, :data:`MORE_FIELDS` and
    ``last_failure`` (:func:`failure_json`, with the traceback of the log's ``entry``)."""
    return {**job_json(job, state, config),
            **{name: getattr(job, name) for name in MORE_FIELDS},
            "last_failure": failure_json(job, entry)}


def failure_json(job: JobParameters[Any], entry: JobLogEntry | None) -> dict[str, Any] | None:
    """The job's last failure: the fields stored on the job, and from the job log's error
    entry (``entry``) its traceback; None when the job never failed."""
    if job.failed_at is None and not job.fail_count:
        return None
    return {
        "failed_at": job.failed_at,
        "fail_count": job.fail_count or 0,
        "reason": job.fail_reason,
        "last_run_failed": last_failure(job) is not None,
        "traceback": entry.error if entry is not None else None,
        "logged_at": entry.timestamp if entry is not None else None,
    }


def short_time(value: datetime | None) -> str:
    """An instant as the tables show it: ``2026-12-06 10:00:00`` (UTC), or ``-``."""
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
