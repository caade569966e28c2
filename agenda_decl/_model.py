"""Values shared by the scheduler, the repositories and the notification channels.

Field names are the snake_case spellings of Agenda v6's persisted names (``nextRunAt`` is
``next_run_at``); each backend maps them to its own storage layout. Every datetime is
timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, Literal, NewType, TypeVar

import attrs

from agenda_decl._clock import utcnow

JobId = NewType("JobId", str)
DATA = TypeVar("DATA")

JobType = Literal["normal", "single"]
JobState = Literal["running", "scheduled", "queued", "completed", "failed", "repeating"]
#: ``paused`` is not a computed state: as a filter it selects disabled jobs.
JobStateFilter = Literal[
    "running", "scheduled", "queued", "completed", "failed", "repeating", "paused"
]
NotificationChannelState = Literal[
    "disconnected", "connecting", "connected", "reconnecting", "error"
]
DebounceStrategy = Literal["trailing", "leading"]
SortDirection = Literal["asc", "desc"]
SortKey = Literal["next_run_at", "last_run_at", "last_finished_at", "priority", "name", "data"]
StateNotificationType = Literal["start", "progress", "success", "fail", "complete", "retry"]

JOB_STATES: tuple[JobState, ...] = (
    "running",
    "scheduled",
    "queued",
    "completed",
    "failed",
    "repeating",
)
SORT_KEYS: tuple[SortKey, ...] = (
    "next_run_at",
    "last_run_at",
    "last_finished_at",
    "priority",
    "name",
    "data",
)


def to_job_id(value: str) -> JobId:
    """Brand a string as a job id (ids are opaque; each backend has its own form)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"a job id must be a non-empty string, got {value!r}")
    return JobId(value)


@attrs.define(kw_only=True, frozen=True)
class DebounceOptions:
    """Debounce settings; ``delay`` and ``max_wait`` are milliseconds."""

    delay: int
    max_wait: int | None = None
    strategy: DebounceStrategy = "trailing"


@attrs.define(kw_only=True, frozen=True)
class UniqueOptions:
    insert_only: bool = False
    debounce: DebounceOptions | None = None


@attrs.define(kw_only=True, eq=True)
class JobParameters(Generic[DATA]):
    """The persisted shape of a job. Mutable: a :class:`Job` edits its parameters in place."""

    id: JobId | None = None
    name: str
    priority: int = 0
    next_run_at: datetime | None = None
    type: JobType = "normal"
    locked_at: datetime | None = None
    last_finished_at: datetime | None = None
    failed_at: datetime | None = None
    fail_count: int | None = None
    fail_reason: str | None = None
    repeat_timezone: str | None = None
    last_run_at: datetime | None = None
    repeat_interval: str | int | None = None
    data: DATA = None  # type: ignore[assignment]
    repeat_at: str | None = None
    disabled: bool = False
    progress: float | None = None
    unique: dict[str, Any] | None = None
    unique_opts: UniqueOptions | None = None
    debounce_started_at: datetime | None = None
    last_modified_by: str | None = None
    fork: bool = False
    start_date: datetime | None = None
    end_date: datetime | None = None
    skip_days: list[int] | None = None


#: Fields only the processor writes; ``save_job`` never reads them from its input.
PROCESSOR_FIELDS: frozenset[str] = frozenset(
    {
        "locked_at",
        "last_run_at",
        "last_finished_at",
        "failed_at",
        "fail_count",
        "fail_reason",
        "progress",
    }
)
#: Exactly the fields ``save_job_state`` writes.
STATE_FIELDS: tuple[str, ...] = (
    "locked_at",
    "next_run_at",
    "last_run_at",
    "progress",
    "fail_reason",
    "fail_count",
    "failed_at",
    "last_finished_at",
    "last_modified_by",
)

#: The timing definition of a job. A state write writes ``next_run_at`` only while the stored
#: values of these fields still equal the written job's (the values it was claimed with): a
#: schedule changed during the run (a reschedule, ``agenda-decl apply``) set its own
#: ``next_run_at``, which the run must not put back to one computed from the old timing.
TIMING_FIELDS: tuple[str, ...] = (
    "repeat_interval",
    "repeat_at",
    "repeat_timezone",
    "start_date",
    "end_date",
    "skip_days",
)


