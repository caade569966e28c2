"""Store outages on servers of the tests' own (tests/backends/private_servers.py): a
PostgreSQL restart, every client connection terminated, a Redis restart (with its
append-only file), a server that stays down past ``retry_for``; and the repeats that follow
a lost reply, which must never store a job twice or report a stored write as lost.

Producers enqueue and workers run while the server restarts: no job is lost, none runs
twice, and the producer sees no exception. ``AGENDA_TEST_LONG=1`` runs longer outages with
more jobs and workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from pymongo.errors import ServerSelectionTimeoutError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from agenda_decl import Agenda, Job, JobsQueryOptions
from agenda_decl.backends.mongo import MongoBackend
from agenda_decl.backends.postgres import PostgresBackend
from agenda_decl.backends.postgres import queries as pg_queries
from agenda_decl.backends.redis import RedisBackend
from agenda_decl.connectors import redis as redis_connectors
from agenda_decl.errors import BackendUnavailableError, LockLostError, StateWriteError
from agenda_decl.interfaces import AgendaBackend
from tests.backends.mongo import database as mongo_database
from tests.backends.mongo import unique_collection
from tests.backends.postgres import drop_table, unique_names
from tests.backends.private_servers import (
    PrivatePostgres,
    PrivateRedis,
    private_postgres,
    private_redis,
)
from tests.backends.redis import delete_keys, unique_prefix
from tests.backends.servers import POSTGRES_URL, REDIS_URL

__all__ = ["private_postgres", "private_redis"]  # fixtures, used by name

pytestmark = pytest.mark.timeout(240)

LONG = os.environ.get("AGENDA_TEST_LONG") == "1"
#: Jobs enqueued, worker schedulers, restarts, and how long the server stays down each time.
JOBS, WORKERS, RESTARTS, DOWN_FOR = (3000, 3, 3, 10.0) if LONG else (300, 2, 1, 1.0)


# -- producers and workers through restarts ---------------------------------------------------


class Ledger:
    """Every run of every job, by id; the errors each scheduler reported."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        #: What the notification channels reported (a lost LISTEN or subscriber connection,
        #: reconnect attempts while the server is down): expected during a restart.
        self.channel_errors: list[BaseException] = []

    def watch(self, agenda: Agenda) -> None:
        agenda.on("error", self.errors.append)
        if agenda.channel is not None:
            agenda.channel.on("error", self.channel_errors.append)

    def store_errors(self) -> list[BaseException]:
        """The errors that did not come from a channel."""
        return [e for e in self.errors if not any(e is c for c in self.channel_errors)]

    async def handler(self, job: Job[Any]) -> None:
        assert job.attrs.id is not None
        self.runs[str(job.attrs.id)] += 1
        await asyncio.sleep(0.01)


async def restarts_lose_nothing(
    make_backend: Callable[[], AgendaBackend], restart: Callable[[float], None]
) -> None:
    """Workers run and a producer enqueues ``JOBS`` jobs while the server restarts
    ``RESTARTS`` times: every job runs exactly once, every one is stored as completed, the
    producer never sees an exception, and no error is reported but the channels' (whose
    connections the restart cut)."""
    ledger = Ledger()
    workers = []
    for number in range(WORKERS):
        worker = Agenda(backend=make_backend(), name=f"worker-{number}",
                        process_every="200 ms", max_concurrency=10)
        worker.define("work", ledger.handler, concurrency=5, lock_lifetime="30 seconds")
        ledger.watch(worker)
        workers.append(worker)
    producer = Agenda(backend=make_backend(), name="producer")
    producer.declare("work")
    ledger.watch(producer)
    enqueued: list[str] = []

    async def produce() -> None:
        for number in range(JOBS):
            job = await producer.now("work", {"n": number})
            enqueued.append(str(job.attrs.id))
            await asyncio.sleep(0.005)

    async def restart_while_producing() -> None:
        for round_ in range(RESTARTS):
            while len(enqueued) < JOBS * (round_ + 1) // (RESTARTS + 2):
                await asyncio.sleep(0.01)
            await asyncio.to_thread(restart, DOWN_FOR)

    for worker in workers:
        await worker.start()
    try:
        await asyncio.gather(produce(), restart_while_producing())
        deadline = time.monotonic() + 90
        while set(ledger.runs) != set(enqueued) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for worker in workers:
            await worker.drain(timeout="20 seconds")
        completed = await producer.query_jobs(JobsQueryOptions(name="work", state="completed"))
    finally:
        for worker in workers:
            await worker.stop()
        await producer.stop()
    assert len(enqueued) == JOBS == len(set(enqueued))
    assert set(ledger.runs) == set(enqueued), f"lost: {len(set(enqueued) - set(ledger.runs))}"
    twice = {job_id: n for job_id, n in ledger.runs.items() if n > 1}
    assert not twice, f"ran more than once: {twice}"
    assert completed.total == JOBS
    assert ledger.store_errors() == []


