"""The PostgreSQL backend on the real server: a table and a channel of its own per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
from psycopg import sql

from agenda_decl.backends.postgres import PostgresBackend, PostgresNotificationChannel
from agenda_decl.errors import BackendUnavailableError
from tests.backends import ChannelPair
from tests.backends.servers import POSTGRES_URL, server_missing


def unique_names() -> tuple[str, str]:
    """A table name and a channel name nobody else uses."""
    suffix = uuid4().hex[:12]
    return f"agenda_jobs_{suffix}", f"agenda:jobs:{suffix}"


async def drop_table(table: str) -> None:
    """Drop the table and the trigger function created with it."""
    function = sql.Identifier(f"update_{table.lower()}_updated_at")
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
        await conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function))


@asynccontextmanager
async def make_backend(tmp_path: Path, **options: Any) -> AsyncIterator[PostgresBackend]:
    table, channel = unique_names()
    async with opened_backend("PostgreSQL", table, connection_string=POSTGRES_URL,
                              table_name=table, channel_name=channel, **options) as backend:
        yield backend


@asynccontextmanager
async def opened_backend(server: str, table: str,
                         **options: Any) -> AsyncIterator[PostgresBackend]:
    """A connected backend on ``table``: the test fails naming ``server`` when it cannot
    connect; the channel, the pool and the table go afterwards."""
    backend = PostgresBackend(**options)
    try:
        await backend.connect()
    except BackendUnavailableError as error:
        server_missing(server, error)
    try:
        yield backend
    finally:
        if backend.notification_channel is not None:
            await backend.notification_channel.disconnect()
        await backend.disconnect()
        await drop_table(table)


@asynccontextmanager
async def make_channel_pair(tmp_path: Path) -> AsyncIterator[ChannelPair]:
    """Two channels on one channel name, each with its own connections."""
    _, channel = unique_names()
    publisher = PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=channel)
    subscriber = PostgresNotificationChannel(connection_string=POSTGRES_URL, channel_name=channel)
    try:
        yield publisher, subscriber
    finally:
        await publisher.disconnect()
        await subscriber.disconnect()


def backend_spec(backend: PostgresBackend) -> dict[str, object]:
    """What a worker process needs to open the same store (JSON)."""
    channel = backend.notification_channel
    assert isinstance(channel, PostgresNotificationChannel)
    return {
        "url": POSTGRES_URL,
        "table_name": backend.repository.table_name,
        "channel_name": channel.channel_name,
    }


def backend_from_spec(spec: dict[str, Any]) -> PostgresBackend:
    return PostgresBackend(
        connection_string=spec["url"],
        table_name=spec["table_name"],
        channel_name=spec["channel_name"],
    )
