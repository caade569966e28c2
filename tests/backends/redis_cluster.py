"""The Redis backend on a Redis Cluster of three masters: the one `.ci/run` starts
(``AGENDA_TEST_REDIS_CLUSTER_URL``, ``.ci/lib.sh``'s ``start_redis_cluster``), else one this
test session starts itself (``PrivateRedisCluster``) the first time a test asks for it and
removes at exit. Each backend gets a key prefix with a hash tag of its own (all its keys in
one slot, a different slot per test) and its own channel."""

from __future__ import annotations

import atexit
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

from redis.cluster import RedisCluster

from agenda_decl.backends.redis import RedisBackend, RedisNotificationChannel
from agenda_decl.connectors.redis_urls import node_url
from tests.backends import ChannelPair
from tests.backends.private_servers import PrivateRedisCluster
from tests.backends.redis import opened_backend
from tests.backends.servers import REDIS_CLUSTER_URL

_started: list[PrivateRedisCluster] = []


def cluster_url() -> str:
    """The cluster of `.ci/run`, else this session's own (started on first use)."""
    if REDIS_CLUSTER_URL:
        return REDIS_CLUSTER_URL
    if not _started:
        cluster = PrivateRedisCluster()
        cluster.start()
        atexit.register(cluster.remove)
        _started.append(cluster)
    return _started[0].url


def node_urls() -> list[str]:
    """A plain connection string of each master of the cluster."""
    client = RedisCluster.from_url(node_url(cluster_url()))
    try:
        return [f"redis://{node.host}:{node.port}/0" for node in client.get_primaries()]
    finally:
        client.close()


def unique_prefix() -> str:
    return f"{{agenda-test-{uuid4().hex}}}:"


def backend_spec(backend: RedisBackend) -> dict[str, Any]:
    channel = backend.notification_channel
    assert isinstance(channel, RedisNotificationChannel)
    return {"url": cluster_url(), "key_prefix": backend.repository.key_prefix,
            "channel_name": channel.channel_name}


def backend_from_spec(spec: dict[str, Any]) -> RedisBackend:
    return RedisBackend(connection_string=spec["url"], key_prefix=spec["key_prefix"],
                        channel_name=spec["channel_name"])


@asynccontextmanager
async def make_backend(tmp_path: Path, **options: Any) -> AsyncIterator[RedisBackend]:
    url = cluster_url()
    async with opened_backend(f"the Redis Cluster at {url}", url, unique_prefix(),
                              **options) as backend:
        yield backend


@asynccontextmanager
async def make_channel_pair(tmp_path: Path) -> AsyncIterator[ChannelPair]:
    """The publisher on one master, the subscriber on another: a PUBLISH crosses nodes."""
    name = f"{unique_prefix()}jobs"
    first, second, *_ = node_urls()
    publisher = RedisNotificationChannel(connection_string=first, channel_name=name)
    subscriber = RedisNotificationChannel(connection_string=second, channel_name=name)
    try:
        yield publisher, subscriber
    finally:
        await subscriber.disconnect()
        await publisher.disconnect()
