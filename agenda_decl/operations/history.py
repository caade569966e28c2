"""A job's history from the job log: the one place ``agenda-decl jobs show`` asks it for.

The job log (Agenda 6.2's ``JobLogger``: ``Agenda(logging=...)``, ``agenda.get_logs(...)``)
is being built on its own branch; its error entry of a failure carries the traceback. Until it
is here, :func:`last_error_entry` finds nothing and ``jobs show`` prints the failure fields
stored on the job (``fail_count``, ``failed_at``, ``fail_reason``) with no traceback.
"""

from __future__ import annotations

from typing import Any

from agenda_decl.agenda import Agenda

__all__ = ["last_error_entry"]


async def last_error_entry(agenda: Agenda, job_id: str) -> Any | None:
    """The job log's last error entry of the job (its ``error`` is the traceback), or None.

    Once the job log is merged this is, as DESIGN.md names it::

        result = await agenda.get_logs(JobLogQuery(job_id=job_id, level="error", limit=1))
        return result.entries[0] if result.entries else None

    (None too when the agenda keeps no log.) ``jobs show`` reads the entry's ``timestamp``,
    ``message`` and ``error``.
    """
    del agenda, job_id
    return None
