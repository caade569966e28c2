"""Throughput and latency of one worker process, for any backend.

    python bench/harness.py --backend sqlite --jobs 5000 --concurrency 50
    python bench/harness.py --backend postgres --latency --channel on

Throughput: N no-op jobs are enqueued by C concurrent producers (enqueue rate), then one
worker with ``max_concurrency = concurrency = C`` drains them (drain rate, measured from
start() to the last ``complete``). Latency: ``--samples`` sequential ``now()`` calls
``--gap`` ms apart on an idle worker; the time from calling ``now()`` to the handler starting.
Numbers, never assertions: results go to bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agenda_decl import Agenda, InMemoryNotificationChannel, Job
from agenda_decl.interfaces import AgendaBackend, NotificationChannel

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


@asynccontextmanager
async def open_backend(kind: str, channel: bool) -> AsyncIterator[AgendaBackend]:
    """A fresh, empty backend of ``kind``, removed afterwards."""
    suffix = uuid.uuid4().hex[:10]
    if kind == "sqlite":
        from agenda_decl.backends.sqlite import SQLiteBackend

        with tempfile.TemporaryDirectory() as directory:
            yield SQLiteBackend(path=str(Path(directory) / "bench.db"))
    elif kind == "postgres":
        from agenda_decl.backends.postgres import PostgresBackend

        backend = PostgresBackend(connection_string=POSTGRES_URL,
                                  table_name=f"bench_{suffix}", channel_name=f"bench:{suffix}",
                                  disable_notifications=not channel)
        yield backend
        await _drop_postgres_table(f"bench_{suffix}")
    elif kind == "redis":
        from agenda_decl.backends.redis import RedisBackend

        yield RedisBackend(connection_string=REDIS_URL, key_prefix=f"bench:{suffix}:",
                           channel_name=f"bench:{suffix}", disable_notifications=not channel)
        await _delete_redis_keys(f"bench:{suffix}:")
    elif kind == "memory":
        from agenda_decl.testing import InMemoryBackend

        yield InMemoryBackend(notifications=channel)
    else:
        raise SystemExit(f"unknown backend {kind!r}")


async def _drop_postgres_table(table: str) -> None:
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))


async def _delete_redis_keys(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


def channel_for(kind: str, backend: AgendaBackend, on: bool) -> NotificationChannel | None:
    """The backend's own channel, or the in-process one for stores that have none."""
    if not on:
        return None
    return backend.notification_channel or InMemoryNotificationChannel()


async def throughput(kind: str, jobs: int, concurrency: int, channel: bool) -> dict[str, float]:
    async with open_backend(kind, channel) as backend:
        agenda = Agenda(backend, notification_channel=channel_for(kind, backend, channel),
                        process_every="1 second", max_concurrency=concurrency)
        finished = asyncio.Event()
        done = [0]

        async def noop(job: Job[Any]) -> None:
            done[0] += 1
            if done[0] == jobs:
                finished.set()

        agenda.define("noop", noop, concurrency=concurrency)
        await agenda.ready()
        enqueue_rate = await _enqueue(agenda, jobs, concurrency)
        started = time.perf_counter()
        await agenda.start()
        await asyncio.wait_for(finished.wait(), timeout=600)
        drain_rate = jobs / (time.perf_counter() - started)
        await agenda.stop()
        return {"enqueue_per_s": enqueue_rate, "drain_per_s": drain_rate}


async def _enqueue(agenda: Agenda, jobs: int, producers: int) -> float:
    started = time.perf_counter()
    queue = iter(range(jobs))

    async def producer() -> None:
        for i in queue:
            await agenda.now("noop", {"i": i})

    await asyncio.gather(*(producer() for _ in range(producers)))
    return jobs / (time.perf_counter() - started)


async def latency(kind: str, samples: int, gap_ms: int, channel: bool) -> dict[str, float]:
    async with open_backend(kind, channel) as backend:
        agenda = Agenda(backend, notification_channel=channel_for(kind, backend, channel),
                        process_every="1 second")
        started_at: dict[int, float] = {}
        arrived = asyncio.Event()

        async def probe(job: Job[Any]) -> None:
            started_at[job.attrs.data["i"]] = time.perf_counter()
            arrived.set()

        agenda.define("probe", probe)
        await agenda.start()
        await asyncio.sleep(1.5)  # idle worker: the first poll has passed
        delays = [await _one_probe(agenda, i, gap_ms, started_at, arrived)
                  for i in range(samples)]
        await agenda.stop()
        return _percentiles(delays)


async def _one_probe(agenda: Agenda, i: int, gap_ms: int, started_at: dict[int, float],
                     arrived: asyncio.Event) -> float:
    await asyncio.sleep(gap_ms / 1000)
    arrived.clear()
    sent = time.perf_counter()
    await agenda.now("probe", {"i": i})
    while i not in started_at:
        await asyncio.wait_for(arrived.wait(), timeout=30)
        arrived.clear()
    return (started_at[i] - sent) * 1000


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50_ms": statistics.median(values), "p95_ms": cuts[94], "p99_ms": cuts[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="sqlite",
                        choices=["sqlite", "postgres", "redis", "memory"])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--channel", choices=["on", "off", "both"], default="both")
    parser.add_argument("--latency", action="store_true", help="measure enqueue-to-start too")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--gap", type=int, default=20, help="ms between latency samples")
    args = parser.parse_args()
    modes = [True, False] if args.channel == "both" else [args.channel == "on"]
    for channel in modes:
        label = f"{args.backend} channel={'on' if channel else 'off'}"
        result = asyncio.run(throughput(args.backend, args.jobs, args.concurrency, channel))
        print(f"{label:<24} N={args.jobs} C={args.concurrency}  "
              f"enqueue {result['enqueue_per_s']:8.0f} jobs/s  "
              f"drain {result['drain_per_s']:8.0f} jobs/s", flush=True)
        if args.latency:
            lat = asyncio.run(latency(args.backend, args.samples, args.gap, channel))
            print(f"{label:<24} enqueue->start  p50 {lat['p50_ms']:6.2f} ms  "
                  f"p95 {lat['p95_ms']:6.2f} ms  p99 {lat['p99_ms']:6.2f} ms", flush=True)


if __name__ == "__main__":
    main()
