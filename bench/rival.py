"""procrastinate (the pinned bench extra) on the same PostgreSQL server and the same workloads
as ours.py: drain (one worker, concurrency C, LISTEN/NOTIFY on), enqueue call p50 (sequential
``defer_async``), enqueue -> start (an idle worker here polling every second, a producer in
another process) and bulk (``batch_defer_async``).

procrastinate's schema has fixed table names, so each measurement gets a database of its own,
dropped afterwards (the shared ``test`` database stays untouched)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .common import (
    concurrent_calls,
    in_other_process,
    latency_figures,
    sequential_calls,
    until,
)
from .settings import POSTGRES_URL, Sizes


def version() -> str:
    from importlib.metadata import version as installed

    return installed("procrastinate")


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    """A new database with procrastinate's schema; its connection string."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = make_conninfo(POSTGRES_URL, dbname=name)
    try:
        async with app_on(conninfo) as app:
            await app.schema_manager.apply_schema_async()
        yield conninfo
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                               .format(sql.Identifier(name)))


@asynccontextmanager
async def app_on(conninfo: str) -> AsyncIterator[Any]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    async with app.open_async():
        yield app


def _worker(app: Any, concurrency: int, **options: Any) -> Any:
    return app.run_worker_async(concurrency=concurrency, install_signal_handlers=False,
                                **options)


async def drain(sizes: Sizes) -> dict[str, float]:
    jobs, concurrency = sizes.drain_jobs, sizes.concurrency
    async with database() as conninfo, app_on(conninfo) as app:
        async def run_noop(i: int) -> None:
            return None

        noop: Any = app.task(name="noop")(run_noop)
        enqueue_rate = await concurrent_calls(lambda i: noop.defer_async(i=i), jobs,
                                              concurrency)
        started = time.perf_counter()
        await _worker(app, concurrency, wait=False)
        return {"enqueue_concurrent_jobs_s": enqueue_rate,
                "drain_jobs_s": jobs / (time.perf_counter() - started)}


async def enqueue(sizes: Sizes) -> dict[str, float]:
    async with database() as conninfo, app_on(conninfo) as app:
        task = app.configure_task(name="noop")
        return await sequential_calls(lambda i: task.defer_async(i=i), sizes.calls)


async def bulk(sizes: Sizes) -> dict[str, float]:
    async with database() as conninfo, app_on(conninfo) as app:
        task = app.configure_task(name="noop")
        started = time.perf_counter()
        for start in range(0, sizes.bulk_jobs, sizes.batch):
            end = min(sizes.bulk_jobs, start + sizes.batch)
            await task.batch_defer_async(*({"i": i} for i in range(start, end)))
    return {"bulk_jobs_s": sizes.bulk_jobs / (time.perf_counter() - started)}


async def latency(sizes: Sizes) -> dict[str, float]:
    async with database() as conninfo, app_on(conninfo) as app:
        started_at: dict[int, float] = {}

        async def probe(i: int) -> None:
            started_at[i] = time.monotonic()

        app.task(name="probe")(probe)

        worker = asyncio.create_task(_worker(app, 1, fetch_job_polling_interval=1.0))
        await asyncio.sleep(1.5)  # past the first poll: the worker is idle
        sent = await in_other_process(produce, (conninfo, sizes.samples, sizes.gap_ms))
        await until(lambda: len(started_at) >= sizes.samples, timeout=60,
                    what=f"{sizes.samples} procrastinate probes to start")
        worker.cancel()
        with suppress(asyncio.CancelledError):
            await worker
    return latency_figures([(started_at[i] - sent[i]) * 1000 for i in range(sizes.samples)])


def produce(spec: tuple[str, int, int]) -> list[float]:
    """The producer process: defers ``samples`` probes ``gap_ms`` apart."""
    conninfo, samples, gap_ms = spec

    async def run() -> list[float]:
        sent = []
        async with app_on(conninfo) as app:
            task = app.configure_task(name="probe")
            for i in range(samples):
                await asyncio.sleep(gap_ms / 1000)
                sent.append(time.monotonic())
                await task.defer_async(i=i)
        return sent

    return asyncio.run(run())
