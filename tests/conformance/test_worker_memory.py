"""A long-lived worker does not grow with the jobs it has run: once a batch is drained, none of
its jobs is still held in memory, and the runtime's per-job bookkeeping is empty again
(issue 14: the worker's RSS after 1,000,000 jobs stays within 1.2x of its RSS after 100,000;
bench/workers.py measures that, this checks the cause on a small scale)."""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

import pytest

from agenda_decl import InMemoryNotificationChannel, Job
from agenda_decl._model import JobParameters
from agenda_decl.testing import InMemoryJobRepository
from tests.conformance.conftest import MakeAgenda
from tests.conformance.scheduling import wait_until

pytestmark = pytest.mark.asyncio


def _live(kind: type, *, besides: Iterable[object] = ()) -> int:
    gc.collect()
    known = {id(thing) for thing in besides}
    return sum(1 for thing in gc.get_objects()
               if isinstance(thing, kind) and id(thing) not in known)


async def test_drained_jobs_are_not_kept(make_agenda: MakeAgenda) -> None:
    # A channel on (the store's own, else an in-process one): its dedup and subscriptions are
    # on the path of every job too.
    agenda = make_agenda(max_concurrency=20)
    if agenda.backend.notification_channel is None and agenda.channel is None:
        agenda = make_agenda(max_concurrency=20, notification_channel=InMemoryNotificationChannel())
    ran = [0]

    async def noop(job: Job[Any]) -> None:
        ran[0] += 1

    agenda.define("noop", noop, concurrency=20)
    await agenda.start()
    processor = agenda._processor
    assert processor is not None

    async def run_batch(count: int) -> None:
        target = ran[0] + count
        for start in range(0, count, 100):
            await agenda.now_many("noop", [{"i": i} for i in range(start, min(count, start + 100))])
        # Drained, the worker still running: every run ended and its end state is stored.
        # A run's task leaves the set in a done-callback, a loop turn after it ended: waited
        # for too (a task that never leaves fails the wait).
        async def drained() -> bool:
            return ran[0] >= target and not processor.locked and not processor._runs

        await wait_until(drained, timeout=60)
        await agenda._state_writer.flush()

    await run_batch(100)
    await run_batch(600)
    assert ran[0] == 700
    # No job object outlives its run, whatever ran before (a cache or a subscription holding
    # them would keep a few per job, and grow with every job a worker runs).
    assert _live(Job) == 0
    # The in-memory store keeps its jobs as JobParameters: those are the store, not the worker.
    repository = agenda.repository
    stored = repository._jobs.values() if isinstance(repository, InMemoryJobRepository) else ()
    assert _live(JobParameters, besides=stored) == 0
    assert (processor.locked, processor.running) == ({}, {})
    assert all(len(queue) == 0 for queue in processor._queues.values())
    assert len(processor._runs) == len(processor._releases) == 0
    assert len(agenda._state_writer._writes) == 0
