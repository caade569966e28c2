"""Redis storage and pub/sub notifications, sharing Agenda v6's keys, encodings and channels.

A Node Agenda v6 process and agenda-decl workers can share one Redis: jobs live in Agenda's
``job:{id}`` hashes (every value a string, ``'null'`` for absent) with its ``jobs:all``,
``jobs:by_name:{name}``, ``jobs:by_next_run_at`` and ``jobs:single:{name}`` keys, ids are UUIDs,
and notifications go to Agenda's channels (``agenda:jobs`` and ``agenda:jobs:state``) as
Agenda's JSON. Every write and multi-key read is one Lua script (``_redis_lua``), so it is
atomic; a claim reads only the jobs that are due (plus stale locks), never every job of a
name. Redis Cluster is not supported (the scripts address job hashes by id).

    backend = RedisBackend(connection_string="redis://localhost:6379/0")
    agenda = Agenda(backend=backend)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisError

from agenda_decl._clock import truncate_ms
from agenda_decl._convert import (
    notification_from_json,
    notification_to_json,
    state_notification_from_json,
)
from agenda_decl._model import (
    JobId,
    JobNotification,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    JobStateNotification,
    RemoveJobsOptions,
)
from agenda_decl.backends import _redis_codec as codec
from agenda_decl.backends import _redis_lua as lua
from agenda_decl.backends import base
from agenda_decl.errors import (
    BackendUnavailableError,
    InvalidOptionError,
    NotConnectedError,
)
from agenda_decl.interfaces import AgendaBackend, NotificationChannel
from agenda_decl.notifications.base import BaseNotificationChannel, ReconnectOptions
from agenda_decl.timing import parse_duration

__all__ = ["RedisBackend", "RedisJobRepository", "RedisNotificationChannel"]

log = logging.getLogger("agenda_decl.backends.redis")

#: Members of ``jobs:by_name:{name}`` each claim looks at for locks written by Node Agenda.
SWEEP_COUNT = 100
#: Connections of a client built from a connection string (one listens for notifications).
MAX_CONNECTIONS = 64
#: Notifications waiting for the subscribers; beyond this they are dropped (they are hints).
MAX_PENDING = 10_000
_NAME = re.compile(r"^[A-Za-z0-9_.:{}/-]{1,128}$")


# -- connections and secrets ------------------------------------------------------------------


def _check_name(value: str, *, field: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidOptionError(
            f"invalid {field}: {value!r} (1 to 128 letters, digits or _ . : {{ }} / -)"
        )
    return value


def _client_from_url(url: str) -> Redis:
    """An owned client: strings back, short retries (the scheduler polls again anyway), and a
    pool that makes a burst of commands wait for a connection instead of failing."""
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=30,
            decode_responses=True,
            socket_connect_timeout=5,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 2),
        )
    except ValueError:
        raise InvalidOptionError(
            f"invalid Redis connection string {base.redact_url(url)!r} "
            "(expected redis://, rediss:// or unix://)"
        ) from None
    return Redis.from_pool(pool)


def _where(client: Redis, url: str | None) -> str:
    """Where the client points, for messages (never with the password)."""
    if url is not None:
        return base.redact_url(url)
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _explain(error: BaseException, client: Redis) -> str:
    """An error message with any password of ``client`` blanked out."""
    text = f"{type(error).__name__}: {error}"
    password = client.connection_pool.connection_kwargs.get("password")
    return text.replace(password, "***") if isinstance(password, str) and password else text


# -- the repository ---------------------------------------------------------------------------


class RedisJobRepository(base.ClaimsInBatches, base.WritesStatesInBatches):
    """Jobs in Agenda v6's Redis layout under ``key_prefix``. Never closes ``client``."""

    def __init__(self, client: Redis, *, key_prefix: str = "agenda:", where: str | None = None):
        self._client = client
        self.key_prefix = _check_name(key_prefix, field="key_prefix")
        self._where = where or _where(client, None)
        self._scripts = {
            script: client.register_script(script)
            for script in (lua.CLAIM, lua.LOCK_JOB, lua.UNLOCK, lua.SAVE_STATES, lua.INSERT,
                           lua.SAVE_BY_ID, lua.SAVE_SINGLE, lua.SAVE_UNIQUE, lua.MODIFY,
                           lua.QUERY, lua.OVERVIEW, lua.QUEUE_SIZE)
        }

    def __repr__(self) -> str:
        return f"RedisJobRepository({self._where}, key_prefix={self.key_prefix!r})"

    async def _run(self, script: str, *args: str) -> Any:
        return codec.text(await self._scripts[script](keys=[], args=[self.key_prefix, *args]))

    async def connect(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as error:
            raise BackendUnavailableError(
                f"cannot reach Redis at {self._where}: {_explain(error, self._client)}"
            ) from None
        await self._check_eviction()

    async def _check_eviction(self) -> None:
        """An evicting Redis drops jobs without a word: say so at connect."""
        try:
            info = await self._client.info("memory")
        except RedisError:  # INFO may be denied by an ACL; the check is advice only
            return
        policy = codec.text(info.get("maxmemory_policy"))
        if policy not in (None, "noeviction"):
            log.warning(
                "Redis at %s evicts keys under memory pressure (maxmemory-policy %s): jobs can "
                "be lost silently; set maxmemory-policy noeviction", self._where, policy,
            )

    async def server_now(self) -> datetime | None:
        seconds, micros = await self._client.time()
        return truncate_ms(datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros))

    # -- reading -----------------------------------------------------------------------------

    async def query_jobs(self, options: JobsQueryOptions | None = None) -> JobsResult:
        options = options or JobsQueryOptions()
        base.check_data_filter(options.data)
        criteria = base.id_name_criteria(options)
        if criteria.matches_nothing():
            return JobsResult(jobs=[], total=0)
        names = await self._query_names(options, criteria.names)
        if names == []:
            return JobsResult(jobs=[], total=0)
        sort = list(options.sort.items()) if options.sort else [
            ("next_run_at", "desc"), ("last_run_at", "desc"),
        ]
        spec: dict[str, Any] = {
            "sort": sort, "skip": options.skip, "limit": options.limit,
            "includeDisabled": options.include_disabled,
        }
        if criteria.ids is not None:
            spec["ids"] = list(criteria.ids)
        if names is not None:
            spec["names"] = names
        if options.state is not None:
            spec["state"] = options.state
        if options.data is not None:
            spec["data"] = codec.tagged(options.data)
        total, *page = await self._run(lua.QUERY, codec.encode_json(spec))
        jobs = [
            codec.with_state(codec.job_from_values(page[i + 1]), page[i])
            for i in range(0, len(page), 2)
        ]
        return JobsResult(jobs=jobs, total=int(total))

    async def _query_names(
        self, options: JobsQueryOptions, names: Sequence[str] | None
    ) -> list[str] | None:
        """The names to look at (``None`` = all) among the folded ``names`` of the criteria;
        ``search`` is matched here, on the names."""
        if options.search is None:
            return None if names is None else list(names)
        needle = options.search.lower()
        pool = names if names is not None else await self.get_distinct_job_names()
        return [name for name in pool if needle in name.lower()]

    async def get_jobs_overview(self) -> list[JobsOverview]:
        flat = await self._run(lua.OVERVIEW)
        keys = ("total", "running", "scheduled", "queued", "completed", "failed", "repeating",
                "paused")
        entries = [
            JobsOverview(name=flat[i], **{k: int(v) for k, v in zip(keys, flat[i + 1 : i + 9],
                                                                     strict=True)})
            for i in range(0, len(flat), 9)
        ]
        return sorted(entries, key=lambda entry: entry.name)

    async def get_distinct_job_names(self) -> list[str]:
        """From the ``jobs:by_name:*`` keys, with SCAN (never KEYS, which blocks the server)."""
        prefix = f"{self.key_prefix}jobs:by_name:"
        names: set[str] = set()
        pattern = codec.glob_escape(prefix) + "*"
        async for key in self._client.scan_iter(match=pattern, count=1000):
            names.add(codec.text(key)[len(prefix) :])
        return sorted(names)

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        if not isinstance(job_id, str) or not job_id:
            return None
        values = await self._client.hmget(f"{self.key_prefix}job:{job_id}", lua.JOB_FIELDS)
        fields = dict(zip(lua.JOB_FIELDS, codec.text(values), strict=True))
        return codec.job_from_hash(fields, job_id) if fields["name"] is not None else None

    async def get_queue_size(self) -> int:
        return int(await self._run(lua.QUEUE_SIZE))

    # -- writing -----------------------------------------------------------------------------

    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._modify("remove", options)

    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._modify("disable", options)

    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        return await self._modify("enable", options)

    async def _modify(self, action: str, options: RemoveJobsOptions) -> int:
        if options.matches_nothing():
            return 0
        base.check_data_filter(options.data)
        criteria = base.id_name_criteria(options)
        if criteria.matches_nothing():
            return 0
        spec: dict[str, Any] = {}
        if criteria.ids is not None:
            spec["ids"] = list(criteria.ids)
        if criteria.names is not None:
            spec["names"] = list(criteria.names)
        if criteria.not_names is not None:
            spec["notNames"] = list(criteria.not_names)
        if options.data is not None:
            spec["data"] = codec.tagged(options.data)
        return int(await self._run(lua.MODIFY, action, codec.encode_json(spec)))

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        data = base.check_job(job)
        if job.id is not None:
            script, job_id, options = lua.SAVE_BY_ID, str(job.id), {"type": job.type}
        else:
            script, job_id, options = _save_script(job), str(uuid.uuid4()), {}
            if script == lua.SAVE_UNIQUE:
                options = codec.unique_options(job)
        stored = await self._run(
            script, job.name, job_id, codec.ms_arg(job.next_run_at), str(job.priority),
            codec.ms_arg(now), codec.encode_json(options),
            *codec.job_fields(job, data, last_modified_by),
        )
        if script == lua.INSERT:
            return codec.inserted(job, job_id, data, last_modified_by)
        return job if stored is None else codec.job_from_values(stored)

    async def save_job_states(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        lock_tokens: Mapping[str, datetime] | None = None,
    ) -> list[JobId]:
        """One script call per 500 jobs; returns the ids not written (gone or fenced out)."""
        if any(job.id is None for job in jobs):
            raise ValueError("Cannot save job state without job ID")
        tokens = lock_tokens or {}
        missing: list[JobId] = []
        for chunk in base.chunks(list(jobs), 500):
            states = codec.encode_json([
                codec.state_args(job, last_modified_by, tokens.get(str(job.id)))
                for job in chunk
            ])
            missing += [JobId(job_id) for job_id in await self._run(lua.SAVE_STATES, states)]
        return missing

    # -- locking -----------------------------------------------------------------------------

    async def lock_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any] | None:
        if job.id is None:
            return None
        stored = await self._run(
            lua.LOCK_JOB, str(job.id), job.name, codec.ms_arg(job.next_run_at), codec.ms_arg(now),
            codec.str_or_null(last_modified_by),
        )
        return None if stored is None else codec.job_from_values(stored)

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        if job.id is not None:
            await self._run(lua.UNLOCK, "1", str(job.id))

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        for chunk in base.chunks([str(job_id) for job_id in job_ids], 1000):
            await self._run(lua.UNLOCK, "0", *chunk)

    async def get_next_jobs_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        limit: int,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> list[JobParameters[Any]]:
        """One script call: see ``_redis_lua.CLAIM`` for what it reads and its cost."""
        if limit <= 0:
            return []
        claimed = await self._run(
            lua.CLAIM, job_name, codec.ms_arg(next_scan_at), codec.ms_arg(lock_deadline),
            codec.ms_arg(now), codec.str_or_null(last_modified_by), str(limit), str(SWEEP_COUNT),
        )
        return [codec.job_from_values(values) for values in claimed]


