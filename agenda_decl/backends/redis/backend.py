"""The Redis backend: storage and pub/sub notifications on one Redis, sharing Agenda v6's
keys, encodings and channels.

    backend = RedisBackend(connection_string="redis://localhost:6379/0")
    agenda = Agenda(backend=backend)

On a Redis Cluster, name any node with ``redis+cluster://`` and give a key prefix with a hash
tag, so that every key of the store shares one slot:

    RedisBackend(connection_string="redis+cluster://10.0.0.1:7000", key_prefix="{agenda}:")
"""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio.cluster import RedisCluster

from agenda_decl._job_log import JobLogRetention
from agenda_decl.backends.base import StoreBackend
from agenda_decl.backends.redis.job_log import RedisJobLogger
from agenda_decl.backends.redis.repository import RedisJobRepository
from agenda_decl.connectors.redis import AnyRedis, client_from_url, redacted_address
from agenda_decl.connectors.redis_urls import check_cluster_prefix
from agenda_decl.connectors.retry import DEFAULT_RETRY_FOR
from agenda_decl.errors import InvalidOptionError
from agenda_decl.notifications.redis import RedisNotificationChannel
from agenda_decl.timing import Duration


class RedisBackend(StoreBackend[RedisJobRepository, RedisNotificationChannel]):
    """Agenda v6's Redis backend: storage under ``key_prefix`` and pub/sub notifications on
    ``channel_name`` (none with ``disable_notifications`` or ``read_only``). A ``client``
    passed in is shared by both and never closed; one built from ``connection_string`` is
    closed by :meth:`disconnect` (and reopens on the next use). ``read_only=True`` is for
    inspecting: see :class:`RedisJobRepository`.

    ``logger`` is the job log in Node's keys under the same prefix (see
    :class:`RedisJobLogger`); ``logging=True`` makes an Agenda on this backend write to it.
    ``retry_for`` (default ``"30 seconds"``; 0 turns it off) is how long a call or a publish
    is repeated while the server cannot be reached (a restart, a failover) before it raises
    ``BackendUnavailableError``; see the README's "Outages" section.

    A Redis Cluster: a ``redis+cluster://`` connection string (any one node) or a
    ``RedisCluster`` client, and a ``key_prefix`` that starts with a hash tag (``{agenda}:``):
    every script then runs on the node of that slot and touches keys of that slot only.
    Notifications go through one node (the one named, or the first the client was started
    from): a PUBLISH reaches the subscribers of every node of a cluster."""

    name = "Redis"

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        client: AnyRedis | None = None,
        key_prefix: str = "agenda:",
        channel_name: str = "agenda:jobs",
        disable_notifications: bool = False,
        health_check_interval: int | float | timedelta | str = 30_000,
        read_only: bool = False,
        logging: bool = False,
        log_retention: JobLogRetention | None = None,
        retry_for: Duration = DEFAULT_RETRY_FOR,
    ) -> None:
        if (connection_string is None) == (client is None):
            raise InvalidOptionError(
                "RedisBackend requires client or connection_string (one of them)"
            )
        owns_client = client is None
        if client is None:
            assert connection_string is not None
            client = client_from_url(connection_string)
        self._client = client
        self._where = redacted_address(client, connection_string)
        if isinstance(client, RedisCluster):
            check_cluster_prefix(key_prefix)
        repository = RedisJobRepository(client, key_prefix=key_prefix, where=self._where,
                                        read_only=read_only, retry_for=retry_for)
        # Inspecting needs no notifications.
        off = disable_notifications or read_only
        channel = None if off else RedisNotificationChannel(
            client=client, channel_name=channel_name,
            health_check_interval=health_check_interval, retry_for=retry_for, where=self._where,
        )
        if channel is not None:  # an enqueue's PUBLISH rides in its insert script
            repository.announce_on(channel.channel_name)
        logger = RedisJobLogger(client, key_prefix=key_prefix, retention=log_retention,
                                read_only=read_only)
        super().__init__(repository, channel=channel, owns_connection=owns_client,
                         logger=logger, logging=logging)

    def __repr__(self) -> str:
        return f"RedisBackend({self._where}, key_prefix={self._repository.key_prefix!r})"

    @property
    def client(self) -> AnyRedis:
        return self._client

    async def disconnect(self) -> None:
        await self._repository.close()
        if self.owns_connection:
            await self._client.aclose()
