"""The in-memory job log (one process, nothing persisted): what tests log to, and a logger
for an Agenda whose store has none of its own (``Agenda(logging=InMemoryJobLogger())``)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs

from agenda_decl._job_log import (
    JobLogEntry,
    JobLogQuery,
    JobLogQueryResult,
    JobLogRetention,
    matches,
    page,
)
from agenda_decl.interfaces import JobLogger

__all__ = ["InMemoryJobLogger"]


class InMemoryJobLogger(JobLogger):
    """Entries in a list, in the order they were written; ids are ``1``, ``2``, ..."""

    def __init__(self, *, retention: JobLogRetention | None = None) -> None:
        self.retention = retention
        self._entries: list[JobLogEntry] = []
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"InMemoryJobLogger({len(self._entries)} entries)"

    @property
    def entries(self) -> list[JobLogEntry]:
        """Every entry, in the order written (a copy)."""
        return list(self._entries)

    async def log(self, entry: JobLogEntry) -> None:
        self._entries.append(attrs.evolve(entry, id=str(next(self._ids))))

    async def log_many(self, entries: Sequence[JobLogEntry]) -> None:
        for entry in entries:
            await self.log(entry)

    async def get_logs(self, query: JobLogQuery | None = None) -> JobLogQueryResult:
        return page(self._entries, query)

    async def clear_logs(self, query: JobLogQuery | None = None) -> int:
        kept = [entry for entry in self._entries if not matches(entry, query)]
        deleted = len(self._entries) - len(kept)
        self._entries = kept
        return deleted
