"""Group commit for job state writes: the writes requested while one batch is being stored
go out together in the next, so many jobs finishing at once cost one round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

import attrs

from agenda_decl._group_commit import GroupCommit
from agenda_decl._model import JobParameters
from agenda_decl.errors import rejected_state_write
from agenda_decl.interfaces import JobRepository


class _StateWrite(NamedTuple):
    """A tuple, not an attrs class: two or three are made per job run."""

    job: JobParameters[Any]
    #: The lock the writer holds (fencing), ``None`` for an unfenced write.
    lock_token: datetime | None = None


class StateWriter:
    """Job state writes through one group commit: many jobs finishing at once cost one round
    trip."""

    def __init__(self, repository: JobRepository, last_modified_by: str | None) -> None:
        self._repository = repository
        self._last_modified_by = last_modified_by
        self._writes: GroupCommit[_StateWrite, None] = GroupCommit(
            self._write, key=lambda write: write.job.id, merge=_keep_stored_token
        )

    def submit(
        self, job: JobParameters[Any], *, lock_token: datetime | None = None
    ) -> asyncio.Future[None]:
        """Queue the job's state fields now; the future fails like ``save_job_state``
        (``LockLostError`` when fenced out by ``lock_token``).

        The state is copied at once (the caller may change the job before the batch goes
        out). A newer write of a job still waiting replaces the older one: one batch never
        holds a job twice, and the last state wins, fenced by the older write's lock token:
        the older write never went out, so the store still holds its lock (a run's start
        write moves the lock to the start, and a write queued behind it carries the new one).
        """
        if job.id is None:
            raise ValueError("Cannot save job state without job ID")
        return self._writes.submit_nowait(_StateWrite(_snapshot(job), lock_token))

    async def save(self, job: JobParameters[Any], *, lock_token: datetime | None = None) -> None:
        await self.submit(job, lock_token=lock_token)

    async def flush(self) -> None:
        """Wait until every write submitted so far is stored (or failed)."""
        await self._writes.flush()

    async def _write(self, batch: list[_StateWrite]) -> list[Exception | None]:
        tokens = {str(write.job.id): write.lock_token for write in batch
                  if write.lock_token is not None}
        rejected = set(
            await self._repository.save_job_states(
                [write.job for write in batch], last_modified_by=self._last_modified_by,
                lock_tokens=tokens or None,
            )
        )
        return [
            await self._why_rejected(write) if write.job.id in rejected else None
            for write in batch
        ]

    async def _why_rejected(self, write: _StateWrite) -> Exception:
        try:
            return await rejected_state_write(self._repository, write.job, write.lock_token)
        except Exception as error:  # the store failed while we asked: report that
            return error


def _snapshotter() -> Callable[[JobParameters[Any]], JobParameters[Any]]:
    """A shallow copy of a job's parameters, what ``attrs.evolve(job)`` makes, for a tenth
    of its cost: a worker copies every job twice (start and end write), and ``evolve``
    passes each of the 25 fields through keyword handling and ``__init__`` (3.5 us a copy,
    8% of a SQLite worker's event loop). Generated the way attrs generates its own methods;
    every field is copied, so a field added to ``JobParameters`` is copied too."""
    names = [field.name for field in attrs.fields(JobParameters)]
    lines = ["def snapshot(job):",
             "    if type(job) is not cls:",  # a subclass (JobWithState): its own fields too
             "        return evolve(job)",
             "    copy = new(cls)"]
    lines += [f"    copy.{name} = job.{name}" for name in names]
    lines.append("    return copy")
    namespace: dict[str, Any] = {"new": object.__new__, "cls": JobParameters,
                                 "evolve": attrs.evolve}
    exec(compile("\n".join(lines), "<job parameters snapshot>", "exec"), namespace)
    snapshot: Callable[[JobParameters[Any]], JobParameters[Any]] = namespace["snapshot"]
    return snapshot


_snapshot = _snapshotter()


def _keep_stored_token(older: _StateWrite, newer: _StateWrite) -> _StateWrite:
    """The newer state, fenced by the lock the store still holds: the older write's."""
    if older.lock_token is None:
        return newer
    return _StateWrite(newer.job, older.lock_token)
