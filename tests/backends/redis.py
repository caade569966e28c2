"""Redis on the real server (tests/backends/servers.py): each backend gets its own key prefix
and channel, and its keys are deleted afterwards (found with SCAN, never KEYS)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

from agenda_decl.backends.redis import RedisBackend, RedisNotificationChannel
from agenda_decl.connectors.redis import AnyRedis
from agenda_decl.errors import BackendUnavailableError
from tests.backends import ChannelPair
from tests.backends.servers import REDIS_URL, server_missing


def unique_prefix() -> str:
    return f"agenda-test:{uuid4().hex}:"


async def delete_keys(client: AnyRedis, prefix: str) -> None:
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
    batch: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


def backend_spec(backend: RedisBackend) -> dict[str, Any]:
    channel = backend.notification_channel
    assert isinstance(channel, RedisNotificationChannel)
    return {"key_prefix": backend.repository.key_prefix, "channel_name": channel.channel_name}


def backend_from_spec(spec: dict[str, Any]) -> RedisBackend:
    """The backend of ``backend_spec``; a ``url`` in the spec names another server."""
    options = dict(spec)
    return RedisBackend(connection_string=options.pop("url", REDIS_URL), **options)


@asynccontextmanager
async def make_backend(tmp_path: Path, **options: Any) -> AsyncIterator[RedisBackend]:
    async with opened_backend(f"Redis at {REDIS_URL}", REDIS_URL, unique_prefix(),
                              **options) as backend:
        yield backend


@asynccontextmanager
async def opened_backend(server: str, url: str, prefix: str,
                         **options: Any) -> AsyncIterator[RedisBackend]:
    """A connected backend on ``prefix`` (its channel too, unless given): the test fails
    naming ``server`` when it cannot connect; its keys go afterwards."""
    options.setdefault("channel_name", f"{prefix}jobs")
    backend = RedisBackend(connection_string=url, key_prefix=prefix, **options)
    try:
        await backend.connect()
    except BackendUnavailableError as error:
        server_missing(server, error)
    try:
        yield backend
    finally:
        await delete_keys(backend.client, prefix)
        await backend.disconnect()


@asynccontextmanager
async def make_channel_pair(tmp_path: Path) -> AsyncIterator[ChannelPair]:
    name = f"{unique_prefix()}jobs"
    publisher = RedisNotificationChannel(connection_string=REDIS_URL, channel_name=name)
    subscriber = RedisNotificationChannel(connection_string=REDIS_URL, channel_name=name)
    try:
        yield publisher, subscriber
    finally:
        await subscriber.disconnect()
        await publisher.disconnect()
