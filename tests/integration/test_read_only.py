"""``validate``, ``plan`` and ``jobs`` only read: on SQLite, the real PostgreSQL and the real
Redis they create and change nothing in storage (no SQLite file, no table, function or
trigger, no key), a store that does not exist yet reads as an empty one, and a backend opened
with ``read_only=True`` (what they use) refuses every write before it reaches the store."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from agenda_decl import cli
from agenda_decl._model import JobParameters, RemoveJobsOptions
from agenda_decl.backends.mongo import MongoBackend
from agenda_decl.backends.postgres import PostgresBackend
from agenda_decl.backends.redis import RedisBackend
from agenda_decl.backends.sqlite import SQLiteBackend
from agenda_decl.errors import InvalidOptionError
from agenda_decl.interfaces import AgendaBackend
from tests.backends.mongo import database
from tests.backends.servers import POSTGRES_URL, REDIS_URL

CONFIG = """\
version: 1
backend:
  storage: {storage}
scheduler: {{name: read-only}}
jobs:
  tick: {{payload: {{n: int}}}}
schedules:
  - {{job: tick, every: 1 hour, data: {{n: 1}}}}
"""
READ_ONLY_COMMANDS = (("validate",), ("validate", "--json"), ("plan",), ("plan", "--json"),
                      ("jobs",), ("jobs", "--json"))


class Store:
    """A store of its own for one test: its ``storage:`` mapping, and what it holds."""

    def __init__(self, storage: str, footprint: Callable[[], Any],
                 drop: Callable[[], None]) -> None:
        self.storage, self.footprint, self.drop = storage, footprint, drop


def sqlite_store(tmp_path: Path) -> Store:
    path = tmp_path / "data" / "jobs.db"

    def footprint() -> Any:
        if not path.exists():
            return sorted(p.name for p in tmp_path.rglob("*") if p.suffix != ".yaml")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            objects = connection.execute("SELECT name FROM sqlite_master ORDER BY name")
            return [row[0] for row in objects], hashlib.sha256(path.read_bytes()).hexdigest()

    return Store("{type: sqlite, path: data/jobs.db}", footprint, lambda: None)


def postgres_store() -> Store:
    table = f"ro_{uuid.uuid4().hex[:12]}"

    def footprint() -> Any:
        with psycopg.connect(POSTGRES_URL) as connection:
            return connection.execute(
                "SELECT to_regclass(%s)::text, to_regprocedure(%s)::text, "
                "(SELECT count(*) FROM pg_trigger WHERE tgname = %s)",
                (table, f"update_{table}_updated_at()", f"{table}_updated_at_trigger"),
            ).fetchone()

    def drop() -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
            connection.execute(f'DROP FUNCTION IF EXISTS "update_{table}_updated_at"()')

    return Store(f'{{type: postgres, connection_string: "{POSTGRES_URL}", '
                 f"table_name: {table}}}", footprint, drop)


def redis_store() -> Store:
    prefix = f"ro-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    def footprint() -> Any:
        return sorted(client.scan_iter(match=f"{prefix}*", count=1000))

    def drop() -> None:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

    return Store(f'{{type: redis, connection_string: "{REDIS_URL}", key_prefix: "{prefix}"}}',
                 footprint, drop)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = {"sqlite": lambda: sqlite_store(tmp_path), "postgres": postgres_store,
            "redis": redis_store}[request.param]()
    try:
        yield made
    finally:
        made.drop()


def run(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> str:
    code = cli.main(["-c", str(path), *args])
    out, err = capsys.readouterr()
    assert code == 0, (args, err)
    return out


def test_nothing_is_created_and_a_missing_store_reads_as_empty(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text(CONFIG.format(storage=store.storage))
    before = store.footprint()
    for args in READ_ONLY_COMMANDS:
        run(capsys, path, *args)
    assert store.footprint() == before
    assert "+ create    tick (job tick)" in run(capsys, path, "plan")
    assert run(capsys, path, "jobs") == "No jobs.\n"


def test_an_existing_store_is_read_without_a_change(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agenda.yaml"
    path.write_text(CONFIG.format(storage=store.storage))
    run(capsys, path, "apply", "--yes")
    before = store.footprint()
    assert "No changes" in run(capsys, path, "plan")
    assert "tick" in run(capsys, path, "jobs")
    assert store.footprint() == before


# -- the read_only option of each backend --------------------------------------------------


@asynccontextmanager
async def read_only_backend(kind: str, tmp_path: Path) -> AsyncIterator[AgendaBackend]:
    name = f"ro_{uuid.uuid4().hex[:12]}"
    if kind == "mongo":
        with database() as db:
            yield MongoBackend(mongo=db, collection=name, read_only=True)
            assert name not in db.list_collection_names()
        return
    backend: AgendaBackend = {
        "sqlite": lambda: SQLiteBackend(tmp_path / "none.db", read_only=True),
        "postgres": lambda: PostgresBackend(connection_string=POSTGRES_URL, table_name=name,
                                            read_only=True),
        "redis": lambda: RedisBackend(connection_string=REDIS_URL, key_prefix=f"{name}:",
                                      read_only=True),
    }[kind]()
    yield backend
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis", "mongo"])
async def test_a_read_only_backend_reads_an_empty_store_and_refuses_writes(
    kind: str, tmp_path: Path
) -> None:
    async with read_only_backend(kind, tmp_path) as backend:
        assert backend.notification_channel is None
        await backend.connect()
        try:
            repository = backend.repository
            assert (await repository.query_jobs()).total == 0
            assert await repository.get_jobs_overview() == []
            assert await repository.get_distinct_job_names() == []
            assert await repository.get_queue_size() == 0
            with pytest.raises(InvalidOptionError, match="read-only"):
                await repository.save_job(JobParameters(name="tick", data={}))
            with pytest.raises(InvalidOptionError, match="read-only"):
                await repository.remove_jobs(RemoveJobsOptions(name="tick"))
        finally:
            await backend.disconnect()
