"""Stores that work in batches (a claim of several jobs, the state writes of several jobs in
one round trip) get the single-job methods from here, and the fencing rule of a state write."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agenda_decl._clock import truncate_ms
from agenda_decl._model import JobId, JobParameters
from agenda_decl.errors import rejected_state_write
from agenda_decl.interfaces import JobRepository


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def holds_lock(stored_locked_at: datetime | None, lock_token: datetime | None) -> bool:
    """Whether a fenced write may go ahead: no token (unfenced), or the stored lock is the
    token at millisecond precision."""
    if lock_token is None:
        return True
    return stored_locked_at is not None and truncate_ms(stored_locked_at) == truncate_ms(
        lock_token
    )


class ClaimsInBatches(JobRepository):
    """A store whose claim takes several jobs in one round trip: claiming one job is a batch
    of one."""

    async def get_next_job_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> JobParameters[Any] | None:
        claimed = await self.get_next_jobs_to_run(
            job_name, next_scan_at, lock_deadline, 1, now, last_modified_by=last_modified_by
        )
        return claimed[0] if claimed else None

    @abc.abstractmethod
    async def get_next_jobs_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        limit: int,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> list[JobParameters[Any]]:
        """See :meth:`JobRepository.get_next_jobs_to_run`."""


class WritesStatesInBatches(JobRepository):
    """A store whose state write takes several jobs at once: writing one job's state is a
    batch of one."""

    async def save_job_state(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        lock_token: datetime | None = None,
    ) -> None:
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        tokens = None if lock_token is None else {str(job.id): lock_token}
        if await self.save_job_states([job], last_modified_by=last_modified_by,
                                      lock_tokens=tokens):
            raise await rejected_state_write(self, job, lock_token)

    @abc.abstractmethod
    async def save_job_states(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        lock_tokens: Mapping[str, datetime] | None = None,
    ) -> list[JobId]:
        """See :meth:`JobRepository.save_job_states`."""
