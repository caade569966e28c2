"""PostgreSQL-specific behaviour on the real server: Agenda v6's layout, sharing the table with
a Node process, pools passed in, secrets, and the LISTEN connection under faults."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from agenda_decl import Agenda, Job, JobId, JobNotification, JobStateNotification
from agenda_decl._clock import utcnow
from agenda_decl._model import JobParameters, RemoveJobsOptions
from agenda_decl.backends.postgres import (
    MAX_NOTIFY_BYTES,
    PostgresBackend,
    PostgresJobRepository,
    PostgresNotificationChannel,
)
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError, NotConnectedError
from agenda_decl.notifications.base import ReconnectOptions
from agenda_decl.testing import EventRecorder
from tests.backends import Inbox
from tests.backends.postgres import drop_table, make_backend, unique_names
from tests.backends.servers import POSTGRES_URL

#: The columns of the table @agendajs/postgres-backend 3.0.6 creates (its schema.js), with
#: information_schema's data_type and is_nullable.
AGENDA_COLUMNS = {
    "id": ("uuid", "NO"),
    "name": ("character varying", "NO"),
    "priority": ("integer", "NO"),
    "next_run_at": ("timestamp with time zone", "YES"),
    "type": ("character varying", "NO"),
    "locked_at": ("timestamp with time zone", "YES"),
    "last_finished_at": ("timestamp with time zone", "YES"),
    "failed_at": ("timestamp with time zone", "YES"),
    "fail_count": ("integer", "YES"),
    "fail_reason": ("text", "YES"),
    "repeat_timezone": ("character varying", "YES"),
    "last_run_at": ("timestamp with time zone", "YES"),
    "repeat_interval": ("character varying", "YES"),
    "data": ("jsonb", "YES"),
    "repeat_at": ("character varying", "YES"),
    "disabled": ("boolean", "YES"),
    "progress": ("real", "YES"),
    "fork": ("boolean", "YES"),
    "last_modified_by": ("character varying", "YES"),
    "debounce_started_at": ("timestamp with time zone", "YES"),
    "start_date": ("timestamp with time zone", "YES"),
    "end_date": ("timestamp with time zone", "YES"),
    "skip_days": ("jsonb", "YES"),
    "created_at": ("timestamp with time zone", "YES"),
    "updated_at": ("timestamp with time zone", "YES"),
}

#: What @agendajs/postgres-backend 3.0.6 runs on connect (dist/schema.js, verbatim but for the
#: table name: CREATE TABLE, its three migrations, the four indexes, the trigger). The interop
#: suite (tests/interop) runs the real package; these tests need no Node.
NODE_SCHEMA = """
CREATE TABLE IF NOT EXISTS "{t}" (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    next_run_at TIMESTAMPTZ,
    type VARCHAR(10) NOT NULL DEFAULT 'normal' CHECK (type IN ('normal', 'single')),
    locked_at TIMESTAMPTZ,
    last_finished_at TIMESTAMPTZ,
    failed_at TIMESTAMPTZ,
    fail_count INTEGER DEFAULT NULL,
    fail_reason TEXT,
    repeat_timezone VARCHAR(100),
    last_run_at TIMESTAMPTZ,
    repeat_interval VARCHAR(255),
    data JSONB DEFAULT '{{}}'::jsonb,
    repeat_at VARCHAR(255),
    disabled BOOLEAN DEFAULT FALSE,
    progress REAL,
    fork BOOLEAN DEFAULT FALSE,
    last_modified_by VARCHAR(255),
    debounce_started_at TIMESTAMPTZ,
    start_date TIMESTAMPTZ,
    end_date TIMESTAMPTZ,
    skip_days JSONB,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
ALTER TABLE "{t}" ADD COLUMN IF NOT EXISTS start_date TIMESTAMPTZ;
ALTER TABLE "{t}" ADD COLUMN IF NOT EXISTS end_date TIMESTAMPTZ;
ALTER TABLE "{t}" ADD COLUMN IF NOT EXISTS skip_days JSONB;
CREATE INDEX IF NOT EXISTS "{t}_find_and_lock_idx"
    ON "{t}" (name, next_run_at, priority DESC, locked_at, disabled) WHERE disabled = FALSE;
CREATE UNIQUE INDEX IF NOT EXISTS "{t}_single_job_idx" ON "{t}" (name) WHERE type = 'single';
CREATE INDEX IF NOT EXISTS "{t}_locked_at_idx" ON "{t}" (locked_at) WHERE locked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS "{t}_next_run_at_idx"
    ON "{t}" (next_run_at) WHERE next_run_at IS NOT NULL;
CREATE OR REPLACE FUNCTION update_{t}_updated_at()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS "{t}_updated_at_trigger" ON "{t}";
CREATE TRIGGER "{t}_updated_at_trigger"
BEFORE UPDATE ON "{t}"
FOR EACH ROW
EXECUTE FUNCTION update_{t}_updated_at();
"""
#: How @agendajs/postgres-backend 3.0.6 inserts a plain job (PostgresJobRepository.js
#: insertJob): skipDays as JSON.stringify(array), data as JSON.stringify(data), or NULL when
#: the job has none.
NODE_INSERT = """
INSERT INTO "{t}" (name, priority, next_run_at, type, repeat_timezone, repeat_interval, data,
                   repeat_at, disabled, fork, last_modified_by, start_date, end_date, skip_days)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
"""


async def admin() -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)


async def rows(query: sql.Composed | str, params: Any = ()) -> list[tuple[Any, ...]]:
    async with await admin() as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall() if cursor.description else []


async def eventually(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10) -> None:
    """Poll ``predicate`` until it holds (fails the test after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if await result if isinstance(result, Awaitable) else result:
                return
            await asyncio.sleep(0.02)


def notification(name: str = "job", **fields: Any) -> JobNotification:
    values: dict[str, Any] = {"job_id": JobId("id-1"), "job_name": name, "next_run_at": None,
                              "priority": 0, "timestamp": utcnow()}
    return JobNotification(**{**values, **fields})


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[PostgresBackend]:
    async with make_backend(tmp_path) as made:
        yield made


@pytest.fixture
async def channels() -> AsyncIterator[tuple[PostgresNotificationChannel, ...]]:
    """A connected publisher and subscriber on a channel of their own."""
    _, name = unique_names()
    publisher = PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=name)
    subscriber = PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=name)
    await publisher.connect()
    await subscriber.connect()
    yield publisher, subscriber
    await publisher.disconnect()
    await subscriber.disconnect()


