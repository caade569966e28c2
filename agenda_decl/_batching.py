"""Group commit for job state writes: the writes requested while one batch is being stored
go out together in the next, so many jobs finishing at once cost one round trip."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from agenda_decl._model import JobParameters
from agenda_decl.errors import JobNotFoundError
from agenda_decl.interfaces import JobRepository

#: Bound on one batch, so one statement stays a reasonable size.
MAX_BATCH = 500

Pending = tuple[JobParameters[Any], "asyncio.Future[None]"]


class StateWriter:
    def __init__(self, repository: JobRepository, last_modified_by: str | None) -> None:
        self._repository = repository
        self._last_modified_by = last_modified_by
        self._pending: list[Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def save(self, job: JobParameters[Any]) -> None:
        """Store the job's state fields; raises ``JobNotFoundError`` like ``save_job_state``."""
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A snapshot: the caller may change the job again before the batch is written.
        self._pending.append((attrs.evolve(job), future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._write(batch)
        finally:
            self._writer = None

    async def _write(self, batch: list[Pending]) -> None:
        try:
            missing = set(
                await self._repository.save_job_states(
                    [job for job, _ in batch], last_modified_by=self._last_modified_by
                )
            )
        except Exception as error:
            for _, future in batch:
                _settle(future, error)
            return
        for job, future in batch:
            _settle(future, _not_found(job) if job.id in missing else None)


def _not_found(job: JobParameters[Any]) -> JobNotFoundError:
    return JobNotFoundError(
        f"job ID {job.id} (name: {job.name}) cannot be updated in the database, "
        "maybe it does not exist anymore?"
    )


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