async def test_a_postgres_restart_loses_nothing_and_runs_nothing_twice(
    private_postgres: PrivatePostgres,
) -> None:
    table, channel = unique_names()

    def make_backend() -> AgendaBackend:
        return PostgresBackend(connection_string=private_postgres.url, table_name=table,
                               channel_name=channel)

    await restarts_lose_nothing(make_backend, private_postgres.restart)


async def test_a_redis_restart_loses_nothing_and_runs_nothing_twice(
    private_redis: PrivateRedis,
) -> None:
    """With the append-only file fsynced on every write (the fixture's default): a Redis
    without persistence loses every key on a restart, which no client can ride out."""
    prefix = unique_prefix()

    def make_backend() -> AgendaBackend:
        return RedisBackend(connection_string=private_redis.url, key_prefix=prefix,
                            channel_name=f"{prefix}jobs")

    await restarts_lose_nothing(make_backend, private_redis.restart)


# -- every connection terminated --------------------------------------------------------------


async def terminate_every_client(url: str) -> None:
    """``pg_terminate_backend`` of every other client connection (what a restart or a
    failover does to them), and wait until they are gone."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        assert len(await cursor.fetchall()) >= 2
        for _ in range(100):
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            row = await cursor.fetchone()
            if row is not None and row[0] == 0:
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # the goodbye messages reach the client sockets


async def test_after_every_connection_is_terminated_nothing_reaches_the_application(
    private_postgres: PrivatePostgres,
) -> None:
    """The issue's symptom: ``now()`` right after ``pg_terminate_backend`` of every client
    connection raised ``AdminShutdown``, and the worker's next claims failed on dead pooled
    connections. Dead connections are now found before use: no statement even has to be
    repeated, and only the notification channel reports its lost connection."""
    table, channel_name = unique_names()
    backend = PostgresBackend(connection_string=private_postgres.url, table_name=table,
                              channel_name=channel_name)
    agenda = Agenda(backend=backend, process_every="200 ms")
    done: list[int] = []

    async def work(job: Job[dict[str, int]]) -> None:
        done.append(job.attrs.data["n"])

    agenda.define("work", work)
    completed: list[Job[Any]] = []
    agenda.on("complete", completed.append)  # after the end write
    errors: list[BaseException] = []
    channel_errors: list[BaseException] = []
    agenda.on("error", errors.append)
    assert backend.notification_channel is not None
    backend.notification_channel.on("error", channel_errors.append)
    await agenda.start()
    try:
        for n in range(5):  # several pooled connections in use
            await agenda.now("work", {"n": n})
        await eventually(lambda: len(completed) == 5)
        await terminate_every_client(private_postgres.url)
        for n in range(5, 10):
            await agenda.now("work", {"n": n})  # does not raise
        await eventually(lambda: len(completed) == 10)
        assert sorted(done) == list(range(10))
        result = await agenda.query_jobs(JobsQueryOptions(name="work", state="completed"))
        assert result.total == 10
    finally:
        await agenda.stop()
    assert backend.repository.retrying.retries == 0
    assert [e for e in errors if not any(e is c for c in channel_errors)] == []


# -- an outage longer than retry_for ----------------------------------------------------------


async def test_a_worker_keeps_running_through_an_outage_longer_than_its_bound(
    private_postgres: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's calls give up after ``retry_for`` (1 s) while the server stays down for
    4 s: it reports each as an ``error`` event, at a bounded rate, keeps polling, and runs
    everything once the server is back, including what a producer (default bound: 30 s)
    enqueued meanwhile without seeing an exception."""
    table, channel = unique_names()
    worker = Agenda(backend=PostgresBackend(connection_string=private_postgres.url,
                                            table_name=table, channel_name=channel,
                                            retry_for="1 second"),
                    process_every="200 ms")
    ran: list[int] = []

    async def work(job: Job[dict[str, int]]) -> None:
        ran.append(job.attrs.data["n"])

    worker.define("work", work)
    ledger = Ledger()
    ledger.watch(worker)
    producer = Agenda(backend=PostgresBackend(connection_string=private_postgres.url,
                                              table_name=table, disable_notifications=True))
    producer.declare("work")
    await worker.start()
    try:
        for n in range(5):
            await producer.now("work", {"n": n})
        await eventually(lambda: len(ran) == 5)
        caplog.clear()
        private_postgres.stop()
        outage_started = time.monotonic()

        async def enqueue_during_the_outage() -> None:
            for n in range(5, 10):
                await producer.now("work", {"n": n})

        enqueuing = asyncio.create_task(enqueue_during_the_outage())
        await asyncio.sleep(4)
        await asyncio.to_thread(private_postgres.start)
        outage = time.monotonic() - outage_started
        await enqueuing
        await eventually(lambda: sorted(ran) == list(range(10)))
    finally:
        await worker.stop()
        await producer.stop()
    store_errors = ledger.store_errors()
    assert store_errors, "the worker reported nothing while the server was down"
    # A run whose end write met the outage reports it as StateWriteError (no success).
    assert all(isinstance(e, BackendUnavailableError)
               or (isinstance(e, StateWriteError)
                   and isinstance(e.__cause__, BackendUnavailableError))
               for e in store_errors), store_errors
    assert len(store_errors) <= 3 * (outage / 1.0 + 2)  # claims, clock, per retry_for
    ours = [r for r in caplog.records
            if r.name.startswith("agenda_decl") and r.levelno >= logging.WARNING]
    assert len(ours) <= outage + 2, [r.getMessage() for r in ours]


