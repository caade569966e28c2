"""The Redis job repository, in Agenda v6's keys and hashes (``codec``).

Every write is one Lua script (``scripts``), so it is atomic; a claim reads
only the due jobs of its own name (plus stale locks), from the name's due index, never every
job of a name nor the due jobs of other names. Listings (``query_jobs``, the overview) read
in slices of bounded work, through Node's next-run index where the order allows
(``listing``).

Through an outage (a restart, a failover) every call is repeated for up to ``retry_for``
(``connectors.redis.retrying``), and every call is safe to repeat: reads; claims and state
writes as ``backends.base.repeats`` says; an insert carries an id made here before the first
attempt and its script stores nothing when a job has that id already, so a repeat after a
lost reply cannot store a second job; single and unique saves decide again from what is
stored; updates by id, removals and unlocks end in the same state however often they run.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from redis.exceptions import RedisError

from agenda_decl._clock import truncate_ms
from agenda_decl._convert import notification_to_json
from agenda_decl._job_data import check_data_filter
from agenda_decl._model import (
    Announcement,
    JobId,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    RemoveJobsOptions,
    wake_ups,
)
from agenda_decl.backends import base
from agenda_decl.backends.base.repeats import moved_by, moved_on, state_already_written
from agenda_decl.backends.redis import codec, scripts
from agenda_decl.backends.redis.listing import Listing
from agenda_decl.connectors.redis import (
    AnyRedis,
    check_name,
    check_reachable,
    redacted_address,
    register_script,
    retrying,
    text,
)
from agenda_decl.connectors.retry import DEFAULT_RETRY_FOR, Attempt
from agenda_decl.timing import Duration

__all__ = ["RedisJobRepository"]

log = logging.getLogger("agenda_decl.backends.redis")

#: Members of ``jobs:by_name:{name}`` each claim looks at for locks written by Node Agenda.
SWEEP_COUNT = 100
#: Keys one SCAN step of ``get_distinct_job_names`` visits (every job hash is a key, so a
#: large store is mostly visited for nothing; a few milliseconds of server time per step).
NAME_SCAN_COUNT = 5_000
#: Job hashes the connect-time heal reads per script call.
HEAL_COUNT = 500
#: The value of ``decl:layout`` once every job of the prefix is in this layout and in the due
#: index of its name (a store marked with an older value is healed again at connect).
LAYOUT = "agendajs-redis-backend-3.0.7+due-index"

#: Jobs of an insert batch from which the records of what it stores are made while the server
#: runs its script (below, the loop turn that costs is worth more than the overlap).
_OVERLAP_FROM = 64

T = TypeVar("T")


class RedisJobRepository(base.ClaimsInBatches, base.WritesStatesInBatches):
    """Jobs in Agenda v6's Redis layout under ``key_prefix``. Never closes ``client``.

    ``read_only=True`` (inspecting: ``agenda-decl plan``, ``jobs``) refuses every write; Redis
    has no schema, so nothing is created anyway, and keys that do not exist read as no jobs.

    ``retry_for`` (default 30 seconds; 0: no retries) bounds how long a call is repeated while
    the server cannot be reached; past it the call raises ``BackendUnavailableError`` naming
    the server.
    """

    def __init__(self, client: AnyRedis, *, key_prefix: str = "agenda:", where: str | None = None,
                 read_only: bool = False, retry_for: Duration = DEFAULT_RETRY_FOR):
        self._client = client
        self.key_prefix = check_name(key_prefix, field="key_prefix")
        self._where = where or redacted_address(client, None)
        self._read_only = read_only
        self._scripts = {script: register_script(client, script) for script in scripts.ALL}
        #: The one key each script declares: the scripts build every other key from the
        #: prefix (ARGV[1]), in the prefix's slot on a cluster; this one routes them there.
        self._route = [f"{self.key_prefix}jobs:all"]
        #: The channel inserts announce themselves on (``announce_on``); None: they do not.
        self._channel: str | None = None
        #: The outage policy of every call (``retry_for``).
        self.retrying = retrying(self._where, retry_for)
        #: The dashboard's reads, in slices of bounded work (``listing``).
        self._listing = Listing(client, self.key_prefix, self._run, self._retried)

    def __repr__(self) -> str:
        return f"RedisJobRepository({self._where}, key_prefix={self.key_prefix!r})"

    def announce_on(self, channel_name: str) -> None:
        """PUBLISH on ``channel_name`` in the script of an insert given an ``announce`` (the
        backend's own pub/sub channel, on the same server: one round trip per enqueue)."""
        self._channel = channel_name

    @property
    def announces_inserts(self) -> bool:
        return self._channel is not None

    async def _run(self, script: str, *args: str) -> Any:
        """Run ``script`` with ``args``, repeated through an outage."""
        return await self._run_each(script, lambda _: args)

    async def _run_each(
        self, script: str, arguments: Callable[[Attempt], Sequence[str]]
    ) -> Any:
        """Run ``script`` with the ``arguments`` of each attempt, repeated through an outage
        (a claim moves its clock-derived arguments on when it is repeated)."""
        if script not in scripts.READ_ONLY:  # every write is a script
            base.refuse_write(self._read_only, repr(self))
        call = self._scripts[script]

        async def attempt(this: Attempt) -> Any:
            return text(await call(keys=self._route, args=[self.key_prefix, *arguments(this)]))

        return await self.retrying.run(attempt)

    async def _retried(self, operation: Callable[[], Awaitable[T]]) -> T:
        """A call that is not a script, repeated through an outage."""
        return await self.retrying.run(lambda _: operation())

    async def connect(self) -> None:
        await check_reachable(self._client, self._where)
        await self._check_eviction()
        if not self._read_only:
            await self._heal()

    async def _heal(self) -> None:
        """Bring every job hash of the prefix to Node 3.0.7's form once (the ``heal`` block of
        ``save.lua``: no ``lockedAt`` field, no ``'null'`` data) and into the due index of its
        name, in slices of ``jobs:all``
        (SSCAN), one script call each; then ``decl:layout`` says it is done, and later
        connects read that key only. Hashes agenda-decl 0.1 workers still running write
        afterwards keep their ``lockedAt`` until a lock write of ours drops it; they are
        read correctly meanwhile (see ``scripts``)."""
        marker = f"{self.key_prefix}decl:layout"
        if text(await self._client.get(marker)) == LAYOUT:
            return
        changed, cursor = 0, 0
        while True:
            cursor, ids = await self._client.sscan(  # type: ignore[misc, unused-ignore]
                f"{self.key_prefix}jobs:all", cursor, count=HEAL_COUNT)
            if ids:
                changed += int(await self._run(scripts.HEAL, *text(ids)))
            if cursor == 0:
                break
        if changed:
            log.info("Redis at %s: %d job hashes of prefix %r brought to Node Agenda's form "
                     "(lockedAt dropped, 'null' data as '{}')", self._where, changed,
                     self.key_prefix)
        await self._client.set(marker, LAYOUT)

    async def _check_eviction(self) -> None:
        """An evicting Redis drops jobs without a word: say so at connect."""
        try:
            info = await self._client.info("memory")
        except RedisError:  # INFO may be denied by an ACL; the check is advice only
            return
        policy = text(info.get("maxmemory_policy"))
        if policy not in (None, "noeviction"):
            log.warning(
                "Redis at %s evicts keys under memory pressure (maxmemory-policy %s): jobs can "
                "be lost silently; set maxmemory-policy noeviction", self._where, policy,
            )

    async def server_now(self) -> datetime | None:
        seconds, micros = await self._retried(self._client.time)
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
        ids = list(criteria.ids) if criteria.ids is not None else None
        return await self._listing.query(options, ids, names)

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
        return await self._listing.overview()

    async def get_distinct_job_names(self) -> list[str]:
        """From the ``jobs:by_name:*`` keys, with SCAN (never KEYS, which blocks the server)."""
        prefix = f"{self.key_prefix}jobs:by_name:"
        pattern = codec.glob_escape(prefix) + "*"

        async def scan() -> list[str]:
            names: set[str] = set()
            async for key in self._client.scan_iter(match=pattern, count=NAME_SCAN_COUNT):
                names.add(text(key)[len(prefix) :])
            return sorted(names)

        return await self._retried(scan)

    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        if not isinstance(job_id, str) or not job_id:
            return None
        key = f"{self.key_prefix}job:{job_id}"

        async def read() -> Any:
            # redis < 8 types async commands as `Awaitable[T] | T` (hence the ignores).
            return await self._client.hmget(  # type: ignore[misc, unused-ignore]
                key, scripts.JOB_FIELDS,  # type: ignore[arg-type, unused-ignore]
            )

        values = await self._retried(read)
        fields = dict(zip(scripts.JOB_FIELDS, text(values), strict=True))
        return codec.job_from_hash(fields, job_id) if fields["name"] is not None else None

    async def get_queue_size(self) -> int:
        return int(await self._run(scripts.QUEUE_SIZE))

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
        return int(await self._run(scripts.MODIFY, action, codec.encode_json(spec)))

    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        data = base.check_job(job)
        options: dict[str, Any]
        if job.id is not None:
            script, job_id, options = scripts.SAVE_BY_ID, str(job.id), {"type": job.type}
        else:
            script, job_id, options = _save_script(job), str(uuid.uuid4()), {}
            if script == scripts.SAVE_UNIQUE:
                options = codec.unique_options(job)
        options["noData"] = job.data is None
        stored = await self._run(
            script, job.name, job_id, codec.ms_arg(job.next_run_at), str(job.priority),
            codec.ms_arg(now), codec.encode_json(options),
            *codec.job_fields(job, data, last_modified_by),
        )
        if script == scripts.INSERT:
            return codec.inserted(job, job_id, data, last_modified_by)
        return job if stored is None else codec.job_from_values(stored)

    async def insert_jobs(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        announce: Announcement | None = None,
    ) -> list[JobParameters[Any]]:
        """One ``insert_many`` script call per batch, which PUBLISHes the batch's
        notifications itself when announcing."""
        encoded = base.check_inserts(jobs)
        stored: list[JobParameters[Any]] = []
        for start in range(0, len(jobs), base.INSERT_BATCH):
            end = start + base.INSERT_BATCH
            stored += await self._insert_batch(jobs[start:end], encoded[start:end],
                                               last_modified_by, announce)
        return stored

    async def _insert_batch(
        self, jobs: Sequence[JobParameters[Any]], encoded: Sequence[str], by: str | None,
        announce: Announcement | None,
    ) -> list[JobParameters[Any]]:
        ids = base.random_ids(len(jobs))
        if len(jobs) < _OVERLAP_FROM:  # made first, and the notifications come from them
            inserted = codec.inserted_all(jobs, ids, encoded, by)
            await self._run(*self._insert_args(announce, inserted, jobs, ids, encoded, by))
            return inserted
        # A large batch: only the records its notifications announce are made before the
        # script goes out; the rest while the server runs it.
        announced = _announced(jobs, ids, encoded, by)
        sent = asyncio.ensure_future(
            self._run(*self._insert_args(announce, announced, jobs, ids, encoded, by)))
        try:
            await asyncio.sleep(0)  # the script's first step: the command goes out
            inserted = codec.inserted_all(jobs, ids, encoded, by)
        except BaseException:
            sent.cancel()
            raise
        await sent
        return inserted

    def _insert_args(
        self, announce: Announcement | None, announced: Sequence[JobParameters[Any]],
        jobs: Sequence[JobParameters[Any]], ids: Sequence[str], encoded: Sequence[str],
        by: str | None,
    ) -> tuple[str, ...]:
        """``INSERT_MANY`` and its arguments: the groups of the batch and the notifications
        of ``announced`` (one per name) when announcing."""
        messages = [] if announce is None or self._channel is None else [
            [self._channel, notification_to_json(notification)]
            for notification in announce.notifications(announced)]
        groups = codec.insert_groups(jobs, ids, encoded, by)
        return (scripts.INSERT_MANY, "", codec.encode_json(groups), codec.encode_json(messages))

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
            rejected = set(await self._run(scripts.SAVE_STATES, states))
            for job in chunk:
                if str(job.id) in rejected and not await self._written_before(
                    job, last_modified_by
                ):
                    missing.append(JobId(str(job.id)))
        return missing

    async def _written_before(self, job: JobParameters[Any], by: str | None) -> bool:
        """Whether a state write that came back "not written" finds ``job`` written already,
        by an attempt whose reply was lost (ours, or redis-py's own retry; see
        ``base.repeats``)."""
        return state_already_written(await self.get_job_by_id(str(job.id)), job, by)

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
        job_id = str(job.id)
        stored = await self._run_each(scripts.LOCK_JOB, lambda attempt: [
            job_id, job.name, codec.ms_arg(job.next_run_at),
            codec.ms_arg(moved_on(now, moved_by(attempt))), codec.str_or_null(last_modified_by),
        ])
        return None if stored is None else codec.job_from_values(stored)

    async def unlock_job(self, job: JobParameters[Any]) -> None:
        if job.id is not None:
            await self._run(scripts.UNLOCK, "1", str(job.id))

    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        for chunk in base.chunks([str(job_id) for job_id in job_ids], 1000):
            await self._run(scripts.UNLOCK, "0", *chunk)

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
        """One script call: see the ``claim`` block of ``claim.lua`` for what it reads and its
        cost."""
        if limit <= 0:
            return []

        def arguments(attempt: Attempt) -> list[str]:
            moved = moved_by(attempt)
            return [
                job_name, codec.ms_arg(next_scan_at + moved),
                codec.ms_arg(lock_deadline + moved), codec.ms_arg(moved_on(now, moved)),
                codec.str_or_null(last_modified_by), str(limit), str(SWEEP_COUNT),
            ]

        claimed = await self._run_each(scripts.CLAIM, arguments)
        return [codec.job_from_values(values) for values in claimed]


def _announced(
    jobs: Sequence[JobParameters[Any]], ids: Sequence[str], encoded: Sequence[str],
    by: str | None,
) -> list[JobParameters[Any]]:
    """The records of the jobs of a batch its notifications announce (``wake_ups``: one per
    name), made before the rest: the notifications go out with the script."""
    chosen = wake_ups([(job.name, job.next_run_at) for job in jobs])
    return codec.inserted_all([jobs[k] for k in chosen], [ids[k] for k in chosen],
                              [encoded[k] for k in chosen], by)


def _save_script(job: JobParameters[Any]) -> str:
    if job.type == "single":
        return scripts.SAVE_SINGLE
    return scripts.SAVE_UNIQUE if job.unique else scripts.INSERT
