"""What an operator does to stored jobs, for the ``agenda-decl jobs`` commands (and a
dashboard): find them (:mod:`.targets`), retry, run now, delete and purge (:mod:`.actions`),
pause and resume (:mod:`.pausing`), their history (:mod:`.history`) and how a job shows
(:mod:`.view`)."""

from __future__ import annotations

from agenda_decl.operations.actions import RunNow, purge_completed, remove, retry, run_now
from agenda_decl.operations.history import job_history, last_error_entry
from agenda_decl.operations.pausing import (
    PauseResult,
    declared_disabled,
    default_operator,
    pause,
    pause_mark,
    resume,
)
from agenda_decl.operations.targets import (
    OperationRefusedError,
    found_by_ids,
    jobs_of_name,
    plain,
    repeats,
    schedule_job,
    schedule_of,
    state_of,
)
from agenda_decl.operations.view import (
    failure_json,
    job_details,
    job_json,
    last_failure,
    short_time,
)

__all__ = [
    "OperationRefusedError",
    "PauseResult",
    "RunNow",
    "declared_disabled",
    "default_operator",
    "failure_json",
    "found_by_ids",
    "job_details",
    "job_history",
    "job_json",
    "jobs_of_name",
    "last_error_entry",
    "last_failure",
    "pause",
    "pause_mark",
    "plain",
    "purge_completed",
    "remove",
    "repeats",
    "resume",
    "retry",
    "run_now",
    "schedule_job",
    "schedule_of",
    "short_time",
    "state_of",
]