# -- past the bound ----------------------------------------------------------------------------


async def test_postgres_down_past_retry_for_is_one_clear_error(
    private_postgres: PrivatePostgres,
) -> None:
    url = private_postgres.url_with_password("Sup3r-S3cret")
    backend = PostgresBackend(connection_string=url, retry_for="1 second",
                              disable_notifications=True)
    agenda = Agenda(backend=backend)
    agenda.declare("work")
    await agenda.ready()
    try:
        private_postgres.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as raised:
            await agenda.now("work")
        elapsed = time.monotonic() - started
    finally:
        await agenda.stop()
    message = str(raised.value)
    assert message.startswith(
        f"PostgreSQL at postgresql://postgres:***@127.0.0.1:{private_postgres.port}/postgres "
        "unreachable for 1 s: "
    ), message
    assert "Sup3r-S3cret" not in message
    assert 1.0 <= elapsed < 6.0


async def test_redis_down_past_retry_for_is_one_clear_error() -> None:
    server = PrivateRedis(password="Sup3r-S3cret")
    server.start()
    backend = RedisBackend(connection_string=server.url, key_prefix=unique_prefix(),
                           retry_for="1 second", disable_notifications=True)
    agenda = Agenda(backend=backend)
    agenda.declare("work")
    try:
        await agenda.ready()
        server.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as raised:
            await agenda.now("work")
        elapsed = time.monotonic() - started
        await agenda.stop()
    finally:
        server.remove()
    message = str(raised.value)
    assert message.startswith(
        f"Redis at redis://:***@127.0.0.1:{server.port}/0 unreachable for 1 s: "
    ), message
    assert "Sup3r-S3cret" not in message
    assert 1.0 <= elapsed < 6.0