@attrs.define(kw_only=True, eq=True)
class JobWithState(JobParameters[DATA]):
    """A job as returned by queries: its parameters plus the computed state."""

    state: JobState = "completed"


def compute_job_state(job: JobParameters[Any], now: datetime | None = None) -> JobState:
    """The state of a job at ``now``; the first matching rule wins (Agenda v6's order).

    A repeating job is one with a ``repeat_interval`` or a ``repeat_at`` (Agenda v6 looks at
    the interval only, so its ``repeatAt`` jobs show as scheduled or queued). ``disabled`` is
    not a state: a disabled job keeps its computed state, and the ``paused`` filter (Agenda's
    name) selects disabled jobs."""""
    if job.locked_at is not None:
        return "running"
    if job.failed_at is not None and (
        job.last_finished_at is None or job.failed_at >= job.last_finished_at
    ):
        return "failed"
    if job.repeat_interval or job.repeat_at:  # an `every`/cron job, or an `at` one
        return "repeating"
    if job.next_run_at is not None:
        return "scheduled" if job.next_run_at > (now or utcnow()) else "queued"
    return "completed"


@attrs.define(kw_only=True, frozen=True)
class JobsQueryOptions:
    """Filters for :meth:`JobRepository.query_jobs`. All given criteria are ANDed, within a
    group too: ``id`` and ``ids`` both restrict the id, ``name`` and ``names`` both the name
    (``name="a", names=["b"]`` finds nothing).

    ``data`` matches jobs whose data *contains* the given JSON value (an object matches when
    every key matches recursively; other values compare equal). ``search`` is a
    case-insensitive substring of the name, taken literally. ``sort`` maps keys of
    :data:`SORT_KEYS` to ``"asc"``/``"desc"``; the default order is ``next_run_at`` desc, then
    ``last_run_at`` desc, nulls last. ``limit=0`` means no limit.
    """

    name: str | None = None
    names: list[str] | None = None
    state: JobStateFilter | None = None
    id: str | None = None
    ids: list[str] | None = None
    search: str | None = None
    data: Any = None
    include_disabled: bool = True
    sort: dict[SortKey, SortDirection] | None = None
    skip: int = 0
    limit: int = 0

    def __attrs_post_init__(self) -> None:
        if self.skip < 0:
            raise ValueError(f"skip must be >= 0, got {self.skip!r}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0 (0 = no limit), got {self.limit!r}")
        for key, direction in (self.sort or {}).items():
            if key not in SORT_KEYS:
                raise ValueError(f"unknown sort key {key!r}; allowed: {', '.join(SORT_KEYS)}")
            if direction not in ("asc", "desc"):
                raise ValueError(
                    f"sort direction for {key!r} must be 'asc' or 'desc', got {direction!r}"
                )
        allowed_states = (*JOB_STATES, "paused")
        if self.state is not None and self.state not in allowed_states:
            raise ValueError(
                f"unknown state {self.state!r}; allowed: {', '.join(allowed_states)}"
            )


@attrs.define(kw_only=True, frozen=True)
class JobsResult:
    jobs: list[JobWithState[Any]]
    #: The number of matches after the state filter and before skip/limit.
    total: int
    #: False when ``total`` is a lower bound (at least the end of the page): a store that
    #: would have to read every job to count a filter's matches may stop counting (Redis
    #: past a bound, see ``backends.redis.listing``); the other stores always count.
    total_exact: bool = True


@attrs.define(kw_only=True, frozen=True)
class JobsOverview:
    name: str
    total: int = 0
    running: int = 0
    scheduled: int = 0
    queued: int = 0
    completed: int = 0
    failed: int = 0
    repeating: int = 0
    #: Disabled jobs, counted here in addition to their computed state.
    paused: int = 0


