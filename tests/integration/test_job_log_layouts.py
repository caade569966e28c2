"""The job log's layouts, store by store, against what the npm packages write (the statements
and fields below are copied from @agendajs/postgres-backend 3.0.6 PostgresJobLogger.js,
@agendajs/redis-backend 3.0.7 RedisJobLogger.js and @agendajs/mongo-backend 4.0.3
MongoJobLogger.js). tests/interop/test_job_log.py checks the same with a real Node process."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from agenda_decl import Agenda, JobLogEntry, JobLogQuery
from agenda_decl.interfaces import AgendaBackend
from tests.backends.job_logs import make_logged_backend
from tests.backends.postgres import drop_table
from tests.backends.servers import POSTGRES_URL

T0 = datetime(2026, 1, 5, 12, 0, 0, 123000, tzinfo=UTC)
FULL = JobLogEntry(
    timestamp=T0, level="error", event="fail", job_id="6a3c", job_name="send",
    message="job failed: boom", duration=15, error="Traceback ...", fail_count=2,
    retry_delay=1000, retry_attempt=1, agenda_name="w1", meta={"a": 1},
)
MINIMAL = JobLogEntry(timestamp=T0, level="debug", event="locked", job_name="send",
                      message="job locked")


@pytest.fixture
async def logged(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[AgendaBackend]:
    async with make_logged_backend(request.param, tmp_path) as backend:
        yield backend


# -- PostgreSQL ---------------------------------------------------------------------------------

#: PostgresJobLogger.js getCreateLogsTableSQL and getCreateLogsIndexesSQL, verbatim.
NODE_DDL = """
    CREATE TABLE IF NOT EXISTS "{t}" (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
        level VARCHAR(10) NOT NULL,
        event VARCHAR(30) NOT NULL,
        job_id VARCHAR(255),
        job_name VARCHAR(255) NOT NULL,
        message TEXT NOT NULL,
        duration INTEGER,
        error TEXT,
        fail_count INTEGER,
        retry_delay INTEGER,
        retry_attempt INTEGER,
        agenda_name VARCHAR(255),
        meta JSONB
    );
    CREATE INDEX IF NOT EXISTS "{t}_timestamp_idx" ON "{t}" (timestamp DESC);
    CREATE INDEX IF NOT EXISTS "{t}_job_id_idx" ON "{t}" (job_id, timestamp DESC);
    CREATE INDEX IF NOT EXISTS "{t}_job_name_idx" ON "{t}" (job_name, timestamp DESC);
