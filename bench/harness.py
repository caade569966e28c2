"""Throughput and enqueue-to-start latency of one worker process, for any backend.

    python bench/harness.py --backend postgres                   # N=5000, C=50, channel on+off
    python bench/harness.py --backend redis --latency --repeat 3
    python bench/harness.py --backend sqlite --channel off

Throughput: N no-op jobs are enqueued by C concurrent producers (enqueue rate), then one
worker (``max_concurrency`` and the job's ``concurrency`` = C) drains them: the time from
``start()`` until the last handler returned (drain rate).

Latency (``--latency``): an idle worker here; a producer in another process calls ``now()``
``--samples`` times, one after the other, ``--gap`` ms apart; the time from calling ``now()``
to the handler starting. Both processes read CLOCK_MONOTONIC, which Linux shares. Memory and
SQLite have no channel that crosses processes, so their producer shares the worker's loop.

Each measurement uses a fresh store (table, key prefix or file) removed afterwards; with
``--repeat`` the median of the runs is shown. Numbers only, never assertions: record them in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from agenda_decl import Agenda, InMemoryNotificationChannel, Job
from agenda_decl.interfaces import AgendaBackend

POSTGRES_URL = os.environ.get("AGENDA_BENCH_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AGENDA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ["postgres", "redis", "sqlite", "memory"]
#: Backends whose producer cannot live in another process (no cross-process channel).
IN_PROCESS = {"memory", "sqlite"}
NAN = float("nan")


# -- stores -------------------------------------------------------------------------------------


@attrs.frozen
class Store:
    """Where one measurement keeps its jobs; picklable, so a producer process can open it."""

    kind: str
    channel: bool
    suffix: str = attrs.field(factory=lambda: uuid.uuid4().hex[:10])
    directory: str = ""

    def backend(self) -> AgendaBackend:
        name = f"bench_{self.suffix}"
        if self.kind == "postgres":
            from agenda_decl.backends.postgres import PostgresBackend

            return PostgresBackend(connection_string=POSTGRES_URL, table_name=name,
                                   channel_name=name, disable_notifications=not self.channel)
        if self.kind == "redis":
            from agenda_decl.backends.redis import RedisBackend

            return RedisBackend(connection_string=REDIS_URL, key_prefix=f"{name}:",
                                channel_name=name, disable_notifications=not self.channel)
        if self.kind == "sqlite":
            from agenda_decl.backends.sqlite import SQLiteBackend

            return SQLiteBackend(path=str(Path(self.directory) / "bench.db"))
        from agenda_decl.testing import InMemoryBackend

        return InMemoryBackend(notifications=self.channel)

    def agenda(self, **options: Any) -> Agenda:
        """An agenda on a new backend object; stores without a channel of their own get the
        in-process one when the channel is on."""
        backend = self.backend()
        channel = None
        if self.channel and backend.notification_channel is None:
            channel = InMemoryNotificationChannel()
        return Agenda(backend, notification_channel=channel, **options)


@asynccontextmanager
async def fresh_store(kind: str, channel: bool) -> AsyncIterator[Store]:
    """A store nobody else uses, removed afterwards."""
    with tempfile.TemporaryDirectory() as directory:
        store = Store(kind, channel, directory=directory)
        try:
            yield store
        finally:
            await remove(store)


async def remove(store: Store) -> None:
    if store.kind == "postgres":
        await _drop_postgres_table(f"bench_{store.suffix}")
    elif store.kind == "redis":
        await _delete_redis_keys(f"bench_{store.suffix}:")


async def _drop_postgres_table(table: str) -> None:
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
        await conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()")
                           .format(sql.Identifier(f"update_{table}_updated_at")))


async def _delete_redis_keys(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


# -- throughput ---------------------------------------------------------------------------------


async def throughput(kind: str, jobs: int, concurrency: int, channel: bool) -> dict[str, float]:
    async with fresh_store(kind, channel) as store:
        agenda = store.agenda(process_every="1 second", max_concurrency=concurrency)
        finished = asyncio.Event()
        done = [0]

        async def noop(job: Job[Any]) -> None:
            done[0] += 1
            if done[0] == jobs:
                finished.set()

        agenda.define("noop", noop, concurrency=concurrency)
        await agenda.ready()
        enqueue_rate = await enqueue(agenda, jobs, concurrency)
        started = time.perf_counter()
        await agenda.start()
        await asyncio.wait_for(finished.wait(), timeout=600)
        drain_rate = jobs / (time.perf_counter() - started)
        await agenda.drain(timeout="30 seconds")
        return {"enqueue": enqueue_rate, "drain": drain_rate}


async def enqueue(agenda: Agenda, jobs: int, producers: int) -> float:
    numbers = iter(range(jobs))

    async def producer() -> None:
        for i in numbers:
            await agenda.now("noop", {"i": i})

    started = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(producers)))
    return jobs / (time.perf_counter() - started)


# -- latency ------------------------------------------------------------------------------------


async def latency(kind: str, samples: int, gap_ms: int, channel: bool) -> dict[str, float]:
    async with fresh_store(kind, channel) as store:
        worker = store.agenda(process_every="1 second")
        started_at: dict[int, float] = {}

        async def probe(job: Job[Any]) -> None:
            started_at[job.attrs.data["i"]] = time.monotonic()

        worker.define("probe", probe)
        await worker.start()
        await asyncio.sleep(1.5)  # past the first poll: the worker is idle
        if kind in IN_PROCESS:
            sent = await send_probes(worker, samples, gap_ms)
        else:
            sent = await in_other_process(produce, (store, samples, gap_ms))
        async with asyncio.timeout(60):
            while len(started_at) < samples:
                await asyncio.sleep(0.05)
        await worker.drain(timeout="30 seconds")
        return percentiles([(started_at[i] - sent[i]) * 1000 for i in range(samples)])


async def in_other_process(function: Callable[[Any], Any], argument: Any) -> Any:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, function, argument)


def produce(spec: tuple[Store, int, int]) -> list[float]:
    """The producer process: its own agenda on the same store; returns when each call began."""
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


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": cuts[94], "p99": cuts[98]}


# -- reporting ----------------------------------------------------------------------------------


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the runs (figures are not taken from one run)."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def server_version(kind: str) -> str:
    if kind == "postgres":
        import psycopg

        async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
            row = await (await conn.execute("SHOW server_version")).fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"
    if kind == "redis":
        import redis.asyncio as redis

        client = redis.Redis.from_url(REDIS_URL)
        info = await client.info("server")
        await client.aclose()
        return f"Redis {info.get('redis_version', '?')}"
    if kind == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    return "in-memory"


def header(args: argparse.Namespace) -> str:
    where = "the worker process" if args.backend in IN_PROCESS else "a second process"
    latency_text = (f"; latency: {args.samples} x now(), {args.gap} ms apart, producer in "
                    f"{where}" if args.latency else "")
    return (f"{asyncio.run(server_version(args.backend))}, {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.2f}; N={args.jobs} no-op jobs, "
            f"C={args.concurrency}, one worker process{latency_text}; "
            f"median of {args.repeat} run(s)")


def measure(args: argparse.Namespace, channel: bool) -> str:
    runs = [asyncio.run(throughput(args.backend, args.jobs, args.concurrency, channel))
            for _ in range(args.repeat)]
    rates = medians(runs)
    lat = {"p50": NAN, "p95": NAN, "p99": NAN}
    if args.latency:
        lat = medians([asyncio.run(latency(args.backend, args.samples, args.gap, channel))
                       for _ in range(args.repeat)])
    return (f"{'on' if channel else 'off':<9}{rates['enqueue']:>11.0f}{rates['drain']:>10.0f}"
            f"{lat['p50']:>9.2f}{lat['p95']:>9.2f}{lat['p99']:>9.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default="postgres")
    parser.add_argument("--jobs", type=int, default=5000, help="N, jobs per throughput run")
    parser.add_argument("--concurrency", type=int, default=50, help="C, producers and workers")
    parser.add_argument("--channel", choices=["on", "off", "both"], default="both")
    parser.add_argument("--latency", action="store_true", help="measure enqueue-to-start too")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--gap", type=int, default=20, help="ms between latency samples")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    modes = [True, False] if args.channel == "both" else [args.channel == "on"]
    print(header(args))
    print(f"{'channel':<9}{'enqueue/s':>11}{'drain/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for channel in modes:
        print(measure(args, channel), flush=True)


if __name__ == "__main__":
    main()
