"""Redis clients (redis-py's asyncio client) as the repository and the notification channel
both use them: built from a connection string, checked with a PING, named in messages without
the password; the subscriber connection of a channel; which errors mean the server is
unreachable; replies as text; and the rule for key and channel names.

Through an outage: a pooled connection the server closed is noticed when it is used (the
read fails) and redis-py's own retry, on a client built here, opens a new one and sends the
command again at once (two quick tries; a connection kept for scripts and publishes: one
more try, on a connection from the pool, ``_WaitingRedis.direct``); beyond that,
:func:`retrying` repeats the operation with backoff for up to ``retry_for``
(``connectors.retry``), then raises one
``BackendUnavailableError``. A server still loading its data after a restart (``LOADING``)
or a replica made read-only by a failover (``READONLY``) counts as unreachable too, and so
does one that has not answered a command within :data:`SOCKET_TIMEOUT`.

A Redis Cluster is reached with a ``redis+cluster://`` (or ``rediss+cluster://``) connection
string naming any one node: the client (redis-py's ``RedisCluster``) finds the others and
routes each command by its keys. Every key of a store must then share one hash slot, so a
key prefix on a cluster needs a hash tag (``redis_urls.check_cluster_prefix``). Pub/sub needs
no slot: PUBLISH on any node reaches the subscribers of every node, so a channel listens and
publishes on one node (``redis_urls.node_url``, :func:`plain_node_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeAlias, cast
from urllib.parse import quote

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agenda_decl._secrets import mask_text, mask_url
from agenda_decl.connectors.redis_urls import is_cluster_url, node_url, socket_timeout_problem
from agenda_decl.connectors.retry import DEFAULT_RETRY_FOR, Retrying
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError
from agenda_decl.timing import Duration

#: How long a client built here waits for a reply before it treats the server as unreachable
#: (seconds; a connection string's ``socket_timeout`` parameter overrides it). A server that
#: stops answering without closing its connections (a stopped process, a host gone behind a
#: network that drops packets) would otherwise hold the command, and every command queued
#: behind it, for as long as the socket stays open. Longer than any script of ours runs: the
#: longest, a cancel or disable by query, changes every matching job in one script (200,000
#: jobs in 3.4 s on the bench VM), which a shorter wait would repeat.
SOCKET_TIMEOUT = 60.0
#: Commands in flight at once on a client built from a connection string; more wait.
MAX_CONNECTIONS = 64
#: Connections of such a client beyond those commands: a channel's subscriber and the job
#: log's pipelines (one at a time) take theirs from the pool directly.
SPARE_CONNECTIONS = 8
#: Connections a client built here keeps for its direct commands (:meth:`_WaitingRedis.direct`)
#: between two of them; they count among the commands in flight only while in use, so the
#: pool has that many more.
KEPT_CONNECTIONS = 2
_NAME = re.compile(r"^[A-Za-z0-9_.:{}/-]{1,128}$")
#: What the driver raises when the server cannot be reached (or stops answering).
UNREACHABLE = (RedisError, OSError)
#: A client of one server or of a cluster.
AnyRedis: TypeAlias = Redis | RedisCluster


class Script(Protocol):
    """A registered Lua script: ``await script(keys=[...], args=[...])``."""

    def __call__(self, keys: Sequence[str], args: Sequence[str]) -> Awaitable[Any]: ...


def register_script(client: AnyRedis, script: str) -> Script:
    """``script`` registered on ``client``, a server's or a cluster's (which routes each call
    by its first key). On a client built here, a :class:`_DirectScript`."""
    if isinstance(client, _WaitingRedis):
        return _DirectScript(client, script)
    # redis-py before 6 types the method's ``self`` as ``Redis`` only.
    registered: AsyncScript = cast(Redis, client).register_script(script)
    return registered


async def publish(client: Redis, channel: str, payload: str) -> None:
    """PUBLISH, directly on a client built here (see :meth:`_WaitingRedis.direct`)."""
    if isinstance(client, _WaitingRedis):
        await client.direct("PUBLISH", channel, payload)
    else:
        await client.publish(channel, payload)


def transient(error: BaseException) -> bool:
    """Whether ``error`` means the server is unreachable for now (worth another attempt): a
    lost or refused connection, a timeout, a server loading its data, a read-only replica.
    A refused password is not: trying again changes nothing."""
    if isinstance(error, AuthenticationError):
        return False
    return isinstance(
        error, RedisConnectionError | RedisTimeoutError | BusyLoadingError | ReadOnlyError | OSError
    )


def retrying(where: str, retry_for: Duration = DEFAULT_RETRY_FOR) -> Retrying:
    """The outage policy of a Redis store at ``where`` (already masked, or masked here)."""
    return Retrying(store="Redis", where=where, transient=transient, retry_for=retry_for)


def check_name(value: str, *, field: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidOptionError(
            f"invalid {field}: {value!r} (1 to 128 letters, digits or _ . : {{ }} / -)"
        )
    return value


def client_from_url(url: str) -> AnyRedis:
    """An owned client: strings back, short retries (the scheduler polls again anyway), and a
    pool that makes a burst of commands wait for a connection instead of failing. A
    ``redis+cluster://`` string gives a :class:`RedisCluster` started from that node."""
    if is_cluster_url(url):
        return _cluster_from_url(url)
    return server_client_from_url(url)


