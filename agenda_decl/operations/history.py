"""A job's history from the job log (Agenda 6.2's ``JobLogger``): the one place ``agenda-decl
jobs show`` and the dashboard ask it for. The log's error entry of a failure carries the
traceback."""

from __future__ import annotations

from agenda_decl._job_log import JobLogEntry, JobLogQuery, LogLevel
from agenda_decl.agenda import Agenda

__all__ = ["job_history", "last_error_entry"]


async def last_error_entry(agenda: Agenda, job_id: str) -> JobLogEntry | None:
    """The job log's newest error entry of the job (its ``error`` is the traceback), or None
    when the storage keeps no log or has none for it.

    It reads the storage's logger directly, not through ``agenda.get_logs`` (which answers
    nothing when this Agenda does not write the log): the entries may come from a worker with
    another file, or from a Node process.
    """
    entries = await job_history(agenda, job_id, level="error", limit=1)
    return entries[0] if entries else None


async def job_history(agenda: Agenda, job_id: str, *, level: LogLevel | None = None,
                      limit: int = 50) -> list[JobLogEntry]:
    """The job's newest log entries (newest first), at most ``limit``."""
    logger = agenda.backend.logger
    if logger is None:
        return []
    result = await logger.get_logs(JobLogQuery(job_id=job_id, level=level, limit=limit))
    return list(result.entries)
