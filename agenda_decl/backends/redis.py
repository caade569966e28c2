"""Redis storage and pub/sub notifications, sharing Agenda v6's keys, encodings and channels.

A Node Agenda v6 process and agenda-decl workers can share one Redis: jobs live in Agenda's
``job:{id}`` hashes (every value a string, ``'null'`` for absent) with its ``jobs:all``,
``jobs:by_name:{name}``, ``jobs:by_next_run_at`` and ``jobs:single:{name}`` keys, ids are UUIDs,
and notifications go to Agenda's channels (``agenda:jobs`` and ``agenda:jobs:state``) as
Agenda's JSON. Every write and multi-key read is one Lua script (``_redis_lua``), so it is
atomic; a claim reads only the jobs that are due (plus stale locks), never every job of a
name. Redis Cluster is not supported (the scripts address job hashes by id). The notification
channel lives in ``_redis_channel`` and is re-exported here.

    backend = RedisBackend(connection_string="redis://localhost:6379/0")
    agenda = Agenda(backend=backend)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from agenda_decl._clock import truncate_ms
from agenda_decl._job_data import check_data_filter
from agenda_decl._model import (
    JobId,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
)
from agenda_decl.backends import _redis_codec as codec
from agenda_decl.backends import _redis_lua as lua
from agenda_decl.backends import base
from agenda_decl.backends._redis_channel import RedisNotificationChannel
from agenda_decl.backends._redis_connection import (
    check_name,
    client_from_url,
    redacted_address,
    redacted_error,
)
from agenda_decl.errors import BackendUnavailableError, InvalidOptionError
from agenda_decl.interfaces import AgendaBackend, NotificationChannel

__all__ = ["RedisBackend", "RedisJobRepository", "RedisNotificationChannel"]

log = logging.getLogger("agenda_decl.backends.redis")

#: Members of ``jobs:by_name:{name}`` each claim looks at for locks written by Node Agenda.
SWEEP_COUNT = 100


# -- the repository ---------------------------------------------------------------------------


#: The scripts that only read; a read-only repository runs no other.
_READ_SCRIPTS = frozenset({lua.QUERY, lua.OVERVIEW, lua.QUEUE_SIZE})


class RedisJobRepository(base.ClaimsInBatches, base.WritesStatesInBatches):
    """Jobs in Agenda v6's Redis layout under ``key_prefix``. Never closes ``client``.

    ``read_only=True`` (inspecting: ``agenda-decl plan``, ``jobs``) refuses every write; Redis
    has no schema, so nothing is created anyway, and keys that do not exist read as no jobs.
    """

    def __init__(self, client: Redis, *, key_prefix: str = "agenda:", where: str | None = None,
                 read_only: bool = False):
        self._client = client
        self.key_prefix = check_name(key_prefix, field="key_prefix")
        self._where = where or redacted_address(client, None)
        self._read_only = read_only
        self._scripts = {
            script: client.register_script(script)
            for script in (lua.CLAIM, lua.LOCK_JOB, lua.UNLOCK, lua.SAVE_STATES, lua.INSERT,
                           lua.SAVE_BY_ID, lua.SAVE_SINGLE, lua.SAVE_UNIQUE, lua.MODIFY,
                           lua.QUERY, lua.OVERVIEW, lua.QUEUE_SIZE)
        }

    def __repr__(self) -> str:
        return f"RedisJobRepository({self._where}, key_prefix={self.key_prefix!r})"

    async def _run(self, script: str, *args: str) -> Any:
        if script not in _READ_SCRIPTS:  # every write is a script
            base.refuse_write(self._read_only, repr(self))
        return codec.text(await self._scripts[script](keys=[], args=[self.key_prefix, *args]))

    async def connect(self) -> None:
        try:
            # redis < 8 types async commands as `Awaitable[T] | T` (the ignores below too).
            await self._client.ping()  # type: ignore[misc, unused-ignore]
        except (RedisError, OSError) as error:
            raise BackendUnavailableError(
                f"cannot reach Redis at {self._where}: {redacted_error(error)}"
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
        check_data_filter(options.data)
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
            base.with_state(codec.job_from_values(page[i + 1]), page[i])
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
        values = await self._client.hmget(  # type: ignore[misc, unused-ignore]
            f"{self.key_prefix}job:{job_id}",
            lua.JOB_FIELDS,  # type: ignore[arg-type, unused-ignore]
        )
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
        check_data_filter(options.data)
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


# -- the backend ------------------------------------------------------------------------------


class RedisBackend(AgendaBackend):
    """Agenda v6's Redis backend: storage under ``key_prefix`` and pub/sub notifications on
    ``channel_name`` (none with ``disable_notifications`` or ``read_only``). A ``client``
    passed in is shared by both and never closed; one built from ``connection_string`` is
    closed by :meth:`disconnect` (and reopens on the next use). ``read_only=True`` is for
    inspecting: see :class:`RedisJobRepository`."""

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
        read_only: bool = False,
    ) -> None:
        if (connection_string is None) == (client is None):
            raise InvalidOptionError(
                "RedisBackend requires client or connection_string (one of them)"
            )
        self._owns_client = client is None
        if client is None:
            assert connection_string is not None
            client = client_from_url(connection_string)
        self._client = client
        self._where = redacted_address(client, connection_string)
        self._repository = RedisJobRepository(client, key_prefix=key_prefix, where=self._where,
                                              read_only=read_only)
        # Inspecting needs no notifications.
        off = disable_notifications or read_only
        self._channel = None if off else RedisNotificationChannel(
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
