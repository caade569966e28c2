"""The contracts between the scheduler and its storage and notification backends.

Every method is ``async``. A backend is a :class:`JobRepository` (required) plus an optional
:class:`NotificationChannel`; the two may come from different technologies. One conformance
suite (``tests/conformance``) checks every implementation against the guarantees stated here.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from agenda_decl._model import (
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

        Filtering, the state filter, sorting and paging happen in the store. ``total`` counts
        matches after the state filter and before ``skip``/``limit``. An id the store could
        never have issued matches nothing (no error).
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
        ``next_run_at``). Order: ``next_run_at`` ascending (nulls last), then ``priority``
        descending. Two concurrent callers never receive the same job. ``now`` stamps
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

    async def connect(self) -> None:
        await self.repository.connect()

    async def disconnect(self) -> None:
        await self.repository.close()