def server_client_from_url(url: str) -> Redis:
    """:func:`client_from_url` for a single server (or one node of a cluster)."""
    _check_options(url)
    try:
        pool = ConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS + SPARE_CONNECTIONS + KEPT_CONNECTIONS,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=SOCKET_TIMEOUT,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 2),
        )
    except ValueError:
        raise InvalidOptionError(
            f"invalid Redis connection string {mask_url(url)!r} "
            "(expected redis://, rediss:// or unix://)"
        ) from None
    # redis 6.0-6.3 type from_pool as returning Any.
    return _WaitingRedis.from_pool(pool)  # type: ignore[no-any-return, unused-ignore]


def _check_options(url: str) -> None:
    """Refuse what redis-py would take and fail on later, or refuse without naming."""
    if (problem := socket_timeout_problem(url)) is not None:
        raise InvalidOptionError(f"invalid Redis connection string {mask_url(url)!r}: {problem}")


class _WaitingRedis(Redis):
    """A ``Redis`` whose commands wait for a free connection rather than fail: a pool raises
    ``MaxConnectionsError`` once ``max_connections`` are in use, which a burst of enqueues
    would hit (and which would read as an outage). At most ``MAX_CONNECTIONS`` commands are
    in flight, so the pool, larger by ``SPARE_CONNECTIONS``, is never full.
    (``BlockingConnectionPool`` waits too, but costs about 70 us of CPU more per command:
    a third of redis-py's own cost of a command, on every claim and enqueue.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = asyncio.Semaphore(MAX_CONNECTIONS)
        self._kept: list[AbstractConnection] = []

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._in_flight:
            # redis-py leaves Redis.execute_command untyped
            return await super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]

    async def direct(self, *args: str) -> Any:
        """The reply to one command without a reply callback (EVALSHA, PUBLISH), sent and
        read on a kept connection: the hot path of claims, state writes, inserts and
        publishes. redis-py's script call, ``execute_command`` and its pool's checks (a lock
        and metrics per connection taken) cost about half of a command's client CPU: a
        script call about 200 us, this about 110, on this VM. A kept
        connection the server closed (a restart) is replaced at once by a pool's, as
        redis-py's own retry would; a second failure goes to the caller's ``retrying``."""
        async with self._in_flight:
            if self._kept:
                try:
                    return await self._round_trip(self._kept.pop(), args)
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    pass  # closed while kept: on a connection the pool checks first
            fresh = await self.connection_pool.get_connection()  # type: ignore[no-untyped-call, unused-ignore]
            return await self._round_trip(fresh, args)

    async def _round_trip(self, connection: AbstractConnection, args: Sequence[str]) -> Any:
        try:
            packed = connection.pack_command(*args)
            if not _write_now(connection, packed):  # closed: reconnects, or raises
                await connection.send_packed_command(packed, False)
            reply = await connection.read_response()
        except ResponseError:  # the reply was read: the connection is fine
            await self._keep(connection)
            raise
        except BaseException:  # a reply may still be on its way: never reuse it
            await connection.disconnect(nowait=True)
            await self.connection_pool.release(connection)
            raise
        await self._keep(connection)
        return reply

    async def _keep(self, connection: AbstractConnection) -> None:
        if len(self._kept) < KEPT_CONNECTIONS:
            self._kept.append(connection)
        else:
            await self.connection_pool.release(connection)


class _DirectScript:
    """A script run with :meth:`_WaitingRedis.direct` (EVALSHA, loaded when the server
    does not know it: a restart, SCRIPT FLUSH)."""

    def __init__(self, client: _WaitingRedis, source: str) -> None:
        self._client = client
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # Redis names a script so

    async def __call__(self, keys: Sequence[str], args: Sequence[str]) -> Any:
        command = ("EVALSHA", self.sha, str(len(keys)), *keys, *args)
        try:
            return await self._client.direct(*command)
        except NoScriptError:
            await self._client.direct("SCRIPT", "LOAD", self._source)
            return await self._client.direct(*command)


class _WaitingRedisCluster(RedisCluster):
    """A ``RedisCluster`` whose commands wait for a free connection, as a single server's
    client built here does (:class:`_WaitingRedis`): redis-py's cluster raises
    ``MaxConnectionsError`` once a node has ``max_connections`` in use. At most
    ``MAX_CONNECTIONS`` commands are in flight, so no node's pool is ever full."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = asyncio.Semaphore(MAX_CONNECTIONS)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._in_flight:
            return await super().execute_command(*args, **kwargs)