def _save_script(job: JobParameters[Any]) -> str:
    if job.type == "single":
        return lua.SAVE_SINGLE
    return lua.SAVE_UNIQUE if job.unique else lua.INSERT


# -- the notification channel -----------------------------------------------------------------


class RedisNotificationChannel(BaseNotificationChannel):
    """Redis pub/sub on Agenda's channels: ``channel_name`` for jobs, ``<channel_name>:state``
    for job states. Listens on a connection of its own; publishes through ``client``.

    Every ``health_check_interval`` (ms) it checks that the server still counts a subscriber
    (``PUBSUB NUMSUB``) and that a probe published on a private channel comes back through
    the subscriber connection; a dead, half-open or unsubscribed connection is thus noticed
    within two intervals and replaced (the scheduler polls at once after a reconnect).
    """

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        client: Redis | None = None,
        channel_name: str = "agenda:jobs",
        reconnect: ReconnectOptions | None = None,
        health_check_interval: int | float | timedelta | str = 30_000,
    ) -> None:
        super().__init__(channel_name=_check_name(channel_name, field="channel_name"),
                         reconnect=reconnect)
        if (connection_string is None) == (client is None):
            raise InvalidOptionError(
                "RedisNotificationChannel requires client or connection_string (one of them)"
            )
        self._url = connection_string
        self._client = client
        self._owns_client = client is None
        interval = parse_duration(health_check_interval, field="health_check_interval")
        self._check_every = max(interval, 10) / 1000
        self._probe_channel = f"{channel_name}:probe:{uuid.uuid4().hex}"
        self._probe_sent = False
        self._pubsub: PubSub | None = None
        self._saved_retry: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connect_lock = asyncio.Lock()
        self._outbox: base.Batcher[tuple[str, str], None] = base.Batcher(self._publish_batch)

    def __repr__(self) -> str:
        where = base.redact_url(self._url) if self._url else "shared client"
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
            self._client = _client_from_url(self._url)
        return self._client

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, notification: JobNotification) -> None:
        self.require_connected("publish")
        await self._send(self.channel_name, notification_to_json(notification))

    async def publish_state(self, notification: JobStateNotification) -> None:
        self.require_connected("publish state")
        await self._send(self.state_channel, notification_to_json(notification))

    async def _send(self, channel: str, payload: str) -> None:
        """Publish; the messages of callers that publish at the same moment (jobs finishing
        together) go out in one command, in call order."""
        await self._outbox.submit((channel, payload))

    async def _publish_batch(self, messages: list[tuple[str, str]]) -> list[Exception | None]:
        client = self._publisher()
        try:
            if len(messages) == 1:
                await client.publish(*messages[0])
            else:  # one command for the lot (a pipeline would need cleaning up if dropped)
                args = [item for message in messages for item in message]
                await client.register_script(lua.PUBLISH_MANY)(keys=[], args=args)
        except (RedisError, OSError) as error:
            failure = NotConnectedError(
                f"Cannot publish: channel not connected ({_explain(error, client)})"
            )
            return [failure] * len(messages)
        return [None] * len(messages)

    # -- listening ---------------------------------------------------------------------------

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
        self._pubsub = pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.connect()  # type: ignore[no-untyped-call]
            # Errors must reach us rather than be retried away inside redis-py: a reconnect
            # goes through connection_lost(), so the scheduler sees it and polls at once.
            assert pubsub.connection is not None
            self._saved_retry = pubsub.connection.retry
            pubsub.connection.retry = Retry(NoBackoff(), 0)
            await pubsub.subscribe(self.channel_name, self.state_channel, self._probe_channel)
        except (RedisError, OSError) as error:
            where = base.redact_url(self._url) if self._url else _where(client, None)
            raise BackendUnavailableError(
                f"cannot subscribe to {self.channel_name!r} at {where}: {_explain(error, client)}"
            ) from None
        inbox = _Inbox()
        loop = asyncio.get_running_loop()
        self._probe_sent = False
        self._tasks = [loop.create_task(self._listen(pubsub, inbox)),
                       loop.create_task(self._dispatch(inbox))]

    async def _listen(self, pubsub: PubSub, inbox: _Inbox) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self._check_every
        try:
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=min(1.0, self._check_every)
                )
                if message is not None:
                    self._route(message, inbox)
                if loop.time() >= next_check:
                    await self._check_health()
                    next_check = loop.time() + self._check_every
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the connection died (or worse): start over
            self.connection_lost(error)

    def _route(self, message: Mapping[str, Any], inbox: _Inbox) -> None:
        channel = codec.text(message.get("channel"))
        if channel == self._probe_channel:
            self._probe_sent = False
        elif not inbox.put((channel, message.get("data"))):
            log.debug("dropped a notification: %d are waiting for the subscribers", MAX_PENDING)

    async def _check_health(self) -> None:
        if self._probe_sent:
            raise ConnectionError(
                f"the Redis subscriber connection did not deliver a probe within "
                f"{self._check_every:g}s"
            )
        client = self._publisher()
        counts = dict(codec.text([list(item) for item in
                             await client.pubsub_numsub(self.channel_name, self.state_channel)]))
        if not all(counts.get(name) for name in (self.channel_name, self.state_channel)):
            raise ConnectionError(f"the subscription to {self.channel_name!r} was lost")
        self._probe_sent = True
        await client.publish(self._probe_channel, "probe")

    async def _dispatch(self, inbox: _Inbox) -> None:
        while True:
            channel, payload = await inbox.get()
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
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        if pubsub.connection is not None and self._saved_retry is not None:
            pubsub.connection.retry = self._saved_retry  # it goes back to the client's pool
        with contextlib.suppress(RedisError, OSError):  # closing ends the subscriptions
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def disconnect(self) -> None:
        await super().disconnect()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class _Inbox:
    """Messages waiting for the subscribers, in arrival order. It waits on a bare future, not
    an ``asyncio.Queue``, so that a task dropped together with its event loop dies quietly."""

    def __init__(self) -> None:
        self._items: deque[tuple[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None

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


# -- the backend ------------------------------------------------------------------------------


class RedisBackend(AgendaBackend):
    """Agenda v6's Redis backend: storage under ``key_prefix`` and pub/sub notifications on
    ``channel_name`` (none with ``disable_notifications``). A ``client`` passed in is shared
    by both and never closed; one built from ``connection_string`` is closed by
    :meth:`disconnect` (and reopens on the next use)."""

    name = "Redis"

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        client: Redis | None = None,
        key_prefix: str = "agenda:",
        channel_name: str = "agenda:jobs",
        disable_notifications: bool = False,
        health_check_interval: int | float | timedelta | str = 30_000,
    ) -> None:
        if (connection_string is None) == (client is None):
            raise InvalidOptionError(
                "RedisBackend requires client or connection_string (one of them)"
            )
        self._owns_client = client is None
        if client is None:
            assert connection_string is not None
            client = _client_from_url(connection_string)
        self._client = client
        self._where = _where(client, connection_string)
        self._repository = RedisJobRepository(client, key_prefix=key_prefix, where=self._where)
        self._channel = None if disable_notifications else RedisNotificationChannel(
            client=client, channel_name=channel_name, health_check_interval=health_check_interval
        )

    def __repr__(self) -> str:
        return f"RedisBackend({self._where}, key_prefix={self._repository.key_prefix!r})"

    @property
    def client(self) -> Redis:
        return self._client

    @property
    def repository(self) -> RedisJobRepository:
        return self._repository

    @property
    def notification_channel(self) -> NotificationChannel | None:
        return self._channel

    @property
    def owns_connection(self) -> bool:
        return self._owns_client

    async def disconnect(self) -> None:
        await self._repository.close()
        if self._owns_client:
            await self._client.aclose()
