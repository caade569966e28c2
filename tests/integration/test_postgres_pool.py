"""Borrowing pooled PostgreSQL connections (``connectors.postgres.borrow``) on the shared
server: a connection the server closed is skipped before use, and a connection is returned
to the pool even when its task is cancelled while returning it."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from agenda_decl.connectors.postgres import Pool, borrow, open_pool
from tests.backends.servers import POSTGRES_URL


async def test_connections_the_server_closed_are_skipped_before_use() -> None:
    pool = await open_pool(POSTGRES_URL, max_size=3, name="skip-dead", wait_timeout=10)
    try:
        pids = await _open_connections(pool, 3)
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                               (pids,))
            for _ in range(100):  # until the server has ended them
                cursor = await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
                row = await cursor.fetchone()
                if row is not None and row[0] == 0:
                    break
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        for _ in range(3):
            async with borrow(pool, 10) as conn:
                cursor = await conn.execute("SELECT pg_backend_pid()")
                row = await cursor.fetchone()
                assert row is not None and row[0] not in pids
    finally:
        await pool.close()


async def _open_connections(pool: Pool, count: int) -> list[int]:
    """Make the pool hold ``count`` connections; their server pids."""
    held: list[int] = []
    ready = asyncio.Event()
    done = asyncio.Event()

    async def hold() -> None:
        async with borrow(pool, 10) as conn:
            held.append(conn.info.backend_pid)
            if len(held) == count:
                ready.set()
            await done.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    await asyncio.wait_for(ready.wait(), 10)
    done.set()
    await asyncio.gather(*tasks)
    return held


@pytest.mark.parametrize("first", ["release", "wait"])
@pytest.mark.parametrize("between", range(5))
async def test_a_task_cancelled_while_returning_its_connection_still_returns_it(
    first: str, between: int
) -> None:
    """psycopg_pool hands a returned connection to a waiting client through awaits (the
    waiter's condition lock); a cancellation that arrives there drops the connection (the
    pool counts it in use for ever) and the waiter it had taken off the queue, which then
    waits out its whole timeout beside idle connections. Stopping a scheduler cancels its
    claims, and this made a stopping worker hang on its last state write. The interleavings
    are swept, as the window moves with the number of awaits on the way (with psycopg_pool
    3.3, plain ``pool.connection()`` loses the connection at one of them, and ``borrow``
    without its shielded return at two)."""
    for after in range(5):
        pool = await open_pool(POSTGRES_URL, max_size=1, name="cancelled-return",
                               wait_timeout=10)
        try:
            assert await _waiter_served(pool, first, between, after)
            async with borrow(pool, 2):  # and the connection is back
                pass
        finally:
            await pool.close()


async def _waiter_served(pool: Pool, first: str, between: int, after: int) -> bool:
    """The only connection is held by a task. Release it and make a client wait for a
    connection (``first`` one, then the other ``between`` loop turns later), then cancel the
    holder ``after`` more turns later, while it may be returning the connection: whether
    the waiting client gets the connection."""
    release = asyncio.Event()

    async def holder() -> None:
        async with borrow(pool):
            await release.wait()

    async def waiter() -> None:
        async with borrow(pool, 1.0):
            pass

    holding = asyncio.create_task(holder())
    while pool.get_stats()["pool_available"]:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.005)
    steps = [release.set, lambda: waiting.append(asyncio.create_task(waiter()))]
    waiting: list[asyncio.Task[None]] = []
    one, two = steps if first == "release" else steps[::-1]
    one()
    for _ in range(between):
        await asyncio.sleep(0)
    two()
    for _ in range(after):
        await asyncio.sleep(0)
    holding.cancel()
    await asyncio.wait({holding})
    try:
        await waiting[0]
    except PoolTimeout:
        return False
    return True
