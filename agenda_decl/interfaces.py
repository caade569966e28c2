"""The contracts between the scheduler and its storage and notification backends.

Every method is ``async``. A backend is a :class:`JobRepository` (required) plus an optional
:class:`NotificationChannel`, and the store's built-in :class:`JobLogger`; they may come from
different technologies. One conformance suite (``tests/conformance``) checks every
implementation against the guarantees stated here.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from agenda_decl._job_log import JobLogEntry, JobLogQuery, JobLogQueryResult, JobLogRetention
from agenda_decl._model import (
    Announcement,
    JobId,
    JobNotification,
    JobParameters,
    JobsOverview,
    JobsQueryOptions,
    JobsResult,
    JobStateNotification,
    NotificationChannelState,
    RemoveJobsOptions,
)
from agenda_decl.errors import JobNotFoundError, LockLostError

NotificationHandler = Callable[[JobNotification], Awaitable[None] | None]
StateNotificationHandler = Callable[[JobStateNotification], Awaitable[None] | None]
Unsubscribe = Callable[[], None]
ChannelEvent = Literal["stateChange", "error"]


class JobRepository(abc.ABC):
    """Where jobs live. Implementations must be safe for several workers on one store.

    Ids are opaque strings chosen by the store. Datetimes go in and come out aware UTC, at
    millisecond precision. Job ``data`` is JSON: anything else is refused at save time.
    """

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections and create the schema if configured. Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most stores need none
        """Release what :meth:`connect` opened (never a connection that was passed in)."""

    async def server_now(self) -> datetime | None:
        """The store's own clock, or ``None`` when it has none worth trusting.

        The scheduler measures the skew between this and its own clock and computes lock
        deadlines and scan windows on the store's time, so a worker whose clock runs ahead
        cannot take over a live lock early.
        """
        return None

    # -- reading -------------------------------------------------------------------------

    @abc.abstractmethod
    async def query_jobs(self, options: JobsQueryOptions | None = None) -> JobsResult:
        """Jobs matching ``options`` with their computed state (one ``now`` per query).

        Filtering, the state filter, sorting and paging happen in the store (Redis reads in
        bounded slices and sorts here for keys no index of its own serves). ``total`` counts
        matches after the state filter and before ``skip``/``limit``; a store that would have
        to read every job to count them may stop past a bound (Redis with a state or data
        filter): then ``total_exact`` is False and ``total`` a lower bound, at least the end
        of the page. An id the store could never have issued matches nothing (no error).
        """

    @abc.abstractmethod
    async def get_jobs_overview(self) -> list[JobsOverview]:
        """One entry per distinct name, sorted by name, counting jobs per computed state;
        disabled jobs also count under ``paused``."""

    @abc.abstractmethod
    async def get_distinct_job_names(self) -> list[str]:
        """Every job name present, once each, sorted."""

    @abc.abstractmethod
    async def get_job_by_id(self, job_id: str) -> JobParameters[Any] | None:
        """The stored job, or ``None`` when missing or when ``job_id`` is malformed."""

    @abc.abstractmethod
    async def get_queue_size(self) -> int:
        """How many jobs have ``next_run_at`` strictly before now (locks and ``disabled``
        are ignored)."""

    # -- writing -------------------------------------------------------------------------

    @abc.abstractmethod
    async def remove_jobs(self, options: RemoveJobsOptions) -> int:
        """Delete the jobs matching every given criterion; return how many were deleted.

        Every criterion applies, ``id`` and ``ids`` (and ``name``, ``names`` and ``not_names``)
        together, not the first one given. Options that select nothing (see
        ``RemoveJobsOptions.matches_nothing``) delete nothing.
        """

    @abc.abstractmethod
    async def disable_jobs(self, options: RemoveJobsOptions) -> int:
        """Set ``disabled`` on matches (same criteria as remove); return the number matched."""

    @abc.abstractmethod
    async def enable_jobs(self, options: RemoveJobsOptions) -> int:
        """Clear ``disabled`` on matches (same criteria as remove); return the number matched."""

    @abc.abstractmethod
    async def save_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any]:
        """Insert or update a job; return the stored record (with its id).

        Branches, in order: (1) ``id`` set: update that job (matched on id and name), never
        touching processor fields; a missing job returns the input unchanged. (2) ``type ==
        "single"``: atomic upsert on the name; an incoming ``next_run_at <= now`` does not
        replace a stored non-null one while the stored timing (``_model.TIMING_FIELDS``)
        equals the incoming one (a changed timing takes the incoming ``next_run_at``). (3)
        ``unique`` set: upsert on the unique key (field paths such as ``data.user_id``) plus
        the name; ``insert_only`` returns an existing match
        unchanged; ``debounce`` moves ``next_run_at`` as described in the docs. (4) insert.
        ``unique`` and ``unique_opts`` themselves are not stored. ``start_date``, ``end_date`` and
        ``skip_days`` are stored and read back.
        """

    @property
    def announces_inserts(self) -> bool:
        """Whether :meth:`insert_jobs` publishes the job notifications itself, in the round
        trip of the insert: set up by a backend whose own channel shares the store's
        connection (PostgreSQL's NOTIFY, Redis's PUBLISH). Then a scheduler that uses that
        channel publishes nothing more for the jobs it inserts."""
        return False

    @abc.abstractmethod
    async def insert_jobs(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        announce: Announcement | None = None,
    ) -> list[JobParameters[Any]]:
        """Insert new jobs; return the stored records (with their ids), in order.

        Every job must be a plain insert (``_job_data.not_a_plain_insert``: no id, not
        ``single``, no unique key; those decide against what is stored: :meth:`save_job`).
        Every job is checked (as :meth:`save_job` checks one) before anything is written; a
        bad one raises ``BatchItemError`` naming its index, and nothing is stored. Then the
        jobs are written in batches (``backends.base.INSERT_BATCH`` at most), each in one
        statement, script or transaction, stored entirely or not at all (a store failing
        between two batches leaves the earlier ones stored). A batch repeated after a lost
        reply stores no job twice.

        With ``announce``, a store that :attr:`announces_inserts` publishes, in each batch's
        round trip, one job notification per job name (``_model.wake_ups``); otherwise
        ``announce`` is ignored and the caller publishes.
        """

    @abc.abstractmethod
    async def save_job_state(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        lock_token: datetime | None = None,
    ) -> None:
        """Write exactly the state fields (``_model.STATE_FIELDS``) of the job with this id.

        ``next_run_at`` is written only if the stored timing (``_model.TIMING_FIELDS``) still
        equals the job's: otherwise the schedule was changed since the job was read (while it
        ran) and the stored ``next_run_at`` is kept; the other state fields are written anyway.

        Fencing: with a ``lock_token`` (the ``locked_at`` the writer holds: the one its claim
        stored, or the one its last successful ``touch()`` wrote), the write is applied only if
        the stored ``locked_at`` equals the token at millisecond precision, in the same
        statement or script; otherwise nothing of it is written and ``LockLostError`` is raised
        (the lock expired and another worker claimed the job, or it was released). ``None``
        writes whatever the stored lock (writes that do not come from a lock holder).

        Raises ``JobNotFoundError`` when no job has this id and name, ``ValueError`` without id.
        """

    async def save_job_states(
        self,
        jobs: Sequence[JobParameters[Any]],
        *,
        last_modified_by: str | None = None,
        lock_tokens: Mapping[str, datetime] | None = None,
    ) -> list[JobId]:
        """:meth:`save_job_state` for several jobs at once, each job fenced by its id's entry in
        ``lock_tokens`` (jobs without one are unfenced). Return the ids whose write was not
        applied: the job no longer exists, or it was fenced out; nothing is raised for them
        (``errors.rejected_state_write`` tells the two apart). Stores override this to
        write in one round trip: the scheduler batches the state writes of jobs that finish
        together."""
        tokens = lock_tokens or {}
        rejected: list[JobId] = []
        for job in jobs:
            try:
                await self.save_job_state(
                    job, last_modified_by=last_modified_by,
                    lock_token=tokens.get(job.id) if job.id is not None else None,
                )
            except (JobNotFoundError, LockLostError):
                assert job.id is not None
                rejected.append(job.id)
        return rejected

    # -- locking -------------------------------------------------------------------------

    @abc.abstractmethod
    async def lock_job(
        self,
        job: JobParameters[Any],
        *,
        last_modified_by: str | None = None,
        now: datetime | None = None,
    ) -> JobParameters[Any] | None:
        """Lock this job if it is still unlocked, enabled and has the same ``next_run_at``
        as ``job``; return the locked record or ``None``."""

    @abc.abstractmethod
    async def unlock_job(self, job: JobParameters[Any]) -> None:
        """Clear ``locked_at`` unless the job's ``next_run_at`` is null (a finished one-off
        keeps its lock so it is not picked up again)."""

    @abc.abstractmethod
    async def unlock_jobs(self, job_ids: Sequence[str]) -> None:
        """Clear ``locked_at`` on every given id, whatever its state."""

    @abc.abstractmethod
    async def get_next_job_to_run(
        self,
        job_name: str,
        next_scan_at: datetime,
        lock_deadline: datetime,
        now: datetime | None = None,
        *,
        last_modified_by: str | None = None,
    ) -> JobParameters[Any] | None:
        """Atomically claim one job of ``job_name``: set ``locked_at`` and return it.

        Eligible: not disabled, and either unlocked with ``next_run_at <= next_scan_at``, or
        locked at or before ``lock_deadline`` (a stale lock: taken over whatever its
        ``next_run_at``). Order: stale locks first (a killed worker's jobs restart without
        waiting for a backlog of due jobs), then ``next_run_at`` ascending (nulls last), then
        ``priority`` descending. Two concurrent callers never receive the same job. ``now`` stamps
        ``locked_at``; when ``None`` the store's own clock is used where it has one, and the
        window and deadline are read relative to it.
        """

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
        """Claim up to ``limit`` jobs at once, in claim order, with the guarantees of
        :meth:`get_next_job_to_run`. Stores override this to claim in one round trip."""
        claimed: list[JobParameters[Any]] = []
        while len(claimed) < limit:
            job = await self.get_next_job_to_run(
                job_name, next_scan_at, lock_deadline, now, last_modified_by=last_modified_by
            )
            if job is None:
                break
            claimed.append(job)
        return claimed


class NotificationChannel(abc.ABC):
    """A real-time hint that jobs may be due. Delivery is at most once: the scheduler keeps
    polling, so a lost or forged notification costs latency, never a job."""

    @property
    @abc.abstractmethod
    def state(self) -> NotificationChannelState:
        """One of disconnected (initial), connecting, connected, reconnecting, error."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect and subscribe; the state becomes ``connected``. Raises on failure."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Stop listening, drop every subscriber; the state becomes ``disconnected``."""

    @abc.abstractmethod
    def subscribe(self, handler: NotificationHandler) -> Unsubscribe:
        """Call ``handler`` for each job notification; return a function that unsubscribes."""

    @abc.abstractmethod
    async def publish(self, notification: JobNotification) -> None:
        """Send a notification. Raises ``NotConnectedError`` unless connected."""

    @property
    def supports_state_notifications(self) -> bool:
        """Whether :meth:`publish_state` reaches other processes (not true of change streams)."""
        return False

    def subscribe_state(self, handler: StateNotificationHandler) -> Unsubscribe:
        """Call ``handler`` for each job state notification (start, success, fail, ...)."""
        raise NotImplementedError(f"{type(self).__name__} has no state notifications")

    async def publish_state(self, notification: JobStateNotification) -> None:
        """Send a state notification. Raises ``NotConnectedError`` unless connected."""
        raise NotImplementedError(f"{type(self).__name__} has no state notifications")

    @abc.abstractmethod
    def on(self, event: ChannelEvent, listener: Callable[..., Any]) -> None:
        """Listen to ``stateChange`` (new state) or ``error`` (exception)."""

    @abc.abstractmethod
    def off(self, event: ChannelEvent, listener: Callable[..., Any]) -> None:
        """Remove a listener added with :meth:`on`."""


class JobLogger(abc.ABC):
    """Agenda 6.2's persistent job log: one entry per job lifecycle event (start, success,
    fail, complete, retry, retry:exhausted, locked, expired), kept in the store beside the
    jobs in the layout of the matching npm backend, so a Node process or Agendash and
    agenda-decl read each other's entries.

    Guarantees every implementation gives (``tests/conformance/test_job_logger.py``):

    * an entry reads back with the fields it was written with (absent ones ``None``; the
      timestamp aware UTC, at millisecond precision or finer: PostgreSQL keeps microseconds),
      and an ``id`` from the store;
    * reads sort by timestamp (entries of one timestamp in the order they were written,
      except in PostgreSQL, whose ids are random: an Agenda gives the entries it writes
      distinct microseconds for that), ``total`` counts every match whatever
      ``limit``/``offset`` say, and every criterion of the query applies;
    * ``clear_logs`` deletes exactly what ``get_logs`` with the same criteria matches (all
      entries without a query) and returns how many;
    * reads and deletes never create the log's storage: where it does not exist they find
      nothing; only :meth:`connect` creates it.

    The Agenda calls :meth:`log_many` off the job's path (fire and forget): a write that fails
    or hangs never fails or delays a job; it is reported as an ``error`` event.
    """

    #: What :meth:`prune` deletes (``None``: nothing; entries are kept until cleared).
    retention: JobLogRetention | None = None

    async def connect(self) -> None:  # noqa: B027 - optional hook
        """Create the log's storage (table, indexes) where missing and configured to. Called
        by an Agenda that logs, once its backend is connected. Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`connect` opened (never a connection shared with a backend)."""

    @abc.abstractmethod
    async def log(self, entry: JobLogEntry) -> None:
        """Write one entry (its ``id`` is ignored: the store assigns one)."""

    async def log_many(self, entries: Sequence[JobLogEntry]) -> None:
        """Write several entries; stores override it to write them in one round trip."""
        for entry in entries:
            await self.log(entry)

    @abc.abstractmethod
    async def get_logs(self, query: JobLogQuery | None = None) -> JobLogQueryResult:
        """The entries matching ``query`` (default: the newest 50), newest first unless
        ``sort="asc"``, and how many match in all."""

    @abc.abstractmethod
    async def clear_logs(self, query: JobLogQuery | None = None) -> int:
        """Delete the entries matching ``query`` (every entry without one; ``limit``,
        ``offset`` and ``sort`` are ignored); return how many were deleted."""

    async def prune(self, now: datetime) -> int:
        """Apply :attr:`retention` as of ``now``: delete the entries older than ``max_age``
        and those beyond the newest ``max_entries`` (entries that share the timestamp of the
        oldest one kept beyond the bound go too); return how many were deleted."""
        retention = self.retention
        if retention is None:
            return 0
        deleted = 0
        if retention.max_age is not None:
            cutoff = now - timedelta(milliseconds=retention.max_age)
            deleted += await self.clear_logs(JobLogQuery(to_date=cutoff - _ONE_MS))
        if retention.max_entries is not None:
            beyond = await self.get_logs(JobLogQuery(limit=1, offset=retention.max_entries))
            if beyond.entries:
                deleted += await self.clear_logs(JobLogQuery(to_date=beyond.entries[0].timestamp))
        return deleted


_ONE_MS = timedelta(milliseconds=1)


class AgendaBackend(abc.ABC):
    """A store plus, optionally, the notification channel that comes with it."""

    #: A short display name ("SQLite", "PostgreSQL", ...).
    name: str = "backend"

    @property
    @abc.abstractmethod
    def repository(self) -> JobRepository: ...

    @property
    def notification_channel(self) -> NotificationChannel | None:
        return None

    @property
    def owns_connection(self) -> bool:
        """Whether :meth:`disconnect` closes what the backend opened (never a passed-in pool)."""
        return True

    @property
    def logger(self) -> JobLogger | None:
        """The store's built-in job logger (Agenda 6.2's layout), or ``None``. Its storage is
        created only once an Agenda logs to it (``Agenda(logging=True)``, or this backend
        built with ``logging=True``)."""
        return None

    @property
    def logging(self) -> bool:
        """Whether an Agenda on this backend logs to :attr:`logger` unless told otherwise
        (the backend was built with ``logging=True``)."""
        return False

    async def connect(self) -> None:
        await self.repository.connect()

    async def disconnect(self) -> None:
        await self.repository.close()
