"""The PostgreSQL backend through PgBouncer in transaction pooling mode: storage and NOTIFY
through the pooler, the channel's LISTEN on a direct connection (``listen_connection_string``).
The pooler is ``.ci/run``'s or one started for the test run (``tests.backends.pgbouncer``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agenda_decl.backends.postgres import PostgresBackend, PostgresNotificationChannel
from tests.backends import ChannelPair
from tests.backends.pgbouncer import PgBouncerMissing, pgbouncer_url
from tests.backends.postgres import opened_backend, unique_names
from tests.backends.servers import POSTGRES_URL


def pooler_url() -> str:
    try:
        return pgbouncer_url()
    except PgBouncerMissing as error:
        pytest.fail(str(error), pytrace=False)


@asynccontextmanager
async def make_backend(tmp_path: Path, **options: Any) -> AsyncIterator[PostgresBackend]:
    table, channel = unique_names()
    async with opened_backend(
        "PgBouncer", table, connection_string=pooler_url(),
        listen_connection_string=POSTGRES_URL, table_name=table, channel_name=channel, **options,
    ) as backend:
        assert backend.repository.pooled, "the backend did not find the pooler in between"
        yield backend


@asynccontextmanager
async def make_channel_pair(tmp_path: Path) -> AsyncIterator[ChannelPair]:
    """Two channels on one channel name, publishing through the pooler, listening directly."""
    _, channel = unique_names()
    url = pooler_url()
    publisher, subscriber = (
        PostgresNotificationChannel(connection_string=url, listen_connection_string=POSTGRES_URL,
                                    channel_name=channel)
        for _ in range(2)
    )
    try:
        yield publisher, subscriber
    finally:
        await publisher.disconnect()
        await subscriber.disconnect()


def backend_spec(backend: PostgresBackend) -> dict[str, object]:
    """What a worker process needs to open the same store (JSON)."""
    channel = backend.notification_channel
    assert isinstance(channel, PostgresNotificationChannel)
    return {"url": pooler_url(), "listen_url": POSTGRES_URL,
            "table_name": backend.repository.table_name, "channel_name": channel.channel_name}


def backend_from_spec(spec: dict[str, Any]) -> PostgresBackend:
    return PostgresBackend(
        connection_string=spec["url"], listen_connection_string=spec["listen_url"],
        table_name=spec["table_name"], channel_name=spec["channel_name"],
    )
