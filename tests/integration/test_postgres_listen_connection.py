"""The PostgreSQL LISTEN connection, against the real server: how it names itself, and how it
is lent for an idle worker's claim (``ConnectionLender``): the claim runs there, nothing heard
meanwhile is lost, and a lent connection that fails hands the claim to the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agenda_decl import Agenda, Job, JobId, JobNotification
from agenda_decl._clock import utcnow
from agenda_decl.backends.postgres import PostgresBackend, PostgresNotificationChannel
from agenda_decl.backends.postgres import queries as postgres_queries
from agenda_decl.connectors.postgres import ConnectionLender, open_pool, retrying, run
from agenda_decl.connectors.retry import Attempt
from agenda_decl.notifications.postgres import LISTEN_APPLICATION_NAME
from tests.backends import Inbox
from tests.backends.postgres import make_backend, unique_names
from tests.backends.servers import POSTGRES_URL

pytestmark = pytest.mark.asyncio


def notification(name: str) -> JobNotification:
    return JobNotification(job_id=JobId("id-1"), job_name=name, next_run_at=None, priority=0,
                           timestamp=utcnow())


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[PostgresBackend]:
    async with make_backend(tmp_path) as made:
        yield made


@pytest.mark.parametrize(("query", "expected"), [
    ("", LISTEN_APPLICATION_NAME), ("?application_name=billing-worker", "billing-worker")])
async def test_the_listen_connection_names_itself_unless_the_url_does(
    query: str, expected: str,
) -> None:
    """Operators tell the LISTEN connection from the pool's in pg_stat_activity by its
    application_name (its last query may be a claim); a name the URL gives is kept."""
    _, name = unique_names()
    channel = PostgresNotificationChannel(connection_string=POSTGRES_URL + query,
                                          channel_name=name)
    await channel.connect()
    try:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                (channel.listen_pid,))
            assert await cursor.fetchall() == [(expected,)]
    finally:
        await channel.disconnect()


async def test_an_idle_workers_claim_runs_on_the_listen_connection(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each job enqueued to an idle worker runs once, with its data, claimed by the server
    process that delivered its notification."""
    claimed_by: list[int] = []
    fetch_tuples = postgres_queries.fetch_tuples

    async def recording(conn: psycopg.AsyncConnection[Any], statement: Any,
                        params: Any) -> list[tuple[Any, ...]]:
        rows = await fetch_tuples(conn, statement, params)
        if rows:
            claimed_by.append(conn.info.backend_pid)
        return rows

    monkeypatch.setattr(postgres_queries, "fetch_tuples", recording)
    worker = Agenda(backend=backend, process_every="1 minute")
    ran: list[int] = []
    done = asyncio.Event()

    async def handler(job: Job[Any]) -> None:
        ran.append(job.attrs.data["i"])
        if len(ran) == 5:
            done.set()

    worker.define("probe", handler)
    await worker.start()
    await asyncio.sleep(0.2)  # past the first claim: idle
    for i in range(5):
        await worker.now("probe", {"i": i})
        await asyncio.sleep(0.05)
    await asyncio.wait_for(done.wait(), timeout=10)
    channel = backend.notification_channel
    assert isinstance(channel, PostgresNotificationChannel)
    listen_pid = channel.listen_pid
    await worker.stop()
    assert ran == [0, 1, 2, 3, 4]
    assert claimed_by == [listen_pid] * 5


async def test_notifications_heard_while_the_connection_is_lent_are_delivered() -> None:
    """A notification committed while a claim holds the LISTEN connection reaches the
    subscribers once the connection is back, after the one that lent it; the channel stays
    connected and its probe still answers."""
    _, name = unique_names()
    lender = ConnectionLender()
    publisher = PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=name)
    subscriber = PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=name,
                                             probe_interval=0.3)
    subscriber.lend_listener(lender)
    await publisher.connect()
    await subscriber.connect()
    inbox = Inbox()
    borrowed_pids: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    async def borrow() -> None:
        conn = lender.take()
        assert conn is not None, "the listener did not lend its connection"
        try:
            borrowed_pids.append(conn.info.backend_pid)
            await publisher.publish(notification("second"))  # committed while lent
            await conn.execute("SELECT pg_sleep(0.1)")
        finally:
            lender.give_back()

    def heard(item: JobNotification) -> None:
        inbox(item.job_name)
        if item.job_name == "first":
            tasks.append(asyncio.get_running_loop().create_task(borrow()))

    subscriber.subscribe(heard)
    try:
        await publisher.publish(notification("first"))
        assert await inbox.wait_for(2) == ["first", "second"]
        await asyncio.gather(*tasks)
        assert borrowed_pids == [subscriber.listen_pid]
        await asyncio.sleep(0.8)  # two probes on the connection that was lent
        await publisher.publish(notification("third"))
        assert await inbox.wait_for(3) == ["first", "second", "third"]
        assert subscriber.state == "connected"
    finally:
        await publisher.disconnect()
        await subscriber.disconnect()


async def test_a_lent_connection_that_fails_hands_the_work_to_the_pool() -> None:
    """The first attempt runs on the lent connection; when that fails as an outage would,
    the repeat runs on a pooled connection and its result is returned."""
    pool = await open_pool(POSTGRES_URL, max_size=2, name="lending-test", wait_timeout=10)
    lender = ConnectionLender()
    lent = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    await lent.close()  # dead: using it raises OperationalError
    attempts: list[tuple[int, bool]] = []

    async def work(conn: psycopg.AsyncConnection[Any], attempt: Attempt) -> int:
        attempts.append((attempt.number, conn is lent))
        cursor = await conn.execute("SELECT 41 + 1")
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    try:
        lender.offer(lent)
        answer = await run(pool, retrying("test", 5), work, lender=lender)
        await asyncio.wait_for(lender.withdraw(), timeout=1)  # given back after the failure
    finally:
        await pool.close()
    assert answer == 42
    assert attempts == [(1, True), (2, False)]
