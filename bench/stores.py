"""Stores a measurement owns: a fresh PostgreSQL table, Redis key prefix or SQLite file, removed
afterwards, and the setup of large backlogs through the bulk enqueue."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from agenda_decl import Agenda, InMemoryNotificationChannel, Job
from agenda_decl.interfaces import AgendaBackend

from .settings import POSTGRES_URL, REDIS_URL


@attrs.frozen
class Store:
    """Where one measurement keeps its jobs; picklable, so other processes can open it.

    ``channel``: the store's own notification channel (LISTEN/NOTIFY, pub/sub, or whatever
    cross-process wake-up SQLite has). ``local_channel``: when the store has none, an in-process
    one (only producers in the worker's own process reach it)."""

    kind: str
    channel: bool = True
    local_channel: bool = False
    pool: int = 10  # PostgreSQL connections per agenda (the backend's default)
    suffix: str = attrs.field(factory=lambda: uuid.uuid4().hex[:10])
    directory: str = ""

    @property
    def name(self) -> str:
        """The table, key prefix and channel name (unique: shared servers stay untouched)."""
        return f"bench_{self.suffix}"

    def backend(self) -> AgendaBackend:
        if self.kind == "postgres":
            from agenda_decl.backends.postgres import PostgresBackend

            return PostgresBackend(connection_string=POSTGRES_URL, table_name=self.name,
                                   log_table_name=f"{self.name}_log", channel_name=self.name,
                                   disable_notifications=not self.channel,
                                   max_pool_size=self.pool)
        if self.kind == "redis":
            from agenda_decl.backends.redis import RedisBackend

            return RedisBackend(connection_string=REDIS_URL, key_prefix=f"{self.name}:",
                                channel_name=self.name, disable_notifications=not self.channel)
        from agenda_decl.backends.sqlite import SQLiteBackend

        return SQLiteBackend(path=str(Path(self.directory) / "bench.db"))

    def agenda(self, **options: Any) -> Agenda:
        """An agenda on a new backend object."""
        backend = self.backend()
        channel = None
        if self.channel and self.local_channel and backend.notification_channel is None:
            channel = InMemoryNotificationChannel()
        if not self.channel and backend.notification_channel is not None:
            # A store whose channel no option here turns off (SQLite's change watcher, say):
            # an in-process channel nobody else listens to stands in for it.
            channel = InMemoryNotificationChannel()
        return Agenda(backend, notification_channel=channel, **options)


@asynccontextmanager
async def fresh_store(kind: str, **options: Any) -> AsyncIterator[Store]:
    """A store nobody else uses, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="agenda-bench-") as directory:
        store = Store(kind, directory=directory, **options)
        try:
            yield store
        finally:
            await _remove_patiently(store)


async def _remove_patiently(store: Store) -> None:
    """Remove the store, trying again for a while (a shared server can be busy: Redis
    answers BUSY while another client's script runs); a store that still cannot be removed
    is named on stderr and the measurement stands."""
    for attempt in range(6):
        try:
            await remove(store)
            return
        except Exception as error:
            if attempt == 5:
                print(f"could not remove {store.kind} store {store.name}: {error!r}",
                      file=sys.stderr)
                return
            await asyncio.sleep(5)


async def remove(store: Store) -> None:
    """Drop what the store's agendas (ours or Node's) made: every table, function and key
    named after it."""
    if store.kind == "postgres":
        await _drop_postgres(store.name)
    elif store.kind == "redis":
        await _delete_redis_keys(f"{store.name}:")


async def _drop_postgres(name: str) -> None:
    import psycopg
    from psycopg import sql

    pattern = name.replace("_", r"\_") + "%"
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        tables = await (await conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", [pattern])).fetchall()
        for (table,) in tables:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE")
                               .format(sql.Identifier(table)))
        functions = await (await conn.execute(
            "SELECT proname FROM pg_proc WHERE proname LIKE %s",
            ["%" + pattern])).fetchall()
        for (function,) in functions:
            await conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE")
                               .format(sql.Identifier(function)))


async def _delete_redis_keys(prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.delete(*batch)
            batch = []
    if batch:
        await client.delete(*batch)
    await client.aclose()


async def settle(store: Store) -> None:
    """What autovacuum does to a PostgreSQL table soon after a bulk load: VACUUM ANALYZE
    (fresh statistics for the planner, hint bits set); then a :func:`checkpoint`, so that the
    claims timed next do not share the disk with the flush of the load: its WAL (two million
    writes for the point beside a million completed jobs) is past max_wal_size, so the server
    has begun a checkpoint of its own, spread over minutes. Other stores need nothing."""
    if store.kind != "postgres":
        return
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(store.name)))
    await checkpoint()


async def checkpoint() -> bool:
    """Write out what the measurements so far left dirty on the PostgreSQL server (CHECKPOINT),
    so that none pays for another's writes. Otherwise the checkpoint that the server starts
    every five minutes (checkpoint_timeout) lands in whatever part runs then, and its flush of
    the files the parts before wrote stalls commits: in a full run without this, it started at
    the first part of rounds 2 and 3 (agenda-decl's headline), both times. A checkpoint made
    here also restarts that five-minute timer. False when the role may not (PostgreSQL 15
    wants a superuser or pg_checkpoint)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        try:
            await conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            return False
    return True


# -- backlogs -----------------------------------------------------------------------------------


async def enqueue_batch(agenda: Agenda, name: str, payloads: Sequence[Any]) -> list[Job[Any]]:
    """One batch through ``now_many`` (the bulk enqueue of issue 14) when the agenda has it,
    else concurrent ``now()`` calls (what a caller could do before it existed)."""
    bulk = getattr(agenda, "now_many", None)  # getattr: this code runs with and without it
    if bulk is not None:
        return list(await bulk(name, list(payloads)))
    return list(await asyncio.gather(*(agenda.now(name, data) for data in payloads)))


async def fill(store: Store, name: str, count: int, batch: int, *,
               completed: bool = False) -> None:
    """Put ``count`` due jobs of ``name`` in the store (``completed``: finished ones, as a
    run leaves a one-off job: no next run, not locked, last run and finish stamped)."""
    agenda = attrs.evolve(store, channel=False).agenda()
    agenda.declare(name)
    await agenda.ready()
    for start in range(0, count, batch):
        payloads = [{"i": i} for i in range(start, min(count, start + batch))]
        jobs = await enqueue_batch(agenda, name, payloads)
        if completed:
            await _complete(agenda, jobs)
    await agenda.stop()


async def _complete(agenda: Agenda, jobs: list[Job[Any]]) -> None:
    finished = datetime.now(UTC)
    params = []
    for job in jobs:
        job.attrs.next_run_at = None
        job.attrs.locked_at = None
        job.attrs.last_run_at = finished
        job.attrs.last_finished_at = finished
        params.append(job.attrs)
    rejected = await agenda.repository.save_job_states(params)
    if rejected:
        raise RuntimeError(f"setup: {len(rejected)} completed-state writes were rejected")
