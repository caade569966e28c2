"""The client a Redis connection string gives: a burst of calls waits for connections; the
connections it keeps for its scripts and publishes are replaced at once when the server closed
them, and a script the server does not know is loaded."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from agenda_decl import JobsQueryOptions
from agenda_decl._model import JobParameters
from agenda_decl.backends.redis import RedisBackend
from agenda_decl.connectors.redis import (
    MAX_CONNECTIONS,
    SOCKET_TIMEOUT,
    register_script,
    server_client_from_url,
)
from agenda_decl.errors import InvalidOptionError
from tests.backends import redis as redis_backends
from tests.backends.servers import REDIS_URL

pytestmark = pytest.mark.asyncio


async def test_a_burst_of_enqueues_waits_for_connections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Far more concurrent calls than the pool holds, beside the channel's subscriber on the
    same pool: they wait for a connection (a full pool raises MaxConnectionsError, which would
    read as an outage and be retried), and the pool never grows past its bound."""
    async with redis_backends.make_backend(tmp_path) as backend:
        assert backend.notification_channel is not None
        await backend.notification_channel.connect()
        repository = backend.repository
        calls = 5 * MAX_CONNECTIONS
        with caplog.at_level(logging.WARNING, logger="agenda_decl"):
            await asyncio.gather(*(repository.save_job(JobParameters(name="burst", data={"i": i}))
                                   for i in range(calls)))
        assert (await repository.query_jobs(JobsQueryOptions(name="burst"))).total == calls
        # Ours only: the garbage collector may report another test's leftover task meanwhile.
        assert [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and r.name.startswith("agenda_decl")] == []
        assert repository.retrying.retries == 0


async def test_calls_go_on_at_once_after_the_server_closed_the_idle_connections(
    tmp_path: Path,
) -> None:
    """The server closes every idle command connection of the client (a timeout, a restart,
    CLIENT KILL): the next enqueues and claims open new connections at once, without the
    outage policy's retries, and nothing is lost or stored twice."""
    name = f"agenda-test-{uuid4().hex[:12]}"
    url = f"{REDIS_URL}?client_name={name}"
    async with redis_backends.opened_backend(f"Redis at {REDIS_URL}", url,
                                             redis_backends.unique_prefix()) as backend:
        repository = backend.repository
        await asyncio.gather(*(repository.save_job(JobParameters(name="kept", data={"i": i}))
                               for i in range(4)))
        admin = Redis.from_url(REDIS_URL)
        try:
            own = [entry["id"] for entry in await admin.client_list(_type="normal")
                   if entry.get("name") == name]
            assert own
            for connection_id in own:
                await admin.client_kill_filter(_id=connection_id)
        finally:
            await admin.aclose()
        for i in range(4, 7):
            await repository.save_job(JobParameters(name="kept", data={"i": i}))
        total = (await repository.query_jobs(JobsQueryOptions(name="kept"))).total
        assert total == 7
        assert repository.retrying.retries == 0


async def test_a_script_the_server_does_not_know_is_loaded_and_run() -> None:
    client = server_client_from_url(REDIS_URL)
    try:
        script = register_script(client, f"-- {uuid4().hex}\nreturn ARGV[1] .. KEYS[1]")
        assert await script(keys=["b"], args=["a"]) == "ab"
        assert await script(keys=["d"], args=["c"]) == "cd"
    finally:
        await client.aclose()


@pytest.mark.parametrize(("query", "expected"),
                         [("", SOCKET_TIMEOUT), ("?socket_timeout=2.5", 2.5)])
async def test_a_reply_is_awaited_for_the_socket_timeout_a_connection_string_may_change(
    query: str, expected: float,
) -> None:
    """Every command of a client built here has a reply deadline (a frozen server is an
    outage, tests/integration/test_outages.py), which the connection string can change."""
    client = server_client_from_url(REDIS_URL + query)
    try:
        assert await client.ping()
        connection = await client.connection_pool.get_connection()
        assert connection.socket_timeout == expected
        await client.connection_pool.release(connection)
    finally:
        await client.aclose()


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf"])
async def test_a_socket_timeout_that_is_not_seconds_above_zero_is_refused(value: str) -> None:
    """redis-py would take 0 or a negative deadline and fail every command later (and its
    own error for text does not say which value): refused when the backend is made, with
    the password masked, before anything is stored."""
    url = f"redis://:Sup3r-S3cret@127.0.0.1:6379/0?socket_timeout={value}"
    with pytest.raises(InvalidOptionError) as raised:
        RedisBackend(connection_string=url, key_prefix=f"never-{uuid4().hex}:")
    assert str(raised.value) == (
        f"invalid Redis connection string 'redis://:***@127.0.0.1:6379/0?socket_timeout="
        f"{value}': socket_timeout must be a number of seconds above 0, got '{value}'")
