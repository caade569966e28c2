"""Configs built into a working Agenda on the real servers: one job runs end to end for
SQLite + in-memory notifications, PostgreSQL, Redis, and PostgreSQL storage with Redis
notifications. With a one-minute poll, a job created by another Agenda only runs in time
when the configured notification channel really delivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from agenda_decl import Agenda
from agenda_decl.backends.postgres import PostgresBackend
from agenda_decl.backends.redis import RedisBackend, RedisNotificationChannel
from agenda_decl.config import PayloadError, build_agenda, load_config
from agenda_decl.errors import BackendUnavailableError
from tests.backends.postgres import drop_table
from tests.backends.redis import delete_keys
from tests.backends.servers import POSTGRES_URL, REDIS_URL, server_missing
from tests.integration import config_handlers

JOBS = """
scheduler:
  name: cfg-test
  process_every: 1 minute     # a job created elsewhere runs in time only by notification
jobs:
  record:
    handler: tests.integration.config_handlers:record
    payload: {token: str, n: {type: int, default: 1}}
"""


def storage_block(kind: str, suffix: str) -> str:
    postgres = (f"{{type: postgres, connection_string: '${{PG_URL}}', table_name: cfg_{suffix}, "
                f"channel_name: 'cfg:{suffix}'}}")
    redis = (f"{{type: redis, connection_string: '${{REDIS_URL}}', key_prefix: 'cfg:{suffix}:', "
             f"channel_name: 'cfg:{suffix}:jobs'}}")
    blocks = {
        "sqlite": "  storage: {type: sqlite, path: jobs.db}\n  notifications: {type: inmemory}\n",
        "postgres": f"  storage: {postgres}\n",
        "redis": f"  storage: {redis}\n",
        "postgres-redis": f"  storage: {postgres}\n  notifications: {{type: redis, "
                          f"connection_string: '${{REDIS_URL}}', channel_name: 'cfg:{suffix}'}}\n",
    }
    return blocks[kind]


@asynccontextmanager
async def cleanup(kind: str, suffix: str) -> AsyncIterator[None]:
    try:
        yield
    finally:
        if "postgres" in kind:
            await drop_table(f"cfg_{suffix}")
        if kind == "redis":
            client = Redis.from_url(REDIS_URL)
            await delete_keys(client, f"cfg:{suffix}:")
            await client.aclose()


async def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the job did not run in time"
        await asyncio.sleep(0.05)


async def start(agenda: Agenda, what: str) -> None:
    try:
        await agenda.start()
    except BackendUnavailableError as error:
        server_missing(what, error)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis", "postgres-redis"])
async def test_a_job_runs_end_to_end(kind: str, tmp_path: Path) -> None:
    suffix = uuid4().hex[:10]
    path = tmp_path / "agenda.yaml"
    path.write_text("version: 1\nbackend:\n" + storage_block(kind, suffix) + JOBS)
    config = load_config(path, environ={"PG_URL": POSTGRES_URL, "REDIS_URL": REDIS_URL})
    token = uuid4().hex
    async with cleanup(kind, suffix):
        worker = build_agenda(config, import_handlers=True)
        if kind == "postgres":
            assert isinstance(worker.backend, PostgresBackend)
        if kind == "redis":
            assert isinstance(worker.backend, RedisBackend)
        if kind == "postgres-redis":
            assert isinstance(worker.backend, PostgresBackend)
            assert isinstance(worker.channel, RedisNotificationChannel)
            assert worker.backend.notification_channel is None
        await start(worker, kind)
        # SQLite + in-memory notifications is one process: the worker enqueues itself.
        producer = worker if kind == "sqlite" else build_agenda(config)
        try:
            if producer is not worker:
                await producer.ready()
            await wait_for(lambda: worker.channel is None or worker.channel.state == "connected")
            await producer.now("record", {"token": token})
            await wait_for(lambda: any(run.get("token") == token
                                       for run in config_handlers.RUNS))
        finally:
            if producer is not worker:
                await producer.stop()
            await worker.drain(timeout="10 seconds")
    run = next(run for run in config_handlers.RUNS if run.get("token") == token)
    assert run == {"token": token, "n": 1}  # the payload's default filled in at enqueue


async def test_enqueued_data_is_checked_against_the_payload_before_storing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text("version: 1\nbackend:\n" + storage_block("sqlite", "x") + JOBS)
    agenda = build_agenda(load_config(path))
    with pytest.raises(PayloadError) as caught:
        await agenda.now("record", {"token": 7, "m": 2})
    assert str(caught.value) == (
        "record.data.m: unknown field 'm' (fields of job 'record': token, n)\n"
        "record.data.token: expected a string, got 7 (a number)"
    )
    assert (await agenda.query_jobs()).total == 0
    job = await agenda.now("record", {"token": "t"})
    assert job.attrs.data == {"token": "t", "n": 1}
    await agenda.stop()