"""
#: PostgresJobLogger.js log(): the insert Node runs.
NODE_INSERT = (
    'INSERT INTO "{t}" (timestamp, level, event, job_id, job_name, message, duration, error, '
    "fail_count, retry_delay, retry_attempt, agenda_name, meta) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


async def _shape(conn: psycopg.AsyncConnection[Any], table: str) -> tuple[Any, Any]:
    columns = await (await conn.execute(
        "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
        (table,))).fetchall()
    indexes = await (await conn.execute(
        "SELECT replace(indexdef, %s, 'T') FROM pg_indexes WHERE tablename = %s ORDER BY 1",
        (table, table))).fetchall()
    return columns, indexes


@pytest.mark.parametrize("logged", ["postgres"], indirect=True)
async def test_postgres_table_is_nodes(logged: AgendaBackend) -> None:
    ours = logged.logger.table_name  # type: ignore[union-attr]
    node = f"node_logs_{uuid4().hex[:10]}"
    try:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as c:
            await c.execute(NODE_DDL.replace("{t}", node).encode())
            assert await _shape(c, ours) == await _shape(c, node)
    finally:
        await drop_table(node)


@pytest.mark.parametrize("logged", ["postgres"], indirect=True)
async def test_postgres_rows_read_both_ways(logged: AgendaBackend) -> None:
    logger = logged.logger
    assert logger is not None
    table = logger.table_name  # type: ignore[attr-defined]
    await logger.log_many([FULL, MINIMAL])
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        row = await (await conn.execute(sql.SQL(
            "SELECT level, event, job_id, job_name, message, duration, error, fail_count, "
            "retry_delay, retry_attempt, agenda_name, meta FROM {} WHERE event = 'fail'"
        ).format(sql.Identifier(table)))).fetchone()
        assert row == ("error", "fail", "6a3c", "send", "job failed: boom", 15,
                       "Traceback ...", 2, 1000, 1, "w1", {"a": 1})
        # what Node inserts for a 'start' entry of an unnamed Agenda (agendaName undefined)
        await conn.execute(NODE_INSERT.replace("{t}", table).encode(), (
            T0, "info", "start", "n1", "send", "job started", None, None, None, None, None,
            None, None))
    (node_entry,) = (await logger.get_logs(JobLogQuery(event="start"))).entries
    assert node_entry == JobLogEntry(id=node_entry.id, timestamp=T0, level="info",
                                     event="start", job_id="n1", job_name="send",
                                     message="job started")


# -- Redis --------------------------------------------------------------------------------------

_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@pytest.mark.parametrize("logged", ["redis"], indirect=True)
async def test_redis_hashes_and_sorted_sets_are_nodes(logged: AgendaBackend) -> None:
    from agenda_decl.backends.redis import RedisBackend

    assert isinstance(logged, RedisBackend) and logged.logger is not None
    client, prefix = logged.client, logged.repository.key_prefix
    await logged.logger.log_many([FULL, MINIMAL])
    ids = await client.zrange(f"{prefix}logs:all", 0, -1, withscores=True)
    assert len(ids) == 2
    score = 1767614400123
    for entry_id, entry_score in ids:
        match = _ID.match(entry_id)
        assert match and int(match[1]) == score and entry_score == score
    hashes = {h["event"]: h for h in [await client.hgetall(f"{prefix}log:{i}") for i, _ in ids]}
    assert hashes["fail"] == {
        "id": hashes["fail"]["id"], "timestamp": "2026-01-05T12:00:00.123Z", "level": "error",
        "event": "fail", "jobName": "send", "message": "job failed: boom", "jobId": "6a3c",
        "duration": "15", "error": "Traceback ...", "failCount": "2", "retryDelay": "1000",
        "retryAttempt": "1", "agendaName": "w1", "meta": '{"a":1}',
    }
    # absent fields are left out, not written as 'null'
    assert hashes["locked"] == {
        "id": hashes["locked"]["id"], "timestamp": "2026-01-05T12:00:00.123Z",
        "level": "debug", "event": "locked", "jobName": "send", "message": "job locked",
    }
    fail_id = hashes["fail"]["id"]
    assert await client.zscore(f"{prefix}logs:by_job:6a3c", fail_id) == score
    assert set(await client.zrange(f"{prefix}logs:by_name:send", 0, -1)) == {
        fail_id, hashes["locked"]["id"]}
    assert await client.exists(f"{prefix}logs:by_job:") == 0


@pytest.mark.parametrize("logged", ["redis"], indirect=True)
async def test_redis_reads_what_node_writes(logged: AgendaBackend) -> None:
    from agenda_decl.backends.redis import RedisBackend

    assert isinstance(logged, RedisBackend) and logged.logger is not None
    client, prefix = logged.client, logged.repository.key_prefix
    # RedisJobLogger.js log() for a 'complete' entry of job j9 of an unnamed Agenda
    entry_id = "1767614400123-4242-7"
    await client.hset(f"{prefix}log:{entry_id}", mapping={
        "id": entry_id, "timestamp": "2026-01-05T12:00:00.123Z", "level": "info",
        "event": "complete", "jobName": "report", "message": "job complete", "jobId": "j9",
        "duration": "0"})
    for key in ("logs:all", "logs:by_job:j9", "logs:by_name:report"):
        await client.zadd(f"{prefix}{key}", {entry_id: 1767614400123})
    result = await logged.logger.get_logs(JobLogQuery(job_id="j9"))
    assert result.entries == [JobLogEntry(
        id=entry_id, timestamp=T0, level="info", event="complete", job_id="j9",
        job_name="report", message="job complete", duration=0)]
    assert await logged.logger.clear_logs(JobLogQuery(job_name="report")) == 1
    assert await client.exists(f"{prefix}log:{entry_id}", f"{prefix}logs:by_job:j9") == 0


# -- MongoDB ------------------------------------------------------------------------------------


@pytest.mark.parametrize("logged", ["mongo"], indirect=True)
async def test_mongo_documents_and_indexes_are_nodes(logged: AgendaBackend) -> None:
    from agenda_decl.backends.mongo import MongoBackend

    assert isinstance(logged, MongoBackend) and logged.logger is not None
    await logged.logger.log_many([FULL, MINIMAL])
    collection = logged.repository.database().get_collection(
        logged.logger.collection_name)  # type: ignore[attr-defined]
    indexes = collection.index_information()
    assert {name: info["key"] for name, info in indexes.items() if name != "_id_"} == {
        "agenda_logs_timestamp_idx": [("timestamp", -1)],
        "agenda_logs_job_id_idx": [("jobId", 1), ("timestamp", -1)],
        "agenda_logs_job_name_idx": [("jobName", 1), ("timestamp", -1)],
    }
    documents = {d["event"]: d for d in collection.find({}, {"_id": 0})}
    assert documents["fail"] == {
        "level": "error", "event": "fail", "jobId": "6a3c", "jobName": "send",
        "message": "job failed: boom", "duration": 15, "error": "Traceback ...",
        "failCount": 2, "retryDelay": 1000, "retryAttempt": 1, "meta": {"a": 1},
        "timestamp": T0.replace(tzinfo=None), "agendaName": "w1",
    }
    assert documents["locked"] == {
        "level": "debug", "event": "locked", "jobName": "send", "message": "job locked",
        "timestamp": T0.replace(tzinfo=None), "agendaName": None,
    }
    # MongoJobLogger.js log() of a 'retry' entry: retryAttempt passed as undefined is null
    collection.insert_one({"level": "info", "event": "retry", "jobId": "x", "jobName": "send",
                           "message": "retry #1 scheduled in 5ms", "retryDelay": 5,
                           "retryAttempt": None, "error": "boom",
                           "timestamp": T0.replace(tzinfo=None), "agendaName": None})
    (retry,) = (await logged.logger.get_logs(JobLogQuery(event="retry"))).entries
    assert (retry.retry_delay, retry.retry_attempt, retry.agenda_name, retry.error) == (
        5, None, None, "boom")


# -- the storage is created only when an Agenda logs ------------------------------------------


async def test_an_agenda_without_logging_creates_no_log_table(tmp_path: Path) -> None:
    from tests.backends.postgres import make_backend

    table = f"agenda_logs_{uuid4().hex[:10]}"
    async with make_backend(tmp_path, log_table_name=table) as backend:
        agenda = Agenda(backend)
        await agenda.ready()
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
            cursor = await conn.execute("SELECT to_regclass(%s) IS NULL", (table,))
            assert await cursor.fetchone() == (True,)
        logging_agenda = Agenda(backend, logging=True)
        await logging_agenda.ready()
        try:
            async with await psycopg.AsyncConnection.connect(POSTGRES_URL) as conn:
                cursor = await conn.execute("SELECT to_regclass(%s) IS NULL", (table,))
                assert await cursor.fetchone() == (False,)
        finally:
            await logging_agenda.stop(close_connection=False)
            await drop_table(table)


async def test_a_read_only_backend_creates_and_writes_nothing(tmp_path: Path) -> None:
    from agenda_decl.backends.sqlite import SQLiteBackend
    from agenda_decl.errors import AgendaError

    path = tmp_path / "ro.db"
    writer = SQLiteBackend(path)
    await writer.connect()
    await writer.disconnect()
    backend = SQLiteBackend(path, read_only=True, logging=True)
    agenda = Agenda(backend)
    await agenda.ready()
    try:
        assert (await agenda.get_logs()).total == 0
        with pytest.raises(AgendaError):
            await agenda.clear_logs()
    finally:
        await agenda.stop()
    import sqlite3

    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "agenda_logs" not in names