async def test_a_frozen_redis_server_is_one_clear_error_then_serves_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that stops answering without closing its connections (a stopped process; a
    host gone behind a network that drops packets) fails each command at the client's socket
    timeout (``SOCKET_TIMEOUT``, here made 0.5 s), is retried for retry_for, and the
    enqueue raises one clear error instead of waiting for ever. Thawed, the server serves
    again, and the enqueue that failed stored its job once: every attempt carried its id."""
    monkeypatch.setattr(redis_connectors, "SOCKET_TIMEOUT", 0.5)
    server = PrivateRedis(persistent=False)
    server.start()
    backend = RedisBackend(connection_string=server.url,
                           key_prefix=unique_prefix(), retry_for="1 second",
                           disable_notifications=True)
    agenda = Agenda(backend=backend)
    agenda.declare("work")
    try:
        await agenda.ready()
        await agenda.now("work", {"i": 0})
        server.freeze()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as raised:
            await agenda.now("work", {"i": 1})
        elapsed = time.monotonic() - started
        server.thaw()
        await agenda.now("work", {"i": 2})
        result = await agenda.query_jobs(JobsQueryOptions(name="work"))
        stored = sorted(job.data["i"] for job in result.jobs)
        await agenda.stop()
    finally:
        server.remove()
    assert str(raised.value) == (
        f"Redis at redis://127.0.0.1:{server.port}/0 unreachable for 1 s: "
        f"TimeoutError: Timeout reading from 127.0.0.1:{server.port}")
    assert 1.0 <= elapsed < 4.0
    assert stored == [0, 1, 2]


# -- repeats after a lost reply (shared servers) ---------------------------------------------


@pytest.fixture
def lose_first_reply(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``lose_first_reply(text)``: the first PostgreSQL statement containing ``text`` is
    executed, then its reply is "lost" (the connection error a server gone after the commit
    gives)."""
    armed: list[str] = []
    real_fetch = pg_queries.fetch

    async def fetch(conn: Any, statement: Any, params: Any, **options: Any) -> list[dict[str, Any]]:
        rows = await real_fetch(conn, statement, params, **options)
        if isinstance(statement, bytes):  # statements rendered once (backends.postgres)
            text = statement.decode()
        else:
            text = statement.as_string(conn) if hasattr(statement, "as_string") else str(statement)
        if armed and armed[0] in text:
            armed.clear()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return rows

    monkeypatch.setattr(pg_queries, "fetch", fetch)
    yield armed.append
    # A fault never injected would let the test pass without testing anything.
    assert not armed, f"no statement containing {armed[0]!r} went through queries.fetch"


async def test_postgres_an_insert_repeated_after_a_lost_reply_stores_one_job(
    lose_first_reply: Callable[[str], None],
) -> None:
    table, _ = unique_names()
    agenda = Agenda(backend=PostgresBackend(connection_string=POSTGRES_URL, table_name=table,
                                            disable_notifications=True))
    agenda.declare("work")
    try:
        await agenda.ready()
        lose_first_reply("INSERT INTO")
        job = await agenda.now("work", {"n": 1})
        result = await agenda.query_jobs(JobsQueryOptions(name="work"))
        assert [stored.id for stored in result.jobs] == [job.attrs.id]
        backend = agenda.backend
        assert isinstance(backend, PostgresBackend)
        assert backend.repository.retrying.retries == 1
        lose_first_reply("INSERT INTO")
        jobs = await agenda.now_many("work", [{"n": n} for n in range(2, 12)])
        result = await agenda.query_jobs(JobsQueryOptions(name="work"))
        assert sorted(str(stored.id) for stored in result.jobs) == sorted(
            str(j.attrs.id) for j in [job, *jobs])
        assert [j.attrs.data for j in jobs] == [{"n": n} for n in range(2, 12)]
        assert backend.repository.retrying.retries == 2
    finally:
        await agenda.stop()
        await drop_table(table)


