"""An enqueue in one round trip on the real servers: on PostgreSQL the INSERT carries its
NOTIFY, on Redis the insert script PUBLISHes, when the channel is the backend's own; the
notification is the one Node Agenda's listeners read, one per job name and batch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis

from agenda_decl import Agenda, JobNotification, NotificationChannel
from agenda_decl.backends.postgres import PostgresBackend, PostgresNotificationChannel
from agenda_decl.backends.postgres import queries as pg_queries
from agenda_decl.backends.redis import RedisNotificationChannel, scripts
from agenda_decl.backends.redis.repository import RedisJobRepository
from agenda_decl.interfaces import AgendaBackend
from tests.backends import postgres, redis
from tests.backends.servers import POSTGRES_URL, REDIS_URL

pytestmark = pytest.mark.asyncio

#: The keys of a job notification, in the order Node Agenda 6.2.6 writes them.
NODE_KEYS = ["jobId", "jobName", "nextRunAt", "priority", "timestamp", "source"]


@pytest.fixture(params=["postgres", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    module = postgres if request.param == "postgres" else redis
    async with module.make_backend(tmp_path) as made:
        yield made


def listener_of(backend: AgendaBackend) -> NotificationChannel:
    """A second channel on the backend's channel name, with connections of its own."""
    own = backend.notification_channel
    assert own is not None
    if isinstance(backend, PostgresBackend):
        assert isinstance(own, PostgresNotificationChannel)
        return PostgresNotificationChannel(connection_string=POSTGRES_URL,
                                           channel_name=own.channel_name)
    assert isinstance(own, RedisNotificationChannel)
    return RedisNotificationChannel(connection_string=REDIS_URL, channel_name=own.channel_name)


class RoundTrips:
    """Counts the statements (PostgreSQL) or script calls and publishes (Redis) of the store,
    and fails the channel's own publish: an enqueue must not need it."""

    def __init__(self, backend: AgendaBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        if isinstance(backend, PostgresBackend):
            real_fetch = pg_queries.fetch

            async def fetch(conn: Any, statement: Any, params: Any) -> Any:
                self.count += 1
                return await real_fetch(conn, statement, params)

            monkeypatch.setattr(pg_queries, "fetch", fetch)
        else:
            repository = backend.repository
            assert isinstance(repository, RedisJobRepository)
            real = repository._scripts[scripts.INSERT_MANY]

            async def insert(**kwargs: Any) -> Any:
                self.count += 1
                return await real(**kwargs)

            monkeypatch.setitem(repository._scripts, scripts.INSERT_MANY, insert)
        channel = backend.notification_channel
        assert channel is not None

        async def no_publish(notification: JobNotification) -> None:
            raise AssertionError(f"published separately: {notification}")

        monkeypatch.setattr(channel, "publish", no_publish)


async def heard(channel: NotificationChannel) -> list[JobNotification]:
    """What ``channel`` hears from now on (connected here)."""
    notes: list[JobNotification] = []
    channel.subscribe(notes.append)
    await channel.connect()
    return notes


async def wait_for(notes: list[JobNotification], count: int) -> list[JobNotification]:
    async with asyncio.timeout(10):
        while len(notes) < count:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # a duplicate would arrive by now
    return notes


async def test_now_is_one_round_trip_and_its_notification_is_nodes(
    backend: AgendaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    agenda = Agenda(backend, name="enqueuer")
    agenda.declare("mail")
    listener = listener_of(backend)
    try:
        await agenda.ready()
        notes = await heard(listener)
        trips = RoundTrips(backend, monkeypatch)
        job = await agenda.now("mail", {"to": "a@b.c"})
        assert trips.count == 1
        [note] = await wait_for(notes, 1)
        assert (note.job_id, note.job_name, note.next_run_at, note.priority, note.source) == (
            job.attrs.id, "mail", job.attrs.next_run_at, 0, "enqueuer")
    finally:
        await listener.disconnect()
        await agenda.stop(close_connection=False)


async def test_the_payload_is_the_one_node_listeners_read(tmp_path: Path) -> None:
    """Read with a plain LISTEN: the exact JSON, keys in Node's order."""
    async with postgres.make_backend(tmp_path) as backend:
        channel = backend.notification_channel
        assert isinstance(channel, PostgresNotificationChannel)
        agenda = Agenda(backend, name="enqueuer")
        agenda.declare("mail")
        conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        try:
            await conn.execute(f'LISTEN "{channel.channel_name}"')
            job = await agenda.now("mail")
            async for note in conn.notifies(timeout=5, stop_after=1):
                payload = json.loads(note.payload)
            assert list(payload) == NODE_KEYS
            assert payload["jobId"] == job.attrs.id
            assert payload["jobName"] == "mail"
        finally:
            await conn.close()
            await agenda.stop(close_connection=False)


async def test_now_many_is_one_round_trip_and_one_notification_per_batch(
    backend: AgendaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    agenda = Agenda(backend, name="enqueuer")
    agenda.declare("mail")
    listener = listener_of(backend)
    try:
        await agenda.ready()
        notes = await heard(listener)
        trips = RoundTrips(backend, monkeypatch)
        jobs = await agenda.now_many("mail", [{"n": n} for n in range(2500)])
        assert trips.count == 3  # batches of 1000
        await wait_for(notes, 3)
        assert [note.job_id for note in notes] == [
            jobs[0].attrs.id, jobs[1000].attrs.id, jobs[2000].attrs.id]
    finally:
        await listener.disconnect()
        await agenda.stop(close_connection=False)


async def test_another_channel_gets_the_notification_published_separately(
    tmp_path: Path,
) -> None:
    """Redis storage with PostgreSQL notifications: the insert script publishes nothing; the
    Agenda publishes on its channel once the jobs are stored."""
    async with redis.make_backend(tmp_path) as backend:
        _, name = postgres.unique_names()
        channel = PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=name)
        listener = PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=name)
        agenda = Agenda(backend, notification_channel=channel)
        agenda.declare("mail")
        client = Redis.from_url(REDIS_URL)
        pubsub = client.pubsub()
        own = backend.notification_channel
        assert isinstance(own, RedisNotificationChannel)
        try:
            await pubsub.subscribe(own.channel_name)
            notes = await heard(listener)
            jobs = await agenda.now_many("mail", [{"n": 1}, {"n": 2}])
            await wait_for(notes, 1)
            assert [note.job_id for note in notes] == [jobs[0].attrs.id]
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3)
            assert message is None
        finally:
            await pubsub.aclose()
            await client.aclose()
            await listener.disconnect()
            await agenda.stop(close_connection=False)
