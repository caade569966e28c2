"""The client a Redis connection string gives: a burst of calls waits for connections."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agenda_decl import JobsQueryOptions
from agenda_decl._model import JobParameters
from agenda_decl.connectors.redis import MAX_CONNECTIONS
from tests.backends import redis as redis_backends

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
