"""What every store does for ``insert_jobs``: check every job before anything is written,
naming the index of a bad one, batch them, and tell what an insert stored."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agenda_decl._clock import truncate_ms
from agenda_decl._job_data import not_a_plain_insert
from agenda_decl._model import JobId, JobParameters
from agenda_decl.backends.base.checks import check_job
from agenda_decl.errors import AgendaError, BatchItemError, InvalidOptionError

#: Jobs per statement or script of ``insert_jobs``: large enough that a round trip is a
#: small share of the cost, small enough that one script does not hold Redis for long.
INSERT_BATCH = 1000


def check_inserts(jobs: Sequence[JobParameters[Any]]) -> list[str]:
    """The data of every job as JSON text, in order, once each job has passed the checks of
    a save and is a plain insert; the first job that does not raises ``BatchItemError``
    naming its index (and its own error: the field and the value)."""
    encoded = []
    for index, job in enumerate(jobs):
        try:
            problem = not_a_plain_insert(job)
            if problem is not None:
                raise InvalidOptionError(problem)
            encoded.append(check_job(job))
        except (AgendaError, ValueError, TypeError) as error:
            raise BatchItemError(index, error) from error
    return encoded


def inserted(job: JobParameters[Any], job_id: str, data: str, by: str | None) -> JobParameters[Any]:
    """What a plain insert of ``job`` stored, without reading it back: its non-processor
    fields as given (instants at the millisecond, as every store reads them back), its data
    as the JSON text ``data`` it was stored as, no processor state (a store that keeps some
    field in another form adjusts it)."""
    # Built field by field (attrs.evolve costs several times more); a field added to
    # JobParameters must be added here too (test_insert_jobs_returns_what_a_read_gives_back).
    return JobParameters(
        id=JobId(job_id), name=job.name, priority=job.priority, type=job.type,
        next_run_at=_ms(job.next_run_at), repeat_timezone=job.repeat_timezone,
        repeat_interval=job.repeat_interval, data=json.loads(data), repeat_at=job.repeat_at,
        disabled=job.disabled, debounce_started_at=_ms(job.debounce_started_at),
        last_modified_by=by, fork=job.fork, start_date=_ms(job.start_date),
        end_date=_ms(job.end_date),
        skip_days=None if job.skip_days is None else list(job.skip_days),
    )


def _ms(value: datetime | None) -> datetime | None:
    return None if value is None else truncate_ms(value.astimezone(UTC))
