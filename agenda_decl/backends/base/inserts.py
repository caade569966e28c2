"""What every store does for ``insert_jobs``: check every job before anything is written,
naming the index of a bad one, batch them, and tell what an insert stored."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agenda_decl._clock import truncate_ms
from agenda_decl._job_data import encode_data, not_a_plain_insert
from agenda_decl._model import JobId, JobParameters
from agenda_decl.backends.base.checks import check_job
from agenda_decl.errors import AgendaError, BatchItemError, InvalidOptionError

#: Jobs per statement or script of ``insert_jobs``: large enough that a round trip is a
#: small share of the cost, small enough that one script does not hold Redis for long.
INSERT_BATCH = 1000


def random_ids(count: int) -> list[str]:
    """``count`` random UUIDs (version 4, RFC 4122 variant) as text, from one read of the
    OS's random source: ``str(uuid.uuid4())`` per job cost a bulk insert about 4 us a job,
    a sixth of its client time."""
    digits = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = digits[start:start + 32]
        # the version nibble is 4; the variant's two top bits are 10 (8, 9, a or b)
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-"
                   f"{h[20:]}")
    return ids


def check_inserts(jobs: Sequence[JobParameters[Any]]) -> list[str]:
    """The data of every job as JSON text, in order, once each job has passed the checks of
    a save and is a plain insert; the first job that does not raises ``BatchItemError``
    naming its index (and its own error: the field and the value)."""
    encoded = []
    # The fields check_job looks at besides the data are nearly always those of the job
    # before (a now_many batch shares them): checked once per run of equal ones.
    checked: tuple[str, str, Any] | None = None
    for index, job in enumerate(jobs):
        try:
            problem = not_a_plain_insert(job)
            if problem is not None:
                raise InvalidOptionError(problem)
            if (checked is not None and job.priority is checked[2] and job.name == checked[0]
                    and job.type == checked[1]):
                encoded.append(encode_data(job.data, name=job.name))
            else:
                encoded.append(check_job(job))
                checked = (job.name, job.type, job.priority)
        except (AgendaError, ValueError, TypeError) as error:
            raise BatchItemError(index, error) from error
    return encoded


def inserted(job: JobParameters[Any], job_id: str, data: str, by: str | None) -> JobParameters[Any]:
    """What a plain insert of ``job`` stored, without reading it back: its non-processor
    fields as given (instants at the millisecond, as every store reads them back), its data
    as the JSON text ``data`` it was stored as, no processor state (a store that keeps some
    field in another form adjusts it)."""
    return inserted_all([job], [job_id], [data], by)[0]


def inserted_all(
    jobs: Sequence[JobParameters[Any]], ids: Sequence[str], encoded: Sequence[str],
    by: str | None,
) -> list[JobParameters[Any]]:
    """:func:`inserted` of every job of a batch, in order: the data texts decoded in one
    ``json.loads`` (a call per job costs more than the decoding), and each distinct
    ``next_run_at`` converted once (the jobs of a ``now_many`` batch share one)."""
    values = json.loads("[" + ",".join(encoded) + "]")
    stored = []
    last_in: datetime | None = None
    last_out: datetime | None = None
    for job, job_id, data in zip(jobs, ids, values, strict=True):
        next_run_at = job.next_run_at
        if next_run_at is not last_in:
            last_in, last_out = next_run_at, _ms(next_run_at)
        # Built field by field (attrs.evolve costs several times more); a field added to
        # JobParameters must be added here too (test_insert_jobs_returns_what_a_read_gives_back).
        stored.append(JobParameters(
            id=JobId(job_id), name=job.name, priority=job.priority, type=job.type,
            next_run_at=last_out, repeat_timezone=job.repeat_timezone,
            repeat_interval=job.repeat_interval, data=data, repeat_at=job.repeat_at,
            disabled=job.disabled, debounce_started_at=_ms(job.debounce_started_at),
            last_modified_by=by, fork=job.fork, start_date=_ms(job.start_date),
            end_date=_ms(job.end_date),
            skip_days=None if job.skip_days is None else list(job.skip_days),
        ))
    return stored


def _ms(value: datetime | None) -> datetime | None:
    return None if value is None else truncate_ms(value.astimezone(UTC))
