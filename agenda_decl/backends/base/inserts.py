"""What every store does for ``insert_jobs``: check every job before anything is written,
naming the index of a bad one, and cut the jobs into batches of one statement or script."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agenda_decl._job_data import not_a_plain_insert
from agenda_decl._model import JobParameters
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