def _cluster_from_url(url: str) -> RedisCluster:
    _check_options(url)
    try:
        return _WaitingRedisCluster.from_url(
            node_url(url),
            max_connections=MAX_CONNECTIONS,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=SOCKET_TIMEOUT,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 2),
        )
    except ValueError:
        raise InvalidOptionError(
            f"invalid Redis connection string {mask_url(url)!r} "
            "(expected redis+cluster:// or rediss+cluster:// and one node's address)"
        ) from None


def plain_node_url(cluster: RedisCluster) -> str:
    """A connection string of one node of ``cluster`` (the first it was started from), with
    its credentials: what a channel listens on."""
    node = next(iter(cluster.nodes_manager.startup_nodes.values()))
    kwargs = cluster.get_connection_kwargs()
    user, password = kwargs.get("username"), kwargs.get("password")
    auth = ""
    if password is not None:
        auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
    scheme = "rediss" if kwargs.get("connection_class") is SSLConnection else "redis"
    return f"{scheme}://{auth}{node.host}:{node.port}/0"


def redacted_address(client: AnyRedis, url: str | None) -> str:
    """Where the client points, for messages (never with the password)."""
    if url is not None:
        return mask_url(url)
    if isinstance(client, RedisCluster):
        return mask_url(f"redis+cluster://{plain_node_url(client).split('://', 1)[1]}")
    # Any: with redis-py 6.2's types mypy does not narrow the union after the check above (a
    # cast to Redis is then redundant with newer ones)
    plain: Any = client
    kwargs = plain.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def redacted_error(error: BaseException) -> str:
    """An error message with the password of any connection string in it masked."""
    return f"{type(error).__name__}: {mask_text(str(error))}"


async def check_reachable(client: AnyRedis, where: str) -> None:
    """PING the server; BackendUnavailableError (without the password) when it does not
    answer."""
    try:
        # redis < 8 types async commands as `Awaitable[T] | T`.
        await client.ping()  # type: ignore[misc, unused-ignore]
    except UNREACHABLE as error:
        raise BackendUnavailableError(
            f"cannot reach Redis at {where}: {redacted_error(error)}"
        ) from None


def subscriber(client: Redis) -> PubSub:
    """A pub/sub object on ``client``'s pool, not connected yet (see :func:`connect_subscriber`).
    Its ``get_message`` returns the replies to (UN)SUBSCRIBE too: a subscription changed with
    :func:`send_at_once` is confirmed by them."""
    return client.pubsub()


def send_at_once(pubsub: PubSub, *command: str) -> bool:
    """Write ``command`` (SUBSCRIBE or UNSUBSCRIBE) on ``pubsub``'s connection before returning,
    without awaiting: whatever the caller publishes afterwards, on any connection, reaches the
    server after it, so a subscriber added from synchronous code hears the next message
    (redis-py's ``subscribe`` is a coroutine, which would write only when next scheduled). The
    reply arrives through ``get_message``; redis-py's own bookkeeping of the subscriptions is
    left alone (it only serves its reconnects, which the channel does itself). False, with
    nothing sent, when the connection is not open."""
    connection = pubsub.connection
    return connection is not None and _write_now(connection, connection.pack_command(*command))


def _write_now(connection: AbstractConnection, packed: list[bytes]) -> bool:
    """Hand ``packed`` to ``connection``'s transport at once; False, with nothing written,
    when it is not open. redis-py's ``send_packed_command`` also waits for the transport to
    drain, under ``asyncio.wait_for`` (a task and a timer per command, and one more turn of
    the loop before the command leaves); a caller that then reads the reply waits for the
    server to have read it all anyway, and the read's own timeout covers a server that
    stopped reading."""
    writer = getattr(connection, "_writer", None)
    if writer is None or writer.transport.is_closing():
        return False
    writer.writelines(packed)
    return True


async def connect_subscriber(pubsub: PubSub) -> Any:
    """Connect ``pubsub`` with redis-py's own retries turned off on its connection: errors must
    reach the channel rather than be retried away inside redis-py (a reconnect goes through
    the channel, so the scheduler sees it and polls at once). Returns the retry policy that
    :func:`close_subscriber` puts back."""
    await pubsub.connect()  # type: ignore[no-untyped-call, unused-ignore]
    assert pubsub.connection is not None
    saved_retry = pubsub.connection.retry
    pubsub.connection.retry = Retry(NoBackoff(), 0)
    return saved_retry


async def close_subscriber(pubsub: PubSub, saved_retry: Any) -> None:
    """Close ``pubsub`` (which ends its subscriptions); its connection goes back to the
    client's pool with the retry policy it had."""
    if pubsub.connection is not None and saved_retry is not None:
        pubsub.connection.retry = saved_retry
    with contextlib.suppress(*UNREACHABLE):
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]


def text(value: Any) -> Any:
    """Responses as ``str`` whether or not the client decodes them."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        # A decoding client's strings pass with one check: a claim's reply is 24 fields a job.
        return [item if isinstance(item, str) else text(item) for item in value]
    return value
