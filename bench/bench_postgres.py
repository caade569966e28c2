"""PostgreSQL backend: throughput and enqueue-to-start latency, with LISTEN/NOTIFY on and off.

    python bench/bench_postgres.py                       # N=5000, C=50, channel on and off
    python bench/bench_postgres.py --jobs 20000 --concurrency 100 --channel on --repeat 3

Throughput: N no-op jobs are enqueued by C concurrent producers (enqueue rate), then one
worker (``max_concurrency`` and the job's ``concurrency`` = C) drains them: the time from
``start()`` until the last handler returned. Latency: an idle worker; a producer in another
process calls ``now()`` ``--samples`` times, one after the other, ``--gap`` ms apart; the
time from calling ``now()`` to the handler starting.

Each measurement runs in a fresh table that is dropped afterwards. With ``--repeat`` the
median run is shown. Numbers only, never assertions; record them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from agenda_decl import Agenda, Job
from agenda_decl.backends.postgres import PostgresBackend

DEFAULT_URL = os.environ.get("AGENDA_BENCH_POSTGRES_URL",
                             "postgresql://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def fresh_table(url: str) -> AsyncIterator[tuple[str, str]]:
    """A table and channel name nobody else uses; the table is dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    table = f"bench_{suffix}"
    try:
        yield table, f"bench:{suffix}"
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE")
                               .format(sql.Identifier(table)))
            await conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()")
                               .format(sql.Identifier(f"update_{table}_updated_at")))


def backend(url: str, table: str, channel_name: str, channel: bool) -> PostgresBackend:
    return PostgresBackend(connection_string=url, table_name=table, channel_name=channel_name,
                           disable_notifications=not channel)


async def throughput(url: str, jobs: int, concurrency: int, channel: bool) -> dict[str, float]:
    async with fresh_table(url) as (table, channel_name):
        agenda = Agenda(backend(url, table, channel_name, channel), process_every="1 second",
                        max_concurrency=concurrency)
        finished, done = asyncio.Event(), [0]

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


async def latency(url: str, samples: int, gap_ms: int, channel: bool,
                  process_every: str) -> dict[str, float]:
    """An idle worker here; the producer in a process of its own, as in production (one
    event loop would make the two compete). Both read CLOCK_MONOTONIC, which Linux shares
    between processes."""
    async with fresh_table(url) as (table, channel_name):
        worker = Agenda(backend(url, table, channel_name, channel), process_every=process_every)
        started_at: dict[int, float] = {}

        async def probe(job: Job[Any]) -> None:
            started_at[job.attrs.data["i"]] = time.monotonic()

        worker.define("probe", probe)
        await worker.start()
        await asyncio.sleep(1.5)  # past the first poll: the worker is idle
        spec = (url, table, channel_name, channel, samples, gap_ms)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            sent = await asyncio.get_running_loop().run_in_executor(pool, produce, spec)
        async with asyncio.timeout(60):
            while len(started_at) < samples:
                await asyncio.sleep(0.05)
        await worker.drain(timeout="30 seconds")
        return percentiles([(started_at[i] - sent[i]) * 1000 for i in range(samples)])


def produce(spec: tuple[str, str, str, bool, int, int]) -> list[float]:
    """The producer process: ``samples`` sequential now() calls, ``gap_ms`` apart; returns
    when each call began."""
    url, table, channel_name, channel, samples, gap_ms = spec

    async def run() -> list[float]:
        producer = Agenda(backend(url, table, channel_name, channel))
        producer.declare("probe")
        await producer.ready()
        sent = []
        for i in range(samples):
            await asyncio.sleep(gap_ms / 1000)
            sent.append(time.monotonic())
            await producer.now("probe", {"i": i})
        await producer.stop()
        return sent

    return asyncio.run(run())


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": cuts[94], "p99": cuts[98]}


def median_run(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    return sorted(runs, key=lambda run: run[key])[len(runs) // 2]


async def server_version(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute("SHOW server_version")).fetchone()
    return str(row[0]) if row else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL connection string")
    parser.add_argument("--jobs", type=int, default=5000, help="N, jobs per throughput run")
    parser.add_argument("--concurrency", type=int, default=50, help="C, producers and workers")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--gap", type=int, default=20, help="ms between latency samples")
    parser.add_argument("--channel", choices=["on", "off", "both"], default="both")
    parser.add_argument("--process-every", default="1 second",
                        help="the worker's poll interval in the latency runs")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    modes = [True, False] if args.channel == "both" else [args.channel == "on"]

    print(f"PostgreSQL {asyncio.run(server_version(args.url))}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; N={args.jobs} no-op jobs, "
          f"C={args.concurrency}, one worker process; latency: {args.samples} x now(), "
          f"{args.gap} ms apart, process_every={args.process_every}")
    print(f"{'channel':<9}{'enqueue/s':>11}{'drain/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for channel in modes:
        runs = [asyncio.run(throughput(args.url, args.jobs, args.concurrency, channel))
                for _ in range(args.repeat)]
        rates = {"enqueue": median_run(runs, "enqueue")["enqueue"],
                 "drain": median_run(runs, "drain")["drain"]}
        lat = {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
        if not args.skip_latency:
            lat = median_run([asyncio.run(latency(args.url, args.samples, args.gap, channel,
                                                  args.process_every))
                              for _ in range(args.repeat)], "p50")
        print(f"{'on' if channel else 'off':<9}{rates['enqueue']:>11.0f}{rates['drain']:>10.0f}"
              f"{lat['p50']:>9.2f}{lat['p95']:>9.2f}{lat['p99']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
