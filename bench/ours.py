"""agenda-decl's headline workloads (the issue's table), one fresh store each:

- drain: N no-op jobs enqueued by C concurrent producers (the enqueue rate), then one worker
  (``max_concurrency`` and the job's ``concurrency`` = C) runs them: from ``start()`` until the
  last handler ran.
- enqueue: ``calls`` sequential awaits of ``now()`` (what a web request pays): the call p50 and
  the rate.
- latency: an idle worker (``process_every`` 1 s) here; a producer in another process (or, for
  a store without a cross-process channel, in this one) calls ``now()`` ``samples`` times,
  ``gap_ms`` apart; from the call to the handler's start. Both processes read CLOCK_MONOTONIC.
- bulk: ``bulk_jobs`` jobs through ``now_many`` in batches of ``batch`` (concurrent ``now()``
  calls where the agenda has no ``now_many``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agenda_decl import Agenda, Job

from .common import (
    Countdown,
    concurrent_calls,
    in_other_process,
    latency_figures,
    sequential_calls,
    until,
)
from .settings import Sizes
from .stores import Store, enqueue_batch, fresh_store

WORKER = {"process_every": "1 second"}


async def drain(kind: str, sizes: Sizes) -> dict[str, float]:
    jobs, concurrency = sizes.drain_jobs, sizes.concurrency
    async with fresh_store(kind, local_channel=True) as store:
        agenda = store.agenda(max_concurrency=concurrency, **WORKER)
        countdown = Countdown(jobs)
        agenda.define("noop", countdown.handler, concurrency=concurrency)
        await agenda.ready()
        enqueue_rate = await concurrent_calls(
            lambda i: agenda.now("noop", {"i": i}), jobs, concurrency)
        started = time.perf_counter()
        await agenda.start()
        await countdown.wait()
        drain_rate = jobs / (time.perf_counter() - started)
        await agenda.stop()
        return {"enqueue_concurrent_jobs_s": enqueue_rate, "drain_jobs_s": drain_rate}


async def enqueue(kind: str, sizes: Sizes) -> dict[str, float]:
    async with fresh_store(kind, local_channel=True) as store:
        agenda = store.agenda()
        agenda.declare("noop")
        await agenda.ready()
        figures = await sequential_calls(lambda i: agenda.now("noop", {"i": i}), sizes.calls)
        await agenda.stop()
        return figures


async def bulk(kind: str, sizes: Sizes) -> dict[str, float]:
    async with fresh_store(kind) as store:
        agenda = store.agenda()
        agenda.declare("noop")
        await agenda.ready()
        started = time.perf_counter()
        for start in range(0, sizes.bulk_jobs, sizes.batch):
            end = min(sizes.bulk_jobs, start + sizes.batch)
            await enqueue_batch(agenda, "noop", [{"i": i} for i in range(start, end)])
        rate = sizes.bulk_jobs / (time.perf_counter() - started)
        await agenda.stop()
        return {"bulk_jobs_s": rate}


async def latency(kind: str, sizes: Sizes, *, cross_process: bool,
                  prefix: str = "e2s") -> dict[str, float]:
    """Enqueue -> handler start. ``cross_process=False`` puts the producer in this process
    (with an in-process channel when the store has none of its own)."""
    async with fresh_store(kind, local_channel=not cross_process) as store:
        worker = store.agenda(**WORKER)
        started_at: dict[int, float] = {}

        async def probe(job: Job[Any]) -> None:
            started_at[job.attrs.data["i"]] = time.monotonic()

        worker.define("probe", probe)
        await worker.start()
        await asyncio.sleep(1.5)  # past the first poll: the worker is idle
        spec = (store, sizes.samples, sizes.gap_ms)
        sent = await (in_other_process(produce, spec) if cross_process else send_probes(
            worker, sizes.samples, sizes.gap_ms))
        await until(lambda: len(started_at) >= sizes.samples, timeout=60,
                    what=f"{sizes.samples} probes to start")
        await worker.stop()
        return latency_figures([(started_at[i] - sent[i]) * 1000
                                for i in range(sizes.samples)], prefix)


def produce(spec: tuple[Store, int, int]) -> list[float]:
    """The producer process: its own agenda on the same store; when each call began."""
    store, samples, gap_ms = spec

    async def run() -> list[float]:
        producer = store.agenda()
        producer.declare("probe")
        await producer.ready()
        sent = await send_probes(producer, samples, gap_ms)
        await producer.stop()
        return sent

    return asyncio.run(run())


async def send_probes(agenda: Agenda, samples: int, gap_ms: int) -> list[float]:
    sent = []
    for i in range(samples):
        await asyncio.sleep(gap_ms / 1000)
        sent.append(time.monotonic())
        await agenda.now("probe", {"i": i})
    return sent