async def test_postgres_end_writes_repeated_after_a_lost_reply_are_not_lost_locks(
    lose_first_reply: Callable[[str], None],
) -> None:
    """The repeat of a fenced end write is rejected by its own fence (the first attempt
    unlocked the job); the stored row shows it was written, so it counts as written."""
    table, _ = unique_names()
    backend = PostgresBackend(connection_string=POSTGRES_URL, table_name=table,
                              disable_notifications=True)
    agenda = Agenda(backend=backend, name="the-writer")
    agenda.declare("work")
    try:
        await agenda.ready()
        await agenda.now("work")
        await agenda.now("work")
        repository = backend.repository
        now = agenda.clock.now()
        claimed = await repository.get_next_jobs_to_run(
            "work", now, now, 2, now, last_modified_by="the-writer")
        tokens = {str(job.id): job.locked_at for job in claimed if job.locked_at}
        for job in claimed:
            job.locked_at = None
            job.last_finished_at = agenda.clock.now()
        lose_first_reply("UPDATE")
        assert await repository.save_job_states(
            claimed, last_modified_by="the-writer", lock_tokens=tokens) == []
        for job in claimed:
            stored = await repository.get_job_by_id(str(job.id))
            assert stored is not None and stored.locked_at is None
        assert repository.retrying.retries == 1
        # A write that really lost its lock is still rejected.
        with pytest.raises(LockLostError):
            await repository.save_job_state(claimed[0], last_modified_by="another-writer",
                                            lock_token=tokens[str(claimed[0].id)])
    finally:
        await agenda.stop()
        await drop_table(table)


async def test_redis_an_insert_repeated_after_a_lost_reply_stores_one_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique_prefix()
    backend = RedisBackend(connection_string=REDIS_URL, key_prefix=prefix,
                           disable_notifications=True)
    agenda = Agenda(backend=backend)
    agenda.declare("work")
    repository = backend.repository
    try:
        await agenda.ready()
        from agenda_decl.backends.redis import scripts

        real = repository._scripts[scripts.INSERT_MANY]
        lost: list[bool] = []  # one entry per enqueue: whether its first reply was lost

        async def insert_then_lose_reply(**kwargs: Any) -> Any:
            reply = await real(**kwargs)
            if not lost[-1]:
                lost[-1] = True
                raise RedisConnectionError("Connection closed by server.")
            return reply

        monkeypatch.setitem(repository._scripts, scripts.INSERT_MANY, insert_then_lose_reply)
        lost.append(False)
        job = await agenda.now("work", {"n": 1})
        result = await agenda.query_jobs(JobsQueryOptions(name="work"))
        assert [stored.id for stored in result.jobs] == [job.attrs.id]
        assert lost == [True] and repository.retrying.retries == 1
        lost.append(False)
        jobs = await agenda.now_many("work", [{"n": n} for n in range(2, 12)])
        result = await agenda.query_jobs(JobsQueryOptions(name="work"))
        assert sorted(str(stored.id) for stored in result.jobs) == sorted(
            str(j.attrs.id) for j in [job, *jobs])
        assert repository.retrying.retries == 2
    finally:
        await agenda.stop()
        client = Redis.from_url(REDIS_URL)
        await delete_keys(client, prefix)
        await client.aclose()


# -- MongoDB: pymongo waits and retries; what is left is one clear error -----------------------


REFUSED = "127.0.0.1:27017: [Errno 111] Connection refused"


async def test_mongodb_unreachable_past_pymongos_own_retries_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with mongo_database() as db:
        collection = unique_collection()
        backend = MongoBackend(mongo=db, collection=collection)
        agenda = Agenda(backend=backend)
        agenda.declare("work")
        try:
            await agenda.ready()

            def unreachable(*_: Any, **__: Any) -> Any:
                raise ServerSelectionTimeoutError(REFUSED)

            jobs = db.get_collection(collection)
            monkeypatch.setattr(type(jobs), "insert_one", unreachable)
            monkeypatch.setattr(type(jobs), "insert_many", unreachable)
            with pytest.raises(BackendUnavailableError) as raised:
                await agenda.now("work")
            with pytest.raises(BackendUnavailableError, match="unreachable"):
                await agenda.now_many("work", [{"n": 1}, {"n": 2}])
        finally:
            await agenda.stop()
            db.drop_collection(collection)
    assert str(raised.value) == (
        f"MongoDB at <database {db.name!r} passed in> unreachable: ServerSelectionTimeoutError: "
        f"{REFUSED}"
    )


# -- helpers ----------------------------------------------------------------------------------


async def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
