"""What every store does for ``insert_jobs``: check every job before anything is written,
naming the index of a bad one, batch them, and tell what an insert stored."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

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


def inserted(
    job: JobParameters[Any], job_id: str, data: str, last_modified_by: str | None
) -> JobParameters[Any]:
    """What a plain insert of ``job`` stored, without reading it back: its non-processor
    fields as given (instants at the millisecond, as every store reads them back), its data
    as the JSON text ``data`` it was stored as, no processor state (a store that keeps some
    field in another form adjusts it)."""
    return attrs.evolve(
        job, id=JobId(job_id), data=json.loads(data), last_modified_by=last_modified_by,
        unique=None, unique_opts=None, locked_at=None, last_run_at=None, last_finished_at=None,
        failed_at=None, fail_count=None, fail_reason=None, progress=None,
        skip_days=None if job.skip_days is None else list(job.skip_days),
        next_run_at=_ms(job.next_run_at), debounce_started_at=_ms(job.debounce_started_at),
        start_date=_ms(job.start_date), end_date=_ms(job.end_date),
    )


def _ms(value: datetime | None) -> datetime | None:
    return None if value is None else truncate_ms(value.astimezone(UTC))
