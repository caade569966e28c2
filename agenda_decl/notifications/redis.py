"""Redis pub/sub on Agenda v6's channels, with a liveness probe of the subscriber connection.

Notifications are Agenda's JSON on ``agenda:jobs`` and ``agenda:jobs:state`` (or the channel
name given); they are hints, so a flood beyond ``MAX_PENDING`` waiting messages is dropped.
The client comes from ``connectors.redis``, as the repository's does; the Lua that publishes
a batch is in ``redis.lua``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from agenda_decl._convert import (
    notification_from_json,
    notification_to_json,
    state_notification_from_json,
)
from agenda_decl._group_commit import GroupCommit, OnFailure
from agenda_decl._model import JobNotification, JobStateNotification
from agenda_decl._named_blocks import load_named_blocks
from agenda_decl._secrets import mask_url
from agenda_decl._tasks import cancel_and_wait
from agenda_decl.connectors.redis import (
    UNREACHABLE,
    AnyRedis,
    Script,
    check_name,
    close_subscriber,
    connect_subscriber,
    plain_node_url,
    publish,
    redacted_address,
    redacted_error,
    register_script,
    retrying,
    send_at_once,
    server_client_from_url,
    subscriber,
    text,
)
from agenda_decl.connectors.redis_urls import is_cluster_url, node_url
from agenda_decl.connectors.retry import DEFAULT_RETRY_FOR, Attempt
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError
from agenda_decl.interfaces import StateNotificationHandler, Unsubscribe
from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions
from agenda_decl.timing import Duration, parse_duration

log = logging.getLogger("agenda_decl.backends.redis")

#: Notifications waiting for the subscribers; beyond this they are dropped (they are hints).
MAX_PENDING = 10_000
#: ARGV: channel, payload, channel, payload, ...: publishes them in order with one command.
_PUBLISH_MANY = load_named_blocks("agenda_decl.notifications", "redis.lua")["publish_many"]


class RedisNotificationChannel(BaseNotificationChannel):
    """Redis pub/sub on Agenda's channels: ``channel_name`` for jobs, ``<channel_name>:state``
    for job states. Listens on a connection of its own; publishes through ``client``.

    Every ``health_check_interval`` (ms) it checks that the server still counts a subscriber
    (``PUBSUB NUMSUB``) and that a probe published on a private channel comes back through
    the subscriber connection; a dead, half-open or unsubscribed connection is thus noticed
    within two intervals and replaced (the scheduler polls at once after a reconnect).

    The subscriber connection listens on the state channel only while this channel has state
    subscribers (``subscribe_state``): a busy worker publishes three state notifications a
    job, and nobody here needs them back when nothing subscribes (reading them cost a sixth of
    a draining worker's CPU). A subscriber added to a connected channel has its SUBSCRIBE
    written before ``subscribe_state`` returns, so it hears what is published after.

    On a Redis Cluster (a ``redis+cluster://`` string or a ``RedisCluster`` client) the channel
    has a connection of its own to one node, the one named or the first the client was started
    from: pub/sub is not routed by slot, and a PUBLISH on any node reaches every node's
    subscribers.

    A publish is repeated through an outage for up to ``retry_for`` (a repeat may deliver a
    message twice: a hint, which costs a claim that finds nothing); past it, it raises
    ``BackendUnavailableError`` naming the server.
    """

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        client: AnyRedis | None = None,
        channel_name: str = "agenda:jobs",
        reconnect: ReconnectOptions | None = None,
        health_check_interval: int | float | timedelta | str = 30_000,
        retry_for: Duration = DEFAULT_RETRY_FOR,
        where: str | None = None,
    ) -> None:
        super().__init__(channel_name=check_name(channel_name, field="channel_name"),
                         reconnect=reconnect)
        if (connection_string is None) == (client is None):
            raise InvalidOptionError(
                "RedisNotificationChannel requires client or connection_string (one of them)"
            )
        if isinstance(client, RedisCluster):  # pub/sub on one node of its own (see below)
            connection_string = plain_node_url(client)
        # Pub/sub is not routed by slot: a PUBLISH on any node of a cluster reaches the
        # subscribers of every node, so the channel listens and publishes on the node named.
        if connection_string is not None and is_cluster_url(connection_string):
            connection_string = node_url(connection_string)
        self._url = connection_string
        self._client: Redis | None = client if isinstance(client, Redis) else None
        self._publish_many: Script | None = None
        self._owns_client = self._client is None
        interval = parse_duration(health_check_interval, field="health_check_interval")
        self._check_every = max(interval, 10) / 1000
        self._probe_channel = f"{channel_name}:probe:{uuid.uuid4().hex}"
        self._probe_sent = False
        self._pubsub: PubSub | None = None
        #: Whether the subscriber connection asked to hear the state channel, and how many
        #: replies to those requests have not arrived yet (the health check counts on the
        #: state channel's subscription only once the server confirmed it).
        self._state_heard = False
        self._state_replies = 0
        self._saved_retry: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connect_lock = asyncio.Lock()
        self._outbox: GroupCommit[tuple[str, str], None] = GroupCommit(self._publish_batch)
        if where is None:
            where = mask_url(connection_string) if connection_string else (
                redacted_address(client, None) if client is not None else "?")
        self._retrying = retrying(where, retry_for)

    def __repr__(self) -> str:
        where = mask_url(self._url) if self._url else "shared client"
        return f"RedisNotificationChannel({where}, channel_name={self.channel_name!r})"

    @property
    def state_channel(self) -> str:
        return f"{self.channel_name}:state"

    @property
    def supports_state_notifications(self) -> bool:
        return True

    def _publisher(self) -> Redis:
        if self._client is None:
            assert self._url is not None
            self._client = server_client_from_url(self._url)
        return self._client

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, notification: JobNotification) -> None:
        self.require_connected("publish")
        await self._send(self.channel_name, notification_to_json(notification))

    async def publish_state(self, notification: JobStateNotification) -> None:
        self.require_connected("publish state")
        await self._send(self.state_channel, notification_to_json(notification))

    def publish_state_soon(
        self, notification: JobStateNotification, on_failure: OnFailure
    ) -> bool:
        self.require_connected("publish state")
        self._outbox.submit_detached(
            (self.state_channel, notification_to_json(notification)), on_failure)
        return True

    async def _send(self, channel: str, payload: str) -> None:
        """Publish; the messages of callers that publish at the same moment (jobs finishing
        together) go out in one command, in call order."""
        await self._outbox.submit((channel, payload))

    async def _publish_batch(self, messages: list[tuple[str, str]]) -> list[None]:
        """Publish ``messages`` in one command, repeated through an outage (past the bound:
        ``BackendUnavailableError`` for every message of the batch)."""
        client = self._publisher()
        args = [item for message in messages for item in message]
        if self._publish_many is None:
            self._publish_many = register_script(client, _PUBLISH_MANY)
        publish_many = self._publish_many

        async def send(_: Attempt) -> None:
            if len(messages) == 1:
                await publish(client, *messages[0])
            else:  # one command for the lot (a pipeline would need cleaning up if dropped)
                await publish_many(keys=[], args=args)

        await self._retrying.run(send)
        return [None] * len(messages)

    # -- listening ---------------------------------------------------------------------------

    def subscribe_state(self, handler: StateNotificationHandler) -> Unsubscribe:
        unsubscribe = super().subscribe_state(handler)
        self._follow_state_subscribers()

        def remove() -> None:
            unsubscribe()
            self._follow_state_subscribers()

        return remove

    def _follow_state_subscribers(self) -> None:
        """(Un)subscribe the listening connection from the state channel when this channel
        gained its first state subscriber or lost its last. Not listening yet: ``_open``
        does it."""
        wanted = bool(self._state_handlers)
        if wanted == self._state_heard or not self._tasks or self._pubsub is None:
            return
        command = "SUBSCRIBE" if wanted else "UNSUBSCRIBE"
        if send_at_once(self._pubsub, command, self.state_channel):
            self._state_heard = wanted
            self._state_replies += 1
        # else the connection is closing: the listener fails and the reconnect subscribes

    async def connect(self) -> None:
        """Connect and subscribe; a second call while connected (two schedulers sharing one
        backend) does nothing. Called from a task that is being cancelled (a job finishing
        while its event loop shuts down), it raises ``CancelledError`` rather than start a
        listener that would outlive the loop."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        async with self._connect_lock:
            if self.state != "connected":
                await super().connect()

    async def _open(self) -> None:
        await self._close()  # never two listeners
        client = self._publisher()
        self._pubsub = pubsub = subscriber(client)
        try:
            self._saved_retry = await connect_subscriber(pubsub)
            await pubsub.subscribe(self.channel_name, self._probe_channel)
        except UNREACHABLE as error:
            where = mask_url(self._url) if self._url else redacted_address(client, None)
            reason = redacted_error(error)
            raise BackendUnavailableError(
                f"cannot subscribe to {self.channel_name!r} at {where}: {reason}"
            ) from None
        inbox = _Inbox()
        loop = asyncio.get_running_loop()
        self._probe_sent = False
        self._state_heard, self._state_replies = False, 0
        self._tasks = [loop.create_task(self._listen(pubsub, inbox)),
                       loop.create_task(self._dispatch(inbox))]
        self._follow_state_subscribers()

    async def _listen(self, pubsub: PubSub, inbox: _Inbox) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self._check_every
        try:
            while True:
                message = await pubsub.get_message(timeout=min(1.0, self._check_every))
                if message is not None and self._route(message, inbox):
                    # The subscribers were idle: let what they started (an idle worker's
                    # claim, or the subscribers' task first) send its command before this
                    # task reads again; a read costs redis-py about 0.1 ms, on the way
                    # from an enqueue to its job's start.
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                if loop.time() >= next_check:
                    await self._check_health()
                    next_check = loop.time() + self._check_every
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the connection died (or worse): start over
            self.connection_lost(error)

    def _route(self, message: Mapping[str, Any], inbox: _Inbox) -> bool:
        """Hand ``message`` to the subscribers; whether it woke them (nothing was waiting)."""
        channel = text(message.get("channel"))
        woke = False
        if message.get("type") != "message":  # a reply to (UN)SUBSCRIBE
            if channel == self.state_channel and self._state_replies:
                self._state_replies -= 1
        elif channel == self._probe_channel:
            self._probe_sent = False
        elif channel == self.state_channel and not self._state_handlers:
            pass  # a state subscriber just left: nobody here wants it
        else:
            woke = inbox.idle and self.all_settled
            if woke and channel == self.channel_name:
                self._deliver_now(message.get("data"))
            elif not inbox.put((channel, message.get("data"))):
                log.debug("dropped a notification: %d are waiting for the subscribers",
                          MAX_PENDING)
        return woke

    def _deliver_now(self, payload: Any) -> None:
        """A job notification that finds the subscribers idle (an idle worker's wake-up)
        skips the inbox: they are called from the listener's task (``deliver_at_once``)."""
        if not self._handlers:
            return
        try:
            notification = notification_from_json(payload)
        except Exception as error:  # a forged or malformed message: a hint at most
            log.warning("ignored a malformed message on %r: %s", self.channel_name, error)
            return
        self.deliver_at_once(notification)

    async def _check_health(self) -> None:
        if self._probe_sent:
            raise ConnectionError(
                f"the Redis subscriber connection did not deliver a probe within "
                f"{self._check_every:g}s"
            )
        client = self._publisher()
        names = [self.channel_name]
        if self._state_heard and not self._state_replies:
            names.append(self.state_channel)
        counts = dict(text([list(item) for item in await client.pubsub_numsub(*names)]))
        if not all(counts.get(name) for name in names):
            raise ConnectionError(f"the subscription to {self.channel_name!r} was lost")
        self._probe_sent = True
        await client.publish(self._probe_channel, "probe")

    async def _dispatch(self, inbox: _Inbox) -> None:
        while True:
            channel, payload = await inbox.get()
            await self.settled()  # one delivered at once came first
            try:  # parsed only when someone subscribes to what arrived
                if channel == self.channel_name and self._handlers:
                    await self.notify_handlers(notification_from_json(payload))
                elif channel == self.state_channel and self._state_handlers:
                    await self.notify_state_handlers(state_notification_from_json(payload))
            except Exception as error:  # a forged or malformed message: a hint at most
                log.warning("ignored a malformed message on %r: %s", channel, error)

    async def _close(self) -> None:
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                await cancel_and_wait(task)
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await close_subscriber(pubsub, self._saved_retry)

    async def disconnect(self) -> None:
        await super().disconnect()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            self._publish_many = None
            await client.aclose()


class _Inbox:
    """Messages waiting for the subscribers, in arrival order. It waits on a bare future, not
    an ``asyncio.Queue``, so that a task dropped together with its event loop dies quietly."""

    def __init__(self) -> None:
        self._items: deque[tuple[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        """Whether the subscribers' task waits for a message (none is queued)."""
        return self._waiter is not None and not self._waiter.done()

    def put(self, item: tuple[str, Any]) -> bool:
        if len(self._items) >= MAX_PENDING:
            return False
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return True

    async def get(self) -> tuple[str, Any]:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._items.popleft()
