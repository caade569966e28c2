"""The floor under enqueue -> start on this machine: the headline latency workload (an idle
listener here, a producer in a second process, ``samples`` enqueues ``gap_ms`` apart) with
the drivers alone and no job system. The producer stores a one-row job and announces it in one
round trip; the listener, told, claims it in one more (PostgreSQL: an INSERT with its NOTIFY,
then an UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING on a second connection, as a worker
does; Redis: a script that stores and PUBLISHes, then a script that pops and locks). From the
producer's call to the claim's reply: what any job system pays here before its own code runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import psycopg
import redis
import redis.asyncio
from psycopg import sql

from .common import in_other_process, latency_figures
from .settings import POSTGRES_URL, REDIS_URL, Sizes

Spec = TypeVar("Spec")

#: How long the listener waits for all the samples before it gives up.
TIMEOUT = 120

_CREATE = ("CREATE TABLE {} (i integer PRIMARY KEY, next_run_at timestamptz NOT NULL, "
           "locked_at timestamptz)")
_INDEX = "CREATE INDEX ON {} (next_run_at) WHERE locked_at IS NULL"
_INSERT = ("WITH job AS (INSERT INTO {} (i, next_run_at) VALUES (%s, now()) RETURNING i) "
           "SELECT pg_notify(%s, i::text) FROM job")
_CLAIM = ("UPDATE {0} SET locked_at = clock_timestamp() WHERE i = (SELECT i FROM {0} "
          "WHERE locked_at IS NULL AND next_run_at <= now() ORDER BY next_run_at LIMIT 1 "
          "FOR UPDATE SKIP LOCKED) RETURNING i")

#: KEYS: due set, job hash prefix, channel; ARGV: the job's number, the time in ms.
_STORE = """redis.call('HSET', KEYS[2] .. ARGV[1], 'i', ARGV[1], 'nextRunAt', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[1])"""
#: KEYS: due set, job hash prefix; ARGV: the time in ms.
_POP = """local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then return false end
redis.call('ZREM', KEYS[1], due[1])
redis.call('HSET', KEYS[2] .. due[1], 'lockedAt', ARGV[1])
return due[1]"""


async def latency(backend: str, sizes: Sizes) -> dict[str, float]:
    """The workload's enqueue -> claimed percentiles (``floor_e2s_p50_ms``, ...)."""
    name = f"bench_floor_{uuid.uuid4().hex[:10]}"
    listen = _postgres if backend == "postgres" else _redis
    claimed, sent = await listen(name, sizes)
    return latency_figures([(claimed[i] - sent[i]) * 1000 for i in range(sizes.samples)],
                           "e2s")


async def _postgres(table: str, sizes: Sizes) -> tuple[dict[int, float], list[float]]:
    ident = sql.Identifier(table)
    connect = psycopg.AsyncConnection.connect
    async with await connect(POSTGRES_URL, autocommit=True) as listener, \
            await connect(POSTGRES_URL, autocommit=True) as worker:
        await worker.execute(sql.SQL(_CREATE).format(ident))
        try:
            await worker.execute(sql.SQL(_INDEX).format(ident))
            await listener.execute(sql.SQL("LISTEN {}").format(ident))
            claim = sql.SQL(_CLAIM).format(ident)
            claimed: dict[int, float] = {}

            async def claim_each() -> None:
                while len(claimed) < sizes.samples:
                    async for _ in listener.notifies(stop_after=1):
                        pass
                    cursor = await worker.execute(claim, prepare=True)
                    rows = await cursor.fetchall()
                    now = time.monotonic()
                    claimed.update((row[0], now) for row in rows)

            sent = await _together(claim_each(), _produce_postgres, (table, sizes))
        finally:
            await worker.execute(sql.SQL("DROP TABLE {}").format(ident))
    return claimed, sent


def _produce_postgres(spec: tuple[str, Sizes]) -> list[float]:
    table, sizes = spec
    insert = sql.SQL(_INSERT).format(sql.Identifier(table))
    sent = []
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for i in range(sizes.samples):
            time.sleep(sizes.gap_ms / 1000)
            sent.append(time.monotonic())
            conn.execute(insert, (i, table), prepare=True)
    return sent


async def _redis(prefix: str, sizes: Sizes) -> tuple[dict[int, float], list[float]]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pop = client.register_script(_POP)
    keys = [f"{prefix}:due", f"{prefix}:job:"]
    claimed: dict[int, float] = {}
    try:
        await pubsub.subscribe(prefix)

        async def claim_each() -> None:
            while len(claimed) < sizes.samples:
                if await pubsub.get_message(timeout=1.0) is None:
                    continue
                popped = await pop(keys=keys, args=[int(time.time() * 1000)])
                if popped is not None:
                    claimed[int(popped)] = time.monotonic()

        sent = await _together(claim_each(), _produce_redis, (prefix, sizes))
    finally:
        await pubsub.aclose()
        members = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if members:
            await client.delete(*members)
        await client.aclose()
    return claimed, sent


def _produce_redis(spec: tuple[str, Sizes]) -> list[float]:
    prefix, sizes = spec
    client = redis.Redis.from_url(REDIS_URL)
    store = client.register_script(_STORE)
    keys = [f"{prefix}:due", f"{prefix}:job:", prefix]
    sent = []
    for i in range(sizes.samples):
        time.sleep(sizes.gap_ms / 1000)
        sent.append(time.monotonic())
        store(keys=keys, args=[i, int(time.time() * 1000)])
    client.close()
    return sent


async def _together(listening: Coroutine[Any, Any, None],
                    produce: Callable[[Spec], list[float]], spec: Spec) -> list[float]:
    """Run the listener here and ``produce(spec)`` in a second process; the producer's send
    times once every sample was claimed (the listener gives up after ``TIMEOUT`` s)."""
    listener = asyncio.ensure_future(asyncio.wait_for(listening, TIMEOUT))
    await asyncio.sleep(0.2)  # the listener is waiting before the first enqueue
    sent: list[float] = await in_other_process(produce, spec)
    await listener
    return sent