# -- layout -----------------------------------------------------------------------------------


async def test_table_columns_and_types_are_agendas(backend: PostgresBackend) -> None:
    table = backend.repository.table_name
    found = await rows(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = %s", (table,)
    )
    assert {name: (kind, null) for name, kind, null in found} == AGENDA_COLUMNS


async def test_indexes_and_trigger_have_agendas_names(backend: PostgresBackend) -> None:
    t = backend.repository.table_name
    indexes = dict(await rows("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                              (t,)))
    assert set(indexes) == {f"{t}_pkey", f"{t}_find_and_lock_idx", f"{t}_single_job_idx",
                            f"{t}_locked_at_idx", f"{t}_next_run_at_idx", f"{t}_claim_due_idx",
                            f"{t}_next_run_desc_idx", f"{t}_next_run_asc_idx", f"{t}_failed_idx",
                            f"{t}_name_idx"}
    assert indexes[f"{t}_find_and_lock_idx"].endswith(
        "(name, next_run_at, priority DESC, locked_at, disabled) WHERE (disabled = false)")
    assert "UNIQUE" in indexes[f"{t}_single_job_idx"]
    assert indexes[f"{t}_single_job_idx"].endswith("WHERE ((type)::text = 'single'::text)")
    triggers = await rows(
        "SELECT tgname, tgfoid::regproc::text FROM pg_trigger "
        "WHERE tgrelid = %s::regclass AND NOT tgisinternal", (t,)
    )
    assert triggers == [(f"{t}_updated_at_trigger", f"update_{t}_updated_at")]


async def test_trigger_keeps_updated_at_current(backend: PostgresBackend) -> None:
    saved = await backend.repository.save_job(JobParameters(name="t", next_run_at=utcnow()))
    table = sql.Identifier(backend.repository.table_name)
    old = datetime(2000, 1, 1, tzinfo=UTC)
    await rows(sql.SQL("UPDATE {} SET updated_at = %s, created_at = %s").format(table),
               (old, old))
    ((created, updated),) = await rows(
        sql.SQL("SELECT created_at, updated_at FROM {} WHERE id = %s").format(table), (saved.id,)
    )
    assert created == old
    assert updated > old


async def test_connecting_again_changes_nothing(backend: PostgresBackend) -> None:
    table = backend.repository.table_name
    again = PostgresBackend(connection_string=POSTGRES_URL, table_name=table)
    await again.connect()
    await again.disconnect()
    count = await rows("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass "
                       "AND NOT tgisinternal", (table,))
    assert count == [(1,)]


async def test_processes_creating_the_schema_together_do_not_collide() -> None:
    table, _ = unique_names()
    backends = [PostgresBackend(connection_string=POSTGRES_URL, table_name=table)
                for _ in range(4)]
    try:
        await asyncio.gather(*(b.connect() for b in backends))
        saved = await backends[0].repository.save_job(JobParameters(name="x"))
        assert await backends[3].repository.get_job_by_id(str(saved.id)) is not None
    finally:
        for made in backends:
            await made.disconnect()
        await drop_table(table)


# -- sharing the table with Node Agenda v6 -----------------------------------------------------


async def run_script(script: str) -> None:
    """Several statements in one string (no parameters), as Node's backend sends them."""
    async with await admin() as conn:
        await conn.execute(script.encode())


async def schema_objects(table: str) -> tuple[Any, ...]:
    """The columns with their types, the indexes and the triggers of ``table``."""
    columns = await rows("SELECT column_name, udt_name, column_default FROM "
                         "information_schema.columns WHERE table_name = %s ORDER BY 1", (table,))
    indexes = await rows("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
                         "ORDER BY 1", (table,))
    triggers = await rows("SELECT tgname, tgfoid::regproc::text FROM pg_trigger "
                          "WHERE tgrelid = %s::regclass AND NOT tgisinternal", (table,))
    return columns, indexes, triggers


#: agenda-decl's own indexes: the claim's and the job list's.
OWN_INDEXES = (
    "_claim_due_idx", "_next_run_desc_idx", "_next_run_asc_idx", "_failed_idx", "_name_idx")


def nodes_part(schema: tuple[Any, ...], table: str) -> tuple[Any, ...]:
    """``schema`` without agenda-decl's own indexes, which must be there (they are the one
    thing a connect adds to Node's table)."""
    columns, indexes, triggers = schema
    own = [index for index in indexes if index[0] in {table + s for s in OWN_INDEXES}]
    assert len(own) == len(OWN_INDEXES), indexes
    return columns, [index for index in indexes if index not in own], triggers


async def test_a_table_made_by_node_agenda_is_adopted_and_shared() -> None:
    table, _ = unique_names()
    await run_script(NODE_SCHEMA.format(t=table))
    made_by_node = await schema_objects(table)
    due = utcnow() - timedelta(seconds=5)
    insert = NODE_INSERT.format(t=table)
    ((node_id,),) = await rows(insert, (
        "node-job", 10, due, "normal", None, "60000", json.dumps({"from": "node"}), None, False,
        False, "node-worker", None, None, json.dumps([0, 6])))
    ((bare_id,),) = await rows(insert, (
        "node-bare", 0, None, "normal", None, None, None, None, False, False, None, None, None,
        None))
    repository = PostgresJobRepository(connection_string=POSTGRES_URL, table_name=table)
    try:
        await repository.connect()
        # Nothing of Node's changed; the one addition is agenda-decl's claim index.
        assert nodes_part(await schema_objects(table), table) == made_by_node
        stored = await repository.get_job_by_id(str(node_id))
        assert stored is not None
        assert (stored.name, stored.data, stored.repeat_interval, stored.skip_days) == (
            "node-job", {"from": "node"}, 60000, [0, 6])
        bare = await repository.get_job_by_id(str(bare_id))
        assert bare is not None and bare.data is None
        now = utcnow()
        claimed = await repository.get_next_job_to_run("node-job", now, now - timedelta(minutes=10))
        assert claimed is not None and claimed.id == str(node_id)
        claimed.last_run_at = now
        await repository.save_job_state(claimed, lock_token=claimed.locked_at)
        ours = await repository.save_job(JobParameters(name="py-job", data={"a": 1},
                                                       skip_days=[0, 6]))
        empty = await repository.save_job(JobParameters(name="py-job"))
        # What Node's rowToJob reads back: its own columns in its own encodings.
        query = sql.SQL("SELECT type, data, disabled, fork, skip_days, jsonb_typeof(skip_days) "
                        "FROM {} WHERE id = %s").format(sql.Identifier(table))
        assert await rows(query, (ours.id,)) == [("normal", {"a": 1}, False, False, [0, 6],
                                                  "array")]
        assert await rows(query, (empty.id,)) == [("normal", None, False, False, None, None)]
    finally:
        await repository.close()
        await drop_table(table)


async def test_a_table_of_agenda_decl_0_1_is_migrated_at_connect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """agenda-decl 0.1 made skip_days INTEGER[]: the first connect converts it to Node's JSONB,
    keeping every value, and later connects find nothing to do."""
    from tests.interop.legacy import make_postgres

    table, _ = unique_names()
    await make_postgres(table)
    node_table, _ = unique_names()
    await run_script(NODE_SCHEMA.format(t=node_table))
    repository = PostgresJobRepository(connection_string=POSTGRES_URL, table_name=table)
    try:
        with caplog.at_level(logging.WARNING, logger="agenda_decl.backends.postgres"):
            await repository.connect()
        assert "from INTEGER[] to JSONB" in caplog.text
        columns, indexes, triggers = nodes_part(await schema_objects(table), table)
        node_columns, node_indexes, node_triggers = await schema_objects(node_table)
        assert columns == node_columns
        assert [d.replace(table, "T") for _, d in indexes] == [
            d.replace(node_table, "T") for _, d in node_indexes]
        assert len(triggers) == len(node_triggers) == 1
        by_name = {job.name: job for job in (await repository.query_jobs()).jobs}
        assert by_name["legacy-weekdays"].skip_days == [0, 6]
        assert by_name["legacy-queued"].skip_days is None
        query = sql.SQL("SELECT jsonb_typeof(skip_days) FROM {} WHERE name = %s").format(
            sql.Identifier(table))
        assert await rows(query, ("legacy-weekdays",)) == [("array",)]
        caplog.clear()
        again = PostgresJobRepository(connection_string=POSTGRES_URL, table_name=table)
        await again.connect()
        await again.close()
        assert "INTEGER[]" not in caplog.text
    finally:
        await repository.close()
        await drop_table(table)
        await drop_table(node_table)


async def test_a_table_with_other_column_types_is_refused() -> None:
    table, _ = unique_names()
    await run_script(NODE_SCHEMA.format(t=table))
    await run_script(f'ALTER TABLE "{table}" ALTER COLUMN priority TYPE bigint')
    repository = PostgresJobRepository(connection_string=POSTGRES_URL, table_name=table)
    try:
        with pytest.raises(InvalidOptionError, match="priority is int8, expected int4"):
            await repository.connect()
    finally:
        await repository.close()
        await drop_table(table)


async def test_claims_stamp_with_the_database_clock(backend: PostgresBackend) -> None:
    repository = backend.repository
    await repository.save_job(JobParameters(name="clock", next_run_at=utcnow()))
    db_now = await repository.server_now()
    assert db_now is not None and db_now.tzinfo is not None
    claimed = await repository.get_next_job_to_run(
        "clock", db_now + timedelta(seconds=5), db_now - timedelta(minutes=10)
    )
    assert claimed is not None and claimed.locked_at is not None
    assert claimed.locked_at >= db_now
    assert claimed.locked_at.microsecond % 1000 == 0


async def test_batched_state_writes_in_one_statement(backend: PostgresBackend) -> None:
    repository = backend.repository
    first, second, third, gone = [
        await repository.save_job(JobParameters(name="batch", next_run_at=utcnow()))
        for _ in range(4)
    ]
    await repository.remove_jobs(RemoveJobsOptions(id=gone.id))
    now = utcnow()
    first.locked_at, first.progress = now, 10
    later = attrs.evolve(first, locked_at=None, last_finished_at=now, progress=100.0)
    second.fail_count, second.fail_reason, second.failed_at = 1, "x" * 20_000, now
    wrong_name = attrs.evolve(third, name="other-name", fail_count=9)
    missing = await repository.save_job_states(
        [first, second, gone, later, wrong_name, attrs.evolve(gone, id=JobId("not-a-uuid"))],
        last_modified_by="w1",
    )
    assert sorted(missing) == sorted([str(gone.id), str(third.id), "not-a-uuid"])
    stored = [await repository.get_job_by_id(str(j.id)) for j in (first, second, third)]
    assert stored[0] is not None and stored[1] is not None and stored[2] is not None
    # The last write requested for a job wins.
    assert (stored[0].locked_at, stored[0].last_finished_at, stored[0].progress) == (
        None, now, 100.0)
    assert (stored[1].fail_count, stored[1].last_modified_by) == (1, "w1")
    assert stored[1].fail_reason is not None and len(stored[1].fail_reason) <= 8000
    assert stored[2].fail_count is None
    assert await repository.save_job_states([]) == []


async def test_a_batch_of_alike_state_writes_is_fenced_as_one(backend: PostgresBackend) -> None:
    """Jobs claimed together share their lock, so a batch of their writes sends each column
    once (``update_states``' shared values): every write lands under the claim's lock, none
    under a lock one millisecond off, and one differing job is written as it says."""
    repository = backend.repository
    for _ in range(3):
        await repository.save_job(JobParameters(name="alike", next_run_at=utcnow()))
    now = utcnow()
    claimed = await repository.get_next_jobs_to_run(
        "alike", now, now - timedelta(minutes=1), 3, now)
    assert len(claimed) == 3 and len({job.locked_at for job in claimed}) == 1
    stale = {str(job.id): now - timedelta(milliseconds=1) for job in claimed}
    for job in claimed:
        job.last_run_at = job.last_finished_at = now
    missing = await repository.save_job_states(claimed, lock_tokens=stale)
    assert sorted(missing) == sorted(str(job.id) for job in claimed)
    claimed[0].progress = 50
    tokens = {str(job.id): now for job in claimed}
    assert await repository.save_job_states(claimed, lock_tokens=tokens) == []
    stored = [await repository.get_job_by_id(str(job.id)) for job in claimed]
    assert [(job.last_finished_at, job.progress) for job in stored if job is not None] == [
        (now, 50), (now, None), (now, None)]


async def test_concurrent_inserts_keep_their_order_and_their_own_errors(
    backend: PostgresBackend,
) -> None:
    repository = backend.repository
    due = utcnow() - timedelta(seconds=1)

    async def insert(i: int) -> JobParameters[Any]:
        zone = "x" * 200 if i == 7 else None  # too long for VARCHAR(100): only this one fails
        return await repository.save_job(JobParameters(
            name="many", next_run_at=due, data={"i": i}, repeat_timezone=zone,
            skip_days=[i % 7] if i % 2 else None,
        ))

    results = await asyncio.gather(*(insert(i) for i in range(60)), return_exceptions=True)
    assert isinstance(results[7], psycopg.DataError)
    saved = [r for r in results if isinstance(r, JobParameters)]
    assert len({j.id for j in saved}) == 59
    assert all(j.skip_days == ([j.data["i"] % 7] if j.data["i"] % 2 else None) for j in saved)
    claimed = await repository.get_next_jobs_to_run(
        "many", utcnow(), utcnow() - timedelta(minutes=10), 100)
    assert [j.data["i"] for j in claimed] == [i for i in range(60) if i != 7]


# -- connections, names and secrets ------------------------------------------------------------


async def test_a_pool_passed_in_is_never_closed() -> None:
    table, channel = unique_names()
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(POSTGRES_URL, min_size=1, open=False)
    await pool.open()
    try:
        backend = PostgresBackend(pool=pool, table_name=table, channel_name=channel)
        assert not backend.owns_connection
        await backend.connect()
        assert backend.notification_channel is not None
        await backend.notification_channel.connect()
        await backend.repository.save_job(JobParameters(name="pooled"))
        await backend.notification_channel.disconnect()
        await backend.disconnect()
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        await pool.close()
        await drop_table(table)


async def test_a_pool_that_was_never_opened_is_a_clear_error() -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(POSTGRES_URL, open=False)
    with pytest.raises(InvalidOptionError, match="not open"):
        await PostgresBackend(pool=pool).connect()


@pytest.mark.parametrize(
    "table_name", ['jobs"; DROP TABLE x; --', "has space", "1starts_with_digit", "x" * 45, ""]
)
def test_bad_table_names_are_refused(table_name: str) -> None:
    with pytest.raises(InvalidOptionError, match="table_name"):
        PostgresBackend(connection_string=POSTGRES_URL, table_name=table_name)


@pytest.mark.parametrize("channel_name", ['a"b', "has space", "x" * 58, "semi;colon", ""])
def test_bad_channel_names_are_refused(channel_name: str) -> None:
    with pytest.raises(InvalidOptionError, match="channel_name"):
        PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=channel_name)


def test_exactly_one_of_connection_string_and_pool() -> None:
    with pytest.raises(InvalidOptionError, match="pool or connection_string"):
        PostgresBackend()


async def test_secrets_never_reach_errors_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-Pa55"
    url = f"postgresql://postgres:{secret}@127.0.0.1:1/test"
    caplog.set_level(logging.DEBUG)
    backend = PostgresBackend(connection_string=url, connect_timeout=2)
    channel = backend.notification_channel
    assert channel is not None
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.connect()
    with pytest.raises(BackendUnavailableError) as caught_channel:
        await channel.connect()
    await channel.disconnect()
    agenda = Agenda(backend)
    with pytest.raises(BackendUnavailableError) as caught_agenda:
        await agenda.start()
    texts = [str(caught.value), repr(caught.value), str(caught_channel.value),
             str(caught_agenda.value), repr(backend), repr(channel), repr(backend.repository),
             caplog.text]
    assert "127.0.0.1:1" in str(caught.value)
    assert "***" in str(caught.value)
    for text in texts:
        assert secret not in text


# -- the LISTEN connection under faults --------------------------------------------------------


async def test_a_killed_listener_reconnects_and_hears_again(
    channels: tuple[PostgresNotificationChannel, ...],
) -> None:
    publisher, subscriber = channels
    states: list[str] = []
    subscriber.on("stateChange", states.append)
    killed = subscriber.listen_pid
    await rows("SELECT pg_terminate_backend(%s)", (killed,))
    await eventually(lambda: subscriber.state == "connected"
                     and subscriber.listen_pid not in (None, killed))
    assert "reconnecting" in states
    inbox = Inbox()
    subscriber.subscribe(inbox)
    await publisher.publish(notification("after-kill"))
    assert [n.job_name for n in await inbox.wait_for(1)] == ["after-kill"]


async def test_a_silent_half_open_listener_is_detected(
    channels: tuple[PostgresNotificationChannel, ...],
) -> None:
    """A proxy that stops forwarding without closing: only the probe can notice."""
    publisher, _ = channels
    async with FreezingProxy() as proxy:
        subscriber = PostgresNotificationChannel(
            connection_string=proxy.url, channel_name=publisher.channel_name,
            probe_interval=0.2, probe_timeout=0.5,
        )
        await subscriber.connect()
        try:
            frozen_pid = subscriber.listen_pid
            proxy.freeze_existing()
            await eventually(lambda: subscriber.listen_pid not in (None, frozen_pid)
                             and subscriber.state == "connected")
            inbox = Inbox()
            subscriber.subscribe(inbox)
            await publisher.publish(notification("after-freeze"))
            assert [n.job_name for n in await inbox.wait_for(1)] == ["after-freeze"]
        finally:
            proxy.close()
            await subscriber.disconnect()


async def test_malformed_notifications_are_ignored(
    channels: tuple[PostgresNotificationChannel, ...], caplog: pytest.LogCaptureFixture
) -> None:
    publisher, subscriber = channels
    jobs, states = Inbox(), Inbox()
    subscriber.subscribe(jobs)
    subscriber.subscribe_state(states)
    forged = ["not json", '{"jobId": 1}', "[]", '{"jobName": "x", "timestamp": "yesterday"}']
    for payload in forged:
        await rows("SELECT pg_notify(%s, %s)", (publisher.channel_name, payload))
    await rows("SELECT pg_notify(%s, %s)", (publisher.state_channel_name, '{"type": "boom"}'))
    await publisher.publish(notification("genuine"))
    assert [n.job_name for n in await jobs.wait_for(1)] == ["genuine"]
    assert states.items == []
    # Both channels listen, so each logs; the subscriber has logged all of them by now.
    assert caplog.text.count("malformed notification") >= len(forged) + 1


async def test_payloads_stay_under_the_notify_limit(
    channels: tuple[PostgresNotificationChannel, ...], caplog: pytest.LogCaptureFixture
) -> None:
    publisher, subscriber = channels
    jobs, states = Inbox(), Inbox()
    subscriber.subscribe(jobs)
    subscriber.subscribe_state(states)
    for error in ("x" * 20_000, 'é"\\' * 5_000):
        await publisher.publish_state(JobStateNotification(
            type="fail", job_id=JobId("id"), job_name="big", timestamp=utcnow(), error=error,
            fail_count=1,
        ))
    received = await states.wait_for(2)
    for item, sent in zip(received, ("x" * 20_000, 'é"\\' * 5_000), strict=True):
        assert item.error is not None and item.error.endswith("... [truncated]")
        assert len(item.error) > 1000
        assert sent.startswith(item.error.removesuffix("... [truncated]"))
        assert item.fail_count == 1
    await publisher.publish(notification("too-big", source="s" * MAX_NOTIFY_BYTES))
    await publisher.publish(notification("small"))
    assert [n.job_name for n in await jobs.wait_for(1)] == ["small"]
    assert "NOTIFY limit" in caplog.text


async def test_concurrent_publishes_all_arrive_in_order(
    channels: tuple[PostgresNotificationChannel, ...],
) -> None:
    publisher, subscriber = channels
    inbox = Inbox()
    subscriber.subscribe(inbox)
    await asyncio.gather(*(publisher.publish(notification(f"job-{i}")) for i in range(200)))
    received = await inbox.wait_for(200)
    assert [n.job_name for n in received] == [f"job-{i}" for i in range(200)]


async def test_every_job_runs_while_the_listener_is_killed(backend: PostgresBackend) -> None:
    channel = backend.notification_channel
    assert isinstance(channel, PostgresNotificationChannel)
    agenda = Agenda(backend, process_every="1 hour")  # the channel must find them, not a poll
    ran: set[int] = set()
    done = asyncio.Event()

    async def record(job: Job[Any]) -> None:
        ran.add(job.attrs.data["i"])
        if len(ran) == 100:
            done.set()

    agenda.define("work", record, concurrency=10)
    await agenda.start()
    try:
        for i in range(100):
            if i in (30, 60):
                await rows("SELECT pg_terminate_backend(%s)", (channel.listen_pid,))
            await agenda.now("work", {"i": i})
        await asyncio.wait_for(done.wait(), 30)
        await eventually(lambda: channel.state == "connected")
        assert ran == set(range(100))
    finally:
        await agenda.stop(close_connection=False)


async def test_jobs_saved_while_the_listener_is_down_run_after_the_reconnect(
    tmp_path: Path,
) -> None:
    """An idle worker whose poll is an hour away; the LISTEN connection terminated; jobs
    saved during the outage are never announced: only the catch-up poll after the reconnect
    can find them."""
    slow_reconnect = ReconnectOptions(initial_delay=500, jitter=0)
    async with make_backend(tmp_path, reconnect=slow_reconnect) as backend:
        channel = backend.notification_channel
        assert isinstance(channel, PostgresNotificationChannel)
        agenda = Agenda(backend, process_every="1 hour")
        events = EventRecorder(agenda)
        agenda.define("work", lambda job: None)
        await agenda.start()
        try:
            await agenda.now("work", {"i": -1})
            await events.wait_for("complete", 1)  # the channel works; the worker is idle now
            killed = channel.listen_pid
            await rows("SELECT pg_terminate_backend(%s)", (killed,))
            await eventually(lambda: channel.state == "reconnecting")
            for i in range(20):
                await agenda.now("work", {"i": i})
            assert channel.state == "reconnecting"  # every save above went unannounced
            await events.wait_for("complete", 21)
            assert channel.state == "connected"
            assert channel.listen_pid not in (None, killed)
            assert sorted(e.data["i"] for e in events.of("complete")) == list(range(-1, 20))
        finally:
            await agenda.stop(close_connection=False)


async def test_reconnecting_gives_up_into_error_after_the_configured_attempts() -> None:
    """The server goes away for good: a few growing delays, then ``error`` and no more
    attempts (the reference retried every 100 ms forever)."""
    _, name = unique_names()
    errors: list[BaseException] = []
    states: list[str] = []
    async with FreezingProxy() as proxy:
        channel = PostgresNotificationChannel(
            connection_string=proxy.url, channel_name=name,
            reconnect=ReconnectOptions(max_attempts=3, initial_delay=20, max_delay=80, jitter=0),
        )
        channel.on("error", errors.append)
        channel.on("stateChange", states.append)
        await channel.connect()
        try:
            proxy.close()  # the link drops and nothing listens on the port any more
            await eventually(lambda: channel.state == "error")
            assert "reconnecting" in states
            assert any("Max reconnection attempts" in str(error) for error in errors)
            failures = len(errors)
            await asyncio.sleep(0.3)  # longer than every delay: nothing is retried
            assert channel.state == "error"
            assert len(errors) == failures
            with pytest.raises(NotConnectedError):
                await channel.publish(notification("after-giving-up"))
        finally:
            await channel.disconnect()
        assert channel.state == "disconnected"


# -- a TCP proxy that can go silent -------------------------------------------------------------


class FreezingProxy:
    """Forwards to the PostgreSQL server; ``freeze_existing`` makes the open links swallow
    everything without closing (a half-open peer), while new links still work."""

    def __init__(self) -> None:
        self._frozen: set[asyncio.StreamWriter] = set()
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return POSTGRES_URL.replace("127.0.0.1:5432", f"127.0.0.1:{port}")

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def freeze_existing(self) -> None:
        for client, upstream in self._links:
            self._frozen.update((client, upstream))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client, upstream in self._links:
            client.close()
            upstream.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
        self._links.append((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with_errors = (ConnectionError, OSError)
        try:
            while chunk := await source.read(65536):
                if sink not in self._frozen:
                    sink.write(chunk)
                    await sink.drain()
        except with_errors:
            pass
        finally:
            sink.close()
