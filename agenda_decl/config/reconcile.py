"""Reconcile the schedules of ``agenda.yaml`` with the jobs in storage: :func:`plan`, then
:func:`apply` (what ``agenda-decl plan`` and ``agenda-decl apply`` run).

Each declared schedule is one repeating job of type ``normal`` whose ``data`` carries, next to
its payload, two reserved keys: ``__managed_by__`` (the owner, ``config.owner``: the
scheduler name) and ``__schedule_key__`` (``schedule.schedule_key``). Workers never write
``data``, so the marker survives runs. Jobs without the marker, or with another owner's, are
never read as ours and never touched.

``plan`` reads the owner's jobs and compares, field by field, what is stored with what the file
declares; it writes nothing. ``apply`` validates every schedule first (so a bad one stops the
whole apply before any write), then creates, updates and deletes, writing only what differs: a
second ``apply`` writes nothing. A schedule is identified by (job name, schedule key): moving
a key to another job is a new schedule, and the old job is an orphan (kept unless pruned).
Two appliers racing on one store converge without a lock: after writing, each lists the
owner's jobs again and, for any declared schedule held by more than one job, keeps the one
with the smallest id and deletes the others (both pick the same one).

Next-run rules (what a user of Agenda or APScheduler expects):

* a new ``every`` schedule runs now (after ``skip_immediate``: one interval from now); a new
  ``cron`` or ``at`` schedule runs at its next tick after now (never "now" for a cron job);
* an update that leaves the timing alone (only data, priority, ...) keeps ``next_run_at`` and
  the run history (``last_run_at``, ``fail_count``, ... are never written by a save);
* an update that changes the timing recomputes ``next_run_at`` from now: ``every`` runs at
  ``last_run_at + interval`` when it ran before (now, if that is already past), else as a new
  one; ``cron``/``at`` at the next tick after now. Enabling a disabled schedule does the same.
* start/end dates and skip days always apply (``timing`` rules).

Start and end dates are absolute ISO 8601 dates or date-times; one without an offset is read
in the schedule's time zone (UTC when it has none). Relative text ("in 5 minutes") is refused:
it would move on every apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import attrs

from agenda_decl import timing
from agenda_decl._model import JobId, JobParameters, JobsQueryOptions, RemoveJobsOptions
from agenda_decl.agenda import Agenda
from agenda_decl.config.errors import ConfigError, PayloadError
from agenda_decl.config.load import issue_for, source_of
from agenda_decl.config.model import AgendaConfig, JobConfig, ScheduleConfig
from agenda_decl.config.payload import (
    MANAGED_BY_KEY,
    RESERVED_DATA_KEYS,
    SCHEDULE_KEY_KEY,
    check_payload,
)
from agenda_decl.config.validate import absolute_date, parse_skip_days
from agenda_decl.errors import AgendaError, InvalidDateError, InvalidOptionError
from agenda_decl.job import Job

__all__ = [
    "ACTIONS",
    "COMPARED_FIELDS",
    "MANAGED_BY_KEY",
    "RESERVED_DATA_KEYS",
    "SCHEDULE_KEY_KEY",
    "ApplyResult",
    "Change",
    "FieldDiff",
    "FireTime",
    "Orphan",
    "Plan",
    "apply",
    "check_schedules",
    "plan",
]

Action = Literal["create", "update", "delete", "unchanged"]
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "unchanged")
ScheduleKind = Literal["every", "cron", "at"]

#: Slack for store rounding and clock skew before a late next run counts as drift.
DRIFT_TOLERANCE = timedelta(seconds=1)

#: The stored fields a declared schedule sets, in the order diffs are shown.
COMPARED_FIELDS: tuple[str, ...] = (
    "repeat_interval",
    "repeat_timezone",
    "repeat_at",
    "start_date",
    "end_date",
    "skip_days",
    "disabled",
    "priority",
    "type",
    "data",
)
#: Changing one of these changes when the job runs, so ``next_run_at`` is recomputed.
TIMING_FIELDS = frozenset(
    {"repeat_interval", "repeat_timezone", "repeat_at", "start_date", "end_date", "skip_days"}
)
NEXT_RUNS = 3



# -- the plan -------------------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class FieldDiff:
    """One stored field that differs: ``old`` is None on a create."""

    field: str
    old: Any
    new: Any


@attrs.define(kw_only=True, frozen=True)
class FireTime:
    utc: datetime
    #: The same instant in the schedule's zone (UTC when it has none).
    local: datetime
    zone: str


@attrs.define(kw_only=True, frozen=True)
class Change:
    action: Action
    #: The schedule key (``schedule.schedule_key``).
    key: str
    #: The job name.
    job: str
    #: The stored job's id (None for a create until it is applied).
    id: JobId | None = None
    diffs: tuple[FieldDiff, ...] = ()
    #: The next fire times once this change is applied (none when disabled or finished).
    next_runs: tuple[FireTime, ...] = ()
    timezone: str | None = None
    #: Why a job is deleted: ``pruned`` or ``duplicate``.
    reason: str | None = None
    disabled: bool = False
    #: What apply saves (create/update); internal.
    target: Job[Any] | None = attrs.field(default=None, eq=False, repr=False)


@attrs.define(kw_only=True, frozen=True)
class Orphan:
    """A job of this owner whose schedule is no longer declared, kept because no prune was
    asked for."""

    key: str
    job: str
    id: JobId


@attrs.define(kw_only=True, frozen=True)
class Plan:
    config: AgendaConfig = attrs.field(repr=False)
    owner: str
    prune: bool
    #: The instant the plan was computed at (the agenda's clock).
    now: datetime
    changes: list[Change]
    orphaned: list[Orphan]
    #: How many managed jobs of this owner were in storage.
    stored: int
    base_dir: Path | None = None

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action == action)

    @property
    def has_changes(self) -> bool:
        """Whether :func:`apply` would write anything."""
        return any(change.action != "unchanged" for change in self.changes)

    @property
    def in_sync(self) -> bool:
        """Whether storage matches the file: nothing to write and no orphaned job of this
        owner (an orphan keeps running although the file no longer declares it, so a drift
        check must see it even when ``apply`` without ``--prune`` has nothing to do)."""
        return not self.has_changes and not self.orphaned


@attrs.define(kw_only=True, frozen=True)
class ApplyResult:
    #: The plan carried out (computed afresh at apply time).
    plan: Plan
    #: The changes written, in order, including duplicates removed after the writes.
    done: list[Change]
    created: int
    updated: int
    deleted: int
    unchanged: int
    #: Duplicates left by a concurrent apply and removed here.
    duplicates_removed: int
    orphaned: list[Orphan]

    @property
    def changed(self) -> bool:
        return bool(self.done)


OnChange = Callable[[Change], object]


async def plan(
    agenda: Agenda, config: AgendaConfig, *, prune: bool = False, base_dir: Path | None = None
) -> Plan:
    """What :func:`apply` would do; reads storage, writes nothing.

    Raises :class:`ConfigError` listing every invalid schedule (unknown job, bad interval,
    cron, time zone, dates, skip days, or data that does not fit the job's payload).
    ``prune`` turns jobs of this owner that are no longer declared into deletes; without it
    they are listed in ``orphaned`` and kept. ``base_dir`` (the config file's directory) is
    where payload classes are imported from.
    """
    base_dir = _base_dir(config, base_dir)
    desired = _desired_schedules(agenda, config, base_dir)
    stored = await _managed_jobs(agenda, config.owner)
    now = agenda.clock.now()
    groups = _by_identity(stored)
    changes: list[Change] = []
    for want in desired:
        group = groups.pop((want.params.name, want.key), [])
        for duplicate in group[1:]:
            changes.append(_delete(duplicate, want.key, "duplicate"))
        changes.append(_compare(agenda, want, group[0] if group else None, now))
    orphaned: list[Orphan] = []
    for name, key in sorted(groups):
        for job in groups[(name, key)]:
            if prune:
                changes.append(_delete(job, key, "pruned"))
            else:
                orphaned.append(Orphan(key=key, job=name, id=_id(job)))
    return Plan(config=config, owner=config.owner, prune=prune, now=now, changes=changes,
                orphaned=orphaned, stored=len(stored), base_dir=base_dir)


def check_schedules(
    config: AgendaConfig,
    *,
    agenda: Agenda | None = None,
    base_dir: Path | None = None,
    import_payload_classes: bool = True,
) -> None:
    """Validate every schedule as :func:`plan` does, without storage (what ``agenda-decl
    validate`` adds to the loader's checks); raises :class:`ConfigError`.

    Without ``agenda``, the jobs are declared on a scratch in-memory one, so no driver and
    no database are needed. Without ``import_payload_classes``, data of a job whose payload
    is a class is checked for shape only (no application code is imported).
    """
    if agenda is None:
        from agenda_decl.backends.memory import InMemoryBackend
        from agenda_decl.config.build import job_options

        agenda = Agenda(InMemoryBackend(notifications=False), name="agenda-decl-validate")
        for name, job in config.jobs.items():
            agenda.declare(name, **job_options(job))
    _desired_schedules(agenda, config, _base_dir(config, base_dir),
                       import_classes=import_payload_classes)


def _base_dir(config: AgendaConfig, given: Path | None) -> Path | None:
    if given is not None:
        return given
    source = source_of(config)
    return source.base_dir if source is not None else None


async def apply(
    agenda: Agenda,
    plan_or_config: Plan | AgendaConfig,
    *,
    prune: bool = False,
    on_change: OnChange | None = None,
    base_dir: Path | None = None,
) -> ApplyResult:
    """Carry out the plan of ``plan_or_config``; return what was done.

    A :class:`Plan` is recomputed against storage first (storage may have changed since it was
    shown), with ``prune`` if either the plan or the caller asks for it; every schedule is
    validated before the first write. Only what differs is written, so a second apply writes
    nothing. ``on_change(change)`` is called after each write (for progress output).
    """
    if isinstance(plan_or_config, Plan):
        config, prune = plan_or_config.config, prune or plan_or_config.prune
        base_dir = base_dir or plan_or_config.base_dir
    else:
        config = plan_or_config
    fresh = await plan(agenda, config, prune=prune, base_dir=base_dir)
    done: list[Change] = []
    for change in fresh.changes:
        written = await _carry_out(agenda, config.owner, change)
        if written is not None:
            done.append(written)
            _notify(on_change, written)
    counts = {action: sum(1 for c in done if c.action == action) for action in ACTIONS}
    removed = await _remove_duplicates(agenda, config, wrote=bool(done))
    for change in removed:
        done.append(change)
        _notify(on_change, change)
    return ApplyResult(
        plan=fresh,
        done=done,
        created=counts["create"],
        updated=counts["update"],
        deleted=counts["delete"],
        unchanged=fresh.count("unchanged"),
        duplicates_removed=len(removed),
        orphaned=fresh.orphaned,
    )


def _notify(on_change: OnChange | None, change: Change) -> None:
    if on_change is not None:
        on_change(change)


# -- desired state --------------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class _Desired:
    index: int
    schedule: ScheduleConfig
    key: str
    kind: ScheduleKind
    #: The job as declared (no id; ``next_run_at`` is decided by :func:`_compare`).
    params: JobParameters[Any] = attrs.field(eq=False)


class _Issues:
    """Problems found, raised together; positioned in the file when the config was loaded
    from one (``<config>:1:1`` for a config built in code)."""

    def __init__(self, config: AgendaConfig) -> None:
        self.config = config
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError([issue_for(self.config, path, message)
                               for path, message in self.items])


def _desired_schedules(
    agenda: Agenda, config: AgendaConfig, base_dir: Path | None, *, import_classes: bool = True
) -> list[_Desired]:
    """Every declared schedule as the job it should be; all problems raised at once."""
    issues = _Issues(config)
    result: list[_Desired] = []
    first_index: dict[tuple[str, str], int] = {}
    for index, schedule in enumerate(config.schedules):
        path = f"schedules[{index}]"
        identity = (schedule.job, schedule.schedule_key)
        if identity in first_index:
            issues.add(
                f"{path}.key",
                f"schedule key {schedule.schedule_key!r} of job {schedule.job!r} is already "
                f"used by schedules[{first_index[identity]}]; give each schedule of a job its "
                "own key",
            )
            continue
        first_index[identity] = index
        desired = _desired_schedule(agenda, config, schedule, index, issues, base_dir,
                                    import_classes)
        if desired is not None:
            result.append(desired)
    issues.raise_if_any()
    return result


def _desired_schedule(
    agenda: Agenda,
    config: AgendaConfig,
    schedule: ScheduleConfig,
    index: int,
    issues: _Issues,
    base_dir: Path | None,
    import_classes: bool,
) -> _Desired | None:
    path = f"schedules[{index}]"
    before = len(issues.items)
    job_config = _declared_job(agenda, config, schedule, path, issues)
    if job_config is None:
        return None
    if isinstance(job_config.payload, str) and not import_classes:
        job_config = attrs.evolve(job_config, payload=None)  # shape only: import nothing
    payload = _checked_payload(schedule, job_config, path, issues, base_dir)
    kind = _kind(schedule, path, issues)
    job = agenda.create(schedule.job, {**payload, MANAGED_BY_KEY: config.owner,
                                       SCHEDULE_KEY_KEY: schedule.schedule_key},
                        validate=False)  # checked above, with the schedule's path
    _set_schedule_fields(job, schedule, kind, path, issues)
    if len(issues.items) > before or kind is None:
        return None
    return _Desired(index=index, schedule=schedule, key=schedule.schedule_key, kind=kind,
                    params=job.attrs)


def _declared_job(
    agenda: Agenda, config: AgendaConfig, schedule: ScheduleConfig, path: str, issues: _Issues
) -> JobConfig | None:
    job_config = config.jobs.get(schedule.job)
    if job_config is None:
        known = ", ".join(sorted(config.jobs)) or "none"
        issues.add(f"{path}.job", f"unknown job {schedule.job!r} (jobs: {known})")
        return None
    if schedule.job not in agenda.definitions:
        issues.add(f"{path}.job", f"job {schedule.job!r} is not defined or declared on the agenda")
        return None
    return job_config


def _checked_payload(
    schedule: ScheduleConfig, job_config: JobConfig, path: str, issues: _Issues,
    base_dir: Path | None,
) -> dict[str, Any]:
    try:
        return check_payload(schedule.job, job_config, schedule.data, path=f"{path}.data",
                             base_dir=base_dir)
    except PayloadError as error:
        for problem_path, message in error.problems:
            issues.add(problem_path, message)
        return {}


def _set_schedule_fields(
    job: Job[Any], schedule: ScheduleConfig, kind: ScheduleKind | None, path: str,
    issues: _Issues,
) -> None:
    """Timing, dates, skip days, priority and ``disabled``; each problem added to ``issues``."""
    zone_ok = _guard(issues, f"{path}.timezone", lambda: timing.get_zone(schedule.timezone))
    _guard(issues, f"{path}.priority", lambda: _set_priority(job, schedule.priority))
    _guard(issues, f"{path}.start_date",
           lambda: _set_date(job, "start_date", schedule.start_date, schedule.timezone))
    _guard(issues, f"{path}.end_date",
           lambda: _set_date(job, "end_date", schedule.end_date, schedule.timezone))
    if schedule.skip_days is not None:
        _guard(issues, f"{path}.skip_days",
               lambda: job.skip_days(_weekdays(schedule.skip_days or [])))
    if kind is not None and zone_ok:
        _guard(issues, f"{path}.{kind}", lambda: _set_timing(job, schedule, kind))
    job.attrs.disabled = schedule.disabled
    job.attrs.type = "normal"
    start, end = job.attrs.start_date, job.attrs.end_date
    if start is not None and end is not None and end < start:
        issues.add(f"{path}.end_date", "end_date is before start_date")


def _kind(schedule: ScheduleConfig, path: str, issues: _Issues) -> ScheduleKind | None:
    given: list[ScheduleKind] = []
    if schedule.every is not None:
        given.append("every")
    if schedule.cron is not None:
        given.append("cron")
    if schedule.at is not None:
        given.append("at")
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        issues.add(path, f"give exactly one of every, cron, at (found: {found})")
        return None
    if given[0] != "every" and schedule.skip_immediate:
        issues.add(f"{path}.skip_immediate", "only an `every` schedule can skip its first run")
    return given[0]


def _guard(issues: _Issues, path: str, action: Callable[[], object]) -> bool:
    try:
        action()
    except AgendaError as error:
        issues.add(path, str(error))
        return False
    return True


def _set_priority(job: Job[Any], priority: int | str | None) -> None:
    if priority is not None:
        job.priority(priority)


def _set_timing(job: Job[Any], schedule: ScheduleConfig, kind: ScheduleKind) -> None:
    zone = schedule.timezone
    if kind == "every":
        assert schedule.every is not None
        if isinstance(schedule.every, str) and timing.is_cron(schedule.every):
            raise InvalidOptionError(
                f"invalid every: {schedule.every!r} is a cron expression (use `cron:`)"
            )
        if timing.parse_duration(schedule.every, field="every") <= 0:
            raise InvalidOptionError(f"invalid every: {schedule.every!r} (must be more than 0)")
        job.repeat_every(schedule.every, timezone=zone)
    elif kind == "cron":
        assert schedule.cron is not None
        timing.next_cron_time(schedule.cron, job.agenda.clock.now(), zone)  # validates
        job.repeat_every(schedule.cron, timezone=zone)
    else:
        assert schedule.at is not None
        job.repeat_at(schedule.at)
        timing.get_zone(zone)
        job.attrs.repeat_timezone = zone
        job.attrs.repeat_interval = None


def _set_date(job: Job[Any], field: str, text: str | None, zone: str | None) -> None:
    if text is None:
        return
    setattr(job.attrs, field, _absolute_date(text, zone, field))


def _absolute_date(text: str, zone: str | None, field: str) -> datetime:
    parsed = absolute_date(text, zone)
    if parsed is None:
        raise InvalidDateError(
            f"invalid {field}: {text!r} (expected an ISO 8601 date or date-time such as "
            "2026-12-01 or 2026-12-01T09:00:00+01:00; relative dates would move on every apply)"
        )
    return parsed


def _weekdays(days: list[int | str]) -> list[int]:
    try:
        return parse_skip_days(days)
    except ValueError as error:
        raise InvalidOptionError(f"invalid skip_days: {error}") from None


# -- stored state ---------------------------------------------------------------------------


async def _managed_jobs(agenda: Agenda, owner: str) -> list[JobParameters[Any]]:
    """This owner's managed jobs, smallest id first."""
    result = await agenda.query_jobs(JobsQueryOptions(data={MANAGED_BY_KEY: owner}))
    jobs: list[JobParameters[Any]] = [
        job for job in result.jobs
        if isinstance(job.data, Mapping) and job.data.get(MANAGED_BY_KEY) == owner
    ]
    return sorted(jobs, key=lambda job: _id_order(_id(job)))


def _by_identity(
    jobs: Sequence[JobParameters[Any]],
) -> dict[tuple[str, str], list[JobParameters[Any]]]:
    """Jobs grouped by what identifies a schedule: (job name, schedule key)."""
    groups: dict[tuple[str, str], list[JobParameters[Any]]] = {}
    for job in jobs:
        groups.setdefault((job.name, _key_of(job)), []).append(job)
    return groups


def _key_of(job: JobParameters[Any]) -> str:
    key = job.data.get(SCHEDULE_KEY_KEY) if isinstance(job.data, Mapping) else None
    return key if isinstance(key, str) else f"<no key: job {job.id}>"


def _id(job: JobParameters[Any]) -> JobId:
    assert job.id is not None  # stored jobs always have one
    return job.id


def _id_order(job_id: str) -> tuple[int, int, str]:
    """Numeric ids (SQL stores) in numeric order, others as text: the same on every machine,
    which is all concurrent appliers need to agree on the survivor."""
    return (0, int(job_id), "") if job_id.isdigit() else (1, 0, job_id)


# -- comparing ------------------------------------------------------------------------------


def _compare(
    agenda: Agenda, want: _Desired, current: JobParameters[Any] | None, now: datetime
) -> Change:
    params = want.params
    zone = params.repeat_timezone
    if current is None:
        params.next_run_at = _first_run(want, None, now)
        diffs = tuple(
            FieldDiff(field=name, old=None, new=_value(params, name))
            for name in COMPARED_FIELDS if _shown_on_create(name, _value(params, name))
        )
        return Change(action="create", key=want.key, job=params.name, diffs=diffs,
                      next_runs=_fire_times(params, now), timezone=zone,
                      disabled=params.disabled, target=Job(agenda, params))
    diffs = tuple(
        FieldDiff(field=name, old=_value(current, name), new=_value(params, name))
        for name in COMPARED_FIELDS if _differs(name, current, params)
    )
    changed = {diff.field for diff in diffs}
    reenabled = current.disabled and not params.disabled
    if changed & TIMING_FIELDS or reenabled:
        params.next_run_at = _first_run(want, current, now)
    else:
        params.next_run_at = current.next_run_at
        if not params.disabled and _drifted(params, current, now):
            recomputed = _first_run(want, current, now)
            if recomputed != current.next_run_at:
                params.next_run_at = recomputed
                diffs += (FieldDiff(field="next_run_at", old=current.next_run_at,
                                    new=recomputed),)
    params.id = current.id
    action: Action = "update" if diffs else "unchanged"
    return Change(action=action, key=want.key, job=params.name, id=current.id, diffs=diffs,
                  next_runs=_fire_times(params, now), timezone=zone, disabled=params.disabled,
                  target=Job(agenda, params) if diffs else None)


def _drifted(params: JobParameters[Any], current: JobParameters[Any], now: datetime) -> bool:
    """A next run the declared schedule cannot explain: none at all (edited by hand), or
    later than its next tick from now. The second is what a writer without the timing check of
    state writes (W-7; e.g. Node Agenda) leaves when an apply changed the schedule while the job
    ran. A failed last run is left alone: its retry backoff may push it further."""
    if current.next_run_at is None:
        return True
    failed_last = current.failed_at is not None and (
        current.last_finished_at is None or current.failed_at >= current.last_finished_at)
    if failed_last:
        return False
    latest = timing.compute_next_run_at(attrs.evolve(params, last_run_at=now), now)
    return latest is not None and current.next_run_at > latest + DRIFT_TOLERANCE


def _differs(name: str, current: JobParameters[Any], wanted: JobParameters[Any]) -> bool:
    old, new = (normalized_field(name, _value(job, name)) for job in (current, wanted))
    return bool(old != new)


def _value(job: JobParameters[Any], name: str) -> Any:
    return getattr(job, name)


def _shown_on_create(name: str, value: Any) -> bool:
    if name == "type":
        return False
    if name == "data":
        return True
    if name == "priority":
        return bool(value)
    return value not in (None, False, [])


def normalized_field(name: str, value: Any) -> Any:
    """Stored values as compared: stores may hand an interval back as text, skip days in
    another order, an empty list as null."""
    if name == "repeat_interval":
        return None if value in (None, "") else str(value)
    if name in ("repeat_timezone", "repeat_at"):
        return value or None
    if name == "skip_days":
        return sorted(value) if value else None
    if name == "data":
        return json.loads(json.dumps(value, sort_keys=True, default=str))
    return value


def _first_run(want: _Desired, current: JobParameters[Any] | None, now: datetime) -> (
    datetime | None
):
    """``next_run_at`` for a new schedule or one whose timing changed (module docstring)."""
    params = attrs.evolve(want.params, last_run_at=None, next_run_at=None)
    if want.kind != "every":
        return timing.compute_next_run_at(params, now)
    if current is not None and current.last_run_at is not None:
        after_last = timing.compute_next_run_at(
            attrs.evolve(params, last_run_at=current.last_run_at), now
        )
        if after_last is None or after_last >= now:
            return after_last
        return timing.compute_next_run_at(params, now)
    if want.schedule.skip_immediate:
        return timing.compute_next_run_at(attrs.evolve(params, last_run_at=now), now)
    return timing.compute_next_run_at(params, now)


def _fire_times(params: JobParameters[Any], now: datetime) -> tuple[FireTime, ...]:
    """The next :data:`NEXT_RUNS` runs: the stored ``next_run_at`` (now, if overdue), then
    what a worker computes after each run."""
    if params.disabled or params.next_run_at is None:
        return ()
    zone_name = params.repeat_timezone or "UTC"
    zone = timing.get_zone(params.repeat_timezone)
    times: list[datetime] = []
    moment: datetime | None = max(params.next_run_at, now)
    while moment is not None and len(times) < NEXT_RUNS:
        times.append(moment)
        ran = attrs.evolve(params, last_run_at=moment, next_run_at=moment)
        moment = timing.compute_next_run_at(ran, moment)
    return tuple(FireTime(utc=t, local=t.astimezone(zone), zone=zone_name) for t in times)


def _delete(job: JobParameters[Any], key: str, reason: str) -> Change:
    return Change(action="delete", key=key, job=job.name, id=_id(job), reason=reason,
                  timezone=job.repeat_timezone, disabled=job.disabled)


# -- writing --------------------------------------------------------------------------------


async def _carry_out(agenda: Agenda, owner: str, change: Change) -> Change | None:
    if change.action == "unchanged":
        return None
    if change.action == "delete":
        assert change.id is not None
        removed = await agenda.cancel(RemoveJobsOptions(id=change.id, data=_marker(owner, change)))
        return change if removed else None
    assert change.target is not None
    saved = await change.target.save()
    return attrs.evolve(change, id=saved.attrs.id)


def _marker(owner: str, change: Change) -> dict[str, str]:
    """The data filter of a delete: only a job that is still ours is removed."""
    if change.key.startswith("<no key"):
        return {MANAGED_BY_KEY: owner}
    return {MANAGED_BY_KEY: owner, SCHEDULE_KEY_KEY: change.key}


async def _remove_duplicates(agenda: Agenda, config: AgendaConfig, *, wrote: bool) -> list[Change]:
    """After the writes: for a declared key held by several jobs (two applies created it at
    once), keep the smallest id and delete the others. Every applier picks the same one."""
    if not wrote:  # what was read at plan time had no duplicates of declared keys
        return []
    declared = {(schedule.job, schedule.schedule_key) for schedule in config.schedules}
    removed: list[Change] = []
    for (_name, key), group in _by_identity(await _managed_jobs(agenda, config.owner)).items():
        if (_name, key) not in declared:
            continue
        for job in group[1:]:  # smallest id first: every applier keeps the same one
            change = _delete(job, key, "duplicate")
            if await agenda.cancel(RemoveJobsOptions(id=change.id,
                                                     data=_marker(config.owner, change))):
                removed.append(change)
    return removed