@attrs.define(kw_only=True, frozen=True)
class RemoveJobsOptions:
    """Criteria for remove/disable/enable. Every given criterion applies (AND).

    That holds within a group too: a match has the id ``id`` *and* an id in ``ids``, the name
    ``name`` *and* a name in ``names``, and no name in ``not_names`` (Agenda v6 uses only the
    first of ``id``/``ids`` and of ``name``/``names``/``notNames``). So ``id=x, ids=[y]`` and
    ``name="a", not_names=["a"]`` match nothing.

    Options that select nothing (all empty) match nothing, so ``cancel(RemoveJobsOptions())``
    is a no-op rather than a wipe. ``data={}`` also matches nothing, and so does
    ``not_names=[]`` on its own (it excludes nothing, so it restricts nothing).
    """

    id: str | None = None
    ids: list[str] | None = None
    name: str | None = None
    names: list[str] | None = None
    not_names: list[str] | None = None
    data: Any = None

    def is_empty(self) -> bool:
        """True when no criterion would restrict the match (nothing must be touched)."""
        return (
            self.id is None
            and self.ids is None
            and self.name is None
            and self.names is None
            and not self.not_names
            and self.data is None
        )

    def matches_nothing(self) -> bool:
        """True when the criteria can select no job at all, so no store call is needed."""
        return (
            self.is_empty()
            or self.data == {}
            or (self.ids is not None and not self.ids)
            or (self.names is not None and not self.names)
        )


@attrs.define(kw_only=True, frozen=True)
class JobNotification:
    """Published on every user-side save; a hint that a job may be due, never a command."""

    job_id: JobId
    job_name: str
    next_run_at: datetime | None
    priority: int
    timestamp: datetime
    source: str | None = None


@attrs.define(kw_only=True, frozen=True)
class Announcement:
    """Who announces newly stored jobs, and when: the ``source`` and ``timestamp`` of the
    job notifications a store publishes in the round trip of the insert itself
    (``JobRepository.insert_jobs``)."""

    source: str | None
    timestamp: datetime

    def notification(
        self, job_id: str, name: str, next_run_at: datetime | None, priority: int
    ) -> JobNotification:
        return JobNotification(job_id=JobId(job_id), job_name=name, next_run_at=next_run_at,
                               priority=priority, timestamp=self.timestamp, source=self.source)

    def notifications(self, jobs: Sequence[JobParameters[Any]]) -> list[JobNotification]:
        """The notifications that announce ``jobs`` (stored ones: with ids), one per job name
        (:func:`wake_ups`)."""
        chosen = [jobs[index] for index in wake_ups([(j.name, j.next_run_at) for j in jobs])]
        return [self.notification(str(job.id), job.name, job.next_run_at, job.priority)
                for job in chosen]


def wake_ups(jobs: Sequence[tuple[str, datetime | None]]) -> list[int]:
    """Which of the jobs saved together (``(name, next_run_at)`` pairs) are announced: the
    earliest due of each name (the first on a tie, one without a next run only when its name
    has no other). A notification wakes the claims of its name, so one per name and batch
    does what one per job would, without flooding the listeners."""
    chosen: dict[str, int] = {}
    for index, (name, next_run_at) in enumerate(jobs):
        best = chosen.get(name)
        if best is None or _earlier(next_run_at, jobs[best][1]):
            chosen[name] = index
    return sorted(chosen.values())


def _earlier(candidate: datetime | None, best: datetime | None) -> bool:
    return candidate is not None and (best is None or candidate < best)


@attrs.define(kw_only=True, frozen=True)
class JobStateNotification:
    type: StateNotificationType
    job_id: JobId
    job_name: str
    timestamp: datetime
    source: str | None = None
    progress: float | None = None
    error: str | None = None
    fail_count: int | None = None
    retry_at: datetime | None = None
    retry_attempt: int | None = None
    duration: int | None = None
    last_run_at: datetime | None = None
    last_finished_at: datetime | None = None


@attrs.define(kw_only=True, frozen=True)
class DrainResult:
    completed: int
    running: int
    timed_out: bool
    aborted: bool
