"""Worker processes on one store (issue 14, item 4).

- workers: ``workers_jobs`` due jobs (bulk enqueue), then 1, 2, 4, 8 worker processes
  (concurrency C each) started together; throughput from the start signal until every job
  ran, and duplicates: runs of a job id beyond its first, over every process (0 expected).
  A second after the last job, the processes stop, so a late duplicate still counts.
- memory: one worker process drains ``memory_jobs[1]`` jobs; its RSS after
  ``memory_jobs[0]`` and after all of them.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections import Counter
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

import attrs

from agenda_decl import Job

from .common import SPAWN, rss_mb, until
from .settings import Sizes
from .stores import Store, fill, fresh_store


@attrs.frozen
class Role:
    """What one worker process is told (picklable)."""

    store: Store
    concurrency: int
    track_ids: bool
    checkpoints: tuple[int, ...] = ()


@attrs.frozen
class Signals:
    """Shared between the processes: the run count, and when to start and stop."""

    count: Synchronized[int]
    go: Event
    stop: Event
    out: Any  # a multiprocessing Queue: ("ready", None) then ("done", {ids, rss})


def worker_main(role: Role, signals: Signals) -> None:
    asyncio.run(_work(role, signals))


async def _work(role: Role, signals: Signals) -> None:
    agenda = role.store.agenda(process_every="1 second", max_concurrency=role.concurrency)
    ids: list[str] = []
    rss: list[float] = []
    ran = [0]

    async def noop(job: Job[Any]) -> None:
        ran[0] += 1
        if role.track_ids:
            ids.append(str(job.attrs.id))
        with signals.count.get_lock():
            signals.count.value += 1
        if ran[0] in role.checkpoints:
            rss.append(rss_mb())

    agenda.define("noop", noop, concurrency=role.concurrency)
    await agenda.ready()
    signals.out.put(("ready", None))
    await asyncio.to_thread(signals.go.wait)
    await agenda.start()
    await asyncio.to_thread(signals.stop.wait)
    await agenda.stop()
    signals.out.put(("done", {"ids": ids, "rss": rss}))


async def run(role: Role, processes: int, total: int) -> tuple[float, list[dict[str, Any]]]:
    """Start ``processes`` workers together; the jobs/s until ``total`` runs, and what each
    process reported."""
    signals = Signals(SPAWN.Value("q", 0), SPAWN.Event(), SPAWN.Event(), SPAWN.Queue())
    children = [SPAWN.Process(target=worker_main, args=(role, signals), daemon=True)
                for _ in range(processes)]
    for child in children:
        child.start()
    try:
        await _collect(signals, processes, "ready")
        started = time.perf_counter()
        signals.go.set()
        await until(lambda: signals.count.value >= total or not all(
            child.is_alive() for child in children), timeout=max(120, total / 50),
            what=f"{total} jobs in {processes} worker process(es)")
        if signals.count.value < total:
            raise RuntimeError("a worker process died")
        rate = total / (time.perf_counter() - started)
        await asyncio.sleep(1)
        signals.stop.set()
        return rate, await _collect(signals, processes, "done")
    finally:
        signals.stop.set()
        for child in children:
            await asyncio.to_thread(child.join, 30)
            if child.is_alive():
                child.kill()


async def _collect(signals: Signals, processes: int, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < processes:
        try:
            got, payload = await asyncio.to_thread(signals.out.get, True, 120)
        except queue.Empty:
            raise RuntimeError(f"a worker process sent no {kind!r} in 120 s") from None
        if got == kind:
            found.append(payload or {})
    return found


#: PostgreSQL connections per worker process: 8 processes (plus their LISTEN connections)
#: stay within the server's default max_connections of 100.
POOL = 5


async def many(kind: str, sizes: Sizes, processes: int) -> dict[str, float]:
    async with fresh_store(kind, pool=POOL) as store:
        await fill(store, "noop", sizes.workers_jobs, sizes.batch)
        role = Role(store, sizes.concurrency, track_ids=True)
        rate, reports = await run(role, processes, sizes.workers_jobs)
    runs = Counter(job_id for report in reports for job_id in report["ids"])
    duplicates = sum(count - 1 for count in runs.values())
    missing = sizes.workers_jobs - len(runs)
    return {f"workers_jobs_s@{processes}": rate, f"duplicates@{processes}": duplicates,
            f"missing@{processes}": missing}


async def memory(kind: str, sizes: Sizes) -> dict[str, float]:
    first, last = sizes.memory_jobs
    async with fresh_store(kind) as store:
        await fill(store, "noop", last, sizes.batch)
        role = Role(store, sizes.concurrency, track_ids=False, checkpoints=(first, last))
        _, reports = await run(role, 1, last)
    at_first, at_last = reports[0]["rss"]
    return {"rss_mb@first": at_first, "rss_mb@last": at_last}
