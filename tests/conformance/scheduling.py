"""What the scheduler's conformance tests share: a ledger of runs, a stored job, a wait."""

from __future__ import annotations

import asyncio
from typing import Any

from agenda_decl import Agenda, Job, JobsQueryOptions


class Ledger:
    """Records each run of a handler: job name, data, and the order of runs."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    async def handler(self, job: Job[Any]) -> None:
        self.runs.append((job.attrs.name, job.attrs.data))
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while len(self.runs) < count:
                self.changed.clear()
                await self.changed.wait()


async def stored(agenda: Agenda, job: Job[Any]) -> Any:
    assert job.attrs.id
    result = await agenda.query_jobs(JobsQueryOptions(id=job.attrs.id))
    return result.jobs[0] if result.jobs else None


async def wait_until(predicate: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)
