"""PostgreSQL through PgBouncer in transaction pooling mode (Debian's pgbouncer 1.18, which
keeps no prepared statements): what the conformance suite cannot show. The pooler is found at
connect; statements run far past psycopg's prepare threshold; a LISTEN through the pooler is
refused with the way out; a given pool that would prepare is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from psycopg_pool import AsyncConnectionPool

from agenda_decl import Agenda
from agenda_decl.backends.postgres import PostgresBackend, PostgresJobRepository
from agenda_decl.errors import InvalidOptionError
from tests.backends.postgres import drop_table, unique_names
from tests.backends.postgres_pgbouncer import make_backend, pooler_url
from tests.backends.servers import POSTGRES_URL

SECRET = "pooler-Pa55word"


def with_password(url: str) -> str:
    """``url`` with a password (trust authentication ignores it; it must never show)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def table() -> AsyncIterator[str]:
    name, _ = unique_names()
    yield name
    await drop_table(name)


async def test_the_pooler_is_found_and_statements_never_prepare(tmp_path: Path) -> None:
    async with make_backend(tmp_path) as backend:
        repository = backend.repository
        assert repository.pooled
        agenda = Agenda(backend, process_every="50 ms")
        ran: list[int] = []
        agenda.define("count", lambda job: ran.append(job.attrs.data["i"]))
        # Far past psycopg's prepare threshold (5 runs of one statement on a connection),
        # from many tasks at once, so every pooled connection meets each statement often.
        await asyncio.gather(*(agenda.now("count", {"i": i}) for i in range(60)))
        await agenda.start()
        for _ in range(200):
            if len(ran) == 60:
                break
            await asyncio.sleep(0.05)
        await agenda.stop(close_connection=False)
        assert sorted(ran) == list(range(60))
        assert (await repository.get_queue_size()) == 0


async def test_a_direct_connection_is_not_taken_for_a_pooler(table: str) -> None:
    repository = PostgresJobRepository(connection_string=POSTGRES_URL, table_name=table)
    await repository.connect()
    try:
        assert not repository.pooled
    finally:
        await repository.close()


async def test_a_listen_through_the_pooler_is_refused_with_the_way_out(table: str) -> None:
    backend = PostgresBackend(connection_string=with_password(pooler_url()), table_name=table)
    agenda = Agenda(backend, process_every="1 second")
    try:
        with pytest.raises(InvalidOptionError) as raised:
            await agenda.start()
    finally:
        await backend.disconnect()
    message = str(raised.value)
    assert "listen_connection_string" in message
    assert "pooler" in message
    assert SECRET not in message
    channel = backend.notification_channel
    assert channel is not None
    await asyncio.sleep(0.3)  # no reconnect loop for a refused configuration
    assert channel.state == "disconnected"


async def test_a_given_pool_that_would_prepare_is_refused(table: str) -> None:
    pool: AsyncConnectionPool = AsyncConnectionPool(
        with_password(pooler_url()), min_size=1, max_size=2, open=False,
        kwargs={"autocommit": True})
    await pool.open(wait=True)
    try:
        repository = PostgresJobRepository(pool=pool, table_name=table)
        with pytest.raises(InvalidOptionError, match="prepare_threshold") as raised:
            await repository.connect()
        assert SECRET not in str(raised.value)
    finally:
        await pool.close()


async def test_a_given_pool_without_prepared_statements_works(table: str) -> None:
    pool: AsyncConnectionPool = AsyncConnectionPool(
        pooler_url(), min_size=1, max_size=2, open=False,
        kwargs={"autocommit": True, "prepare_threshold": None})
    await pool.open(wait=True)
    try:
        backend = PostgresBackend(pool=pool, table_name=table,
                                  listen_connection_string=POSTGRES_URL)
        await backend.connect()
        assert backend.repository.pooled
        agenda = Agenda(backend)
        agenda.define("x", lambda job: None)
        for i in range(12):
            await agenda.now("x", {"i": i})
        assert await backend.repository.get_queue_size() == 12
        await agenda.stop(close_connection=False)
    finally:
        await pool.close()
