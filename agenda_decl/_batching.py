"""Group commit for job state writes: the writes requested while one batch is being stored
go out together in the next, so many jobs finishing at once cost one round trip."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import attrs

from agenda_decl._model import JobParameters
from agenda_decl.backends.base import job_not_found, rejected_state_write
from agenda_decl.interfaces import JobRepository

#: Bound on one batch, so one statement stays a reasonable size.
MAX_BATCH = 500


@attrs.define
class _Pending:
    job: JobParameters[Any]
    futures: list[asyncio.Future[None]]
    #: The lock the writer holds (fencing), ``None`` for an unfenced write.
    lock_token: datetime | None = None


class StateWriter:
    def __init__(self, repository: JobRepository, last_modified_by: str | None) -> None:
        self._repository = repository
        self._last_modified_by = last_modified_by
        self._pending: dict[str, _Pending] = {}
        self._writer: asyncio.Task[None] | None = None

    def submit(
        self, job: JobParameters[Any], *, lock_token: datetime | None = None
    ) -> asyncio.Future[None]:
        """Queue the job's state fields now; the future fails like ``save_job_state``
        (``LockLostError`` when fenced out by ``lock_token``).

        The state is copied at once (the caller may change the job before the batch goes
        out). A newer write of a job still waiting replaces the older one: one batch never
        holds a job twice, and the last state wins, with the newer write's lock token (a
        run's writes are ordered, so it is the token the run holds when it writes).
        """
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiting = self._pending.pop(job.id, None)
        futures = [*(waiting.futures if waiting else []), future]
        self._pending[job.id] = _Pending(job=attrs.evolve(job), futures=futures,
                                         lock_token=lock_token)
        if self._writer is None:
            self._writer = loop.create_task(self._drain())
        return future

    async def save(self, job: JobParameters[Any], *, lock_token: datetime | None = None) -> None:
        await self.submit(job, lock_token=lock_token)

    async def flush(self) -> None:
        """Wait until every write submitted so far is stored (or failed)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        try:
            while self._pending:
                ids = list(self._pending)[:MAX_BATCH]
                await self._write([self._pending.pop(job_id) for job_id in ids])
        finally:
            self._writer = None

    async def _write(self, batch: list[_Pending]) -> None:
        tokens = {str(item.job.id): item.lock_token for item in batch
                  if item.lock_token is not None}
        try:
            rejected = set(
                await self._repository.save_job_states(
                    [item.job for item in batch], last_modified_by=self._last_modified_by,
                    lock_tokens=tokens or None,
                )
            )
        except Exception as error:
            for item in batch:
                _settle(item.futures, error)
            return
        for item in batch:
            failure: BaseException | None = None
            if item.job.id in rejected:
                failure = (job_not_found(item.job) if item.lock_token is None
                           else await self._why_rejected(item))
            _settle(item.futures, failure)

    async def _why_rejected(self, item: _Pending) -> BaseException:
        try:
            return await rejected_state_write(self._repository, item.job, item.lock_token)
        except Exception as error:  # the store failed while we asked: report that
            return error


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
