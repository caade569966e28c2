"""Plan: what :func:`~agenda_decl.config.apply.apply` would do, as an immutable value.

``plan`` checks every schedule (the rule set of :mod:`~agenda_decl.config.rules`), reads the
owner's managed jobs and compares, field by field, what is stored with what the file declares;
it writes nothing. The :class:`Plan` it returns is plain data: each :class:`Change` names the
stored job by id and carries what a create or update writes as a :class:`JobWrite` (the
declared fields, not a live ``Job``), and the plan records a fingerprint of the stored state
it was made on (:func:`~agenda_decl.config.stored.fingerprint`), which apply checks.

Next-run rules (what a user of Agenda or APScheduler expects):

* a new ``every`` schedule runs now (after ``skip_immediate``: one interval from now); a new
  ``cron`` or ``at`` schedule runs at its next tick after now (never "now" for a cron job);
* an update that leaves the timing alone (only data, priority, ...) keeps ``next_run_at`` and
  the run history (``last_run_at``, ``fail_count``, ... are never written by a save);
* an update that changes the timing recomputes ``next_run_at`` from now: ``every`` runs at
  ``last_run_at + interval`` when it ran before (now, if that is already past), else as a new
  one; ``cron``/``at`` at the next tick after now. Enabling a disabled schedule does the same.
* start/end dates and skip days always apply (``timing`` rules).

A job an operator paused (``agenda-decl jobs pause``, :mod:`~agenda_decl.config.pause`) stays
paused: its change carries the pause (:attr:`Change.paused`), the write keeps ``disabled`` and
the marker, and the plan is not in sync while it lasts (:attr:`Plan.paused`).

"Now" is the plan's instant for the fire times it shows, and the apply's instant for what is
written (:attr:`JobWrite.next_run`), so a plan applied a while later (after a confirmation
prompt) does not schedule a tick that has passed in the meantime.

Start and end dates are absolute ISO 8601 dates or date-times; one without an offset is read
in the schedule's time zone (UTC when it has none). Relative text ("in 5 minutes") is refused:
it would move on every apply.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import attrs

from agenda_decl import timing
from agenda_decl._model import JobId, JobParameters
from agenda_decl.agenda import Agenda
from agenda_decl.config.errors import ConfigError
from agenda_decl.config.model import AgendaConfig, ScheduleConfig
from agenda_decl.config.pause import PauseMark, pause_of, with_pause
from agenda_decl.config.payload import MANAGED_BY_KEY, SCHEDULE_KEY_KEY, check_payload
from agenda_decl.config.rules import (
    ScheduleKind,
    absolute_date,
    parse_skip_days,
    schedule_problems,
    timing_kind,
)
from agenda_decl.config.source import issue_for, source_of
from agenda_decl.config.stored import (
    COMPARED_FIELDS,
    by_identity,
    fingerprint,
    job_id,
    managed_jobs,
    normalized_field,
)
from agenda_decl.job import Job

__all__ = [
    "ACTIONS",
    "Action",
    "Change",
    "FieldDiff",
    "FireTime",
    "FrozenFields",
    "JobWrite",
    "Orphan",
    "Plan",
    "check_schedules",
    "delete_change",
    "first_run",
    "plan",
    "plan_with_stored",
]

Action = Literal["create", "update", "delete", "unchanged"]
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "unchanged")
#: How apply sets ``next_run_at``: ``keep`` the stored one, or ``schedule`` the first run of
#: the declared timing (:func:`first_run`).
NextRun = Literal["keep", "schedule"]

#: Slack for store rounding and clock skew before a late next run counts as drift.
DRIFT_TOLERANCE = timedelta(seconds=1)
#: Changing one of these changes when the job runs, so ``next_run_at`` is recomputed.
TIMING_FIELDS = frozenset(
    {"repeat_interval", "repeat_timezone", "repeat_at", "start_date", "end_date", "skip_days"}
)
NEXT_RUNS = 3
#: Fields a plan does not carry in a :class:`JobWrite`: the id is the change's, and the next
#: run is decided when apply writes.
_NOT_WRITTEN = frozenset({"id", "next_run_at"})


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


@attrs.define(frozen=True)
class FrozenFields(Mapping[str, Any]):
    """A read-only mapping of job fields, copied on the way in (a plan can be pickled or
    copied, which a ``MappingProxyType`` cannot)."""

    _items: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> FrozenFields:
        return cls(tuple(copy.deepcopy(dict(fields)).items()))

    def __getitem__(self, name: str) -> Any:
        for key, value in self._items:
            if key == name:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)


@attrs.define(kw_only=True, frozen=True)
class JobWrite:
    """What apply saves for a create or an update, as data."""

    #: The declared job's fields (every ``JobParameters`` field but ``id`` and
    #: ``next_run_at``), read-only.
    fields: FrozenFields
    kind: ScheduleKind
    skip_immediate: bool = False
    #: ``keep`` the stored next run (only data, priority, ... change) or ``schedule`` the first
    #: run of the declared timing (a create, a changed timing, a re-enabled or drifted job).
    next_run: NextRun = "schedule"

    def job(self, job_id: JobId | None, next_run_at: datetime | None) -> JobParameters[Any]:
        """A fresh ``JobParameters`` to save (the plan itself stays unchanged)."""
        return JobParameters(**copy.deepcopy(dict(self.fields)), id=job_id,
                             next_run_at=next_run_at)


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
    #: An operator's pause of the stored job, which apply keeps (None: not paused).
    paused: PauseMark | None = None
    #: What apply saves (create/update).
    write: JobWrite | None = attrs.field(default=None, repr=False)


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
    changes: tuple[Change, ...]
    orphaned: tuple[Orphan, ...]
    #: How many managed jobs of this owner were in storage.
    stored: int
    #: The fingerprint of those jobs (``stored.fingerprint``): apply refuses the plan when
    #: storage no longer has it.
    fingerprint: str
    base_dir: Path | None = None
    #: The deletes a prune adds to a plan made without one (its orphans, as changes).
    prune_deletes: tuple[Change, ...] = attrs.field(default=(), repr=False)

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action == action)

    @property
    def has_changes(self) -> bool:
        """Whether apply would write anything."""
        return any(change.action != "unchanged" for change in self.changes)

    @property
    def paused(self) -> tuple[Change, ...]:
        """The changes of schedules whose job an operator paused (apply keeps them paused)."""
        return tuple(change for change in self.changes if change.paused is not None)

    @property
    def in_sync(self) -> bool:
        """Whether storage matches the file: nothing to write, no orphaned job of this owner
        (an orphan keeps running although the file no longer declares it, so a drift check
        must see it even when ``apply`` without ``--prune`` has nothing to do) and no job an
        operator paused (the file says it runs; apply leaves it paused all the same)."""
        return not self.has_changes and not self.orphaned and not self.paused

    def pruned(self) -> Plan:
        """This plan with prune: its orphaned jobs become deletes."""
        if self.prune:
            return self
        return attrs.evolve(self, prune=True, changes=(*self.changes, *self.prune_deletes),
                            orphaned=(), prune_deletes=())


async def plan(
    agenda: Agenda, config: AgendaConfig, *, prune: bool = False, base_dir: Path | None = None
) -> Plan:
    """What apply would do; reads storage, writes nothing.

    Raises :class:`ConfigError` listing every invalid schedule (unknown job, bad interval,
    cron, time zone, dates, skip days, or data that does not fit the job's payload).
    ``prune`` turns jobs of this owner that are no longer declared into deletes; without it
    they are listed in ``orphaned`` and kept. ``base_dir`` (the config file's directory) is
    where payload classes are imported from.
    """
    made, _stored = await plan_with_stored(agenda, config, prune=prune, base_dir=base_dir)
    return made


async def plan_with_stored(
    agenda: Agenda, config: AgendaConfig, *, prune: bool = False, base_dir: Path | None = None
) -> tuple[Plan, list[JobParameters[Any]]]:
    """:func:`plan`, and the managed jobs it was made on."""
    base_dir = _base_dir(config, base_dir)
    desired = _desired_schedules(agenda, config, base_dir)
    stored = await managed_jobs(agenda, config.owner)
    now = agenda.clock.now()
    groups = by_identity(stored)
    changes: list[Change] = []
    for want in desired:
        group = groups.pop((want.params.name, want.key), [])
        changes.extend(delete_change(duplicate, want.key, "duplicate") for duplicate in group[1:])
        changes.append(_compare(want, group[0] if group else None, now))
    orphaned: list[Orphan] = []
    prune_deletes: list[Change] = []
    for name, key in sorted(groups):
        for job in groups[(name, key)]:
            (changes if prune else prune_deletes).append(delete_change(job, key, "pruned"))
            if not prune:
                orphaned.append(Orphan(key=key, job=name, id=job_id(job)))
    made = Plan(config=config, owner=config.owner, prune=prune, now=now,
                changes=tuple(changes), orphaned=tuple(orphaned), stored=len(stored),
                fingerprint=fingerprint(stored), base_dir=base_dir,
                prune_deletes=tuple(prune_deletes))
    return made, stored


def check_schedules(
    config: AgendaConfig,
    *,
    agenda: Agenda | None = None,
    base_dir: Path | None = None,
    import_payload_classes: bool = True,
) -> None:
    """Check every schedule by the rule set that ``validate`` applies (:mod:`rules`), without
    storage or an Agenda; raise :class:`ConfigError` listing every problem.

    With ``agenda``, each schedule's job must also be defined or declared on it (what
    :func:`plan` needs). Without ``import_payload_classes``, data of a job whose payload is a
    class is checked for shape only (no application code is imported).
    """
    base_dir = _base_dir(config, base_dir)
    source = source_of(config)
    shape_only = () if import_payload_classes else [
        name for name, job in config.jobs.items() if isinstance(job.payload, str)]
    problems = schedule_problems(
        config.schedules, config.jobs, shape_only=shape_only, base_dir=base_dir,
        written=source.has if source is not None else lambda _path: False,
    )
    issues = [issue_for(config, problem.path, problem.message, key=problem.at_key)
              for problem in problems]
    if agenda is not None:
        issues += [
            issue_for(config, f"schedules[{index}].job",
                      f"job {schedule.job!r} is not defined or declared on the agenda")
            for index, schedule in enumerate(config.schedules)
            if schedule.job in config.jobs and schedule.job not in agenda.definitions
        ]
    if issues:
        raise ConfigError(issues)


def _base_dir(config: AgendaConfig, given: Path | None) -> Path | None:
    if given is not None:
        return given
    source = source_of(config)
    return source.base_dir if source is not None else None


# -- desired state --------------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class _Desired:
    index: int
    schedule: ScheduleConfig
    key: str
    kind: ScheduleKind
    #: The job as declared (no id; ``next_run_at`` is decided by :func:`_compare`).
    params: JobParameters[Any] = attrs.field(eq=False)


def _desired_schedules(
    agenda: Agenda, config: AgendaConfig, base_dir: Path | None
) -> list[_Desired]:
    """Every declared schedule as the job it should be; every problem raised at once (the
    rule set of :func:`check_schedules`) before anything is built."""
    check_schedules(config, agenda=agenda, base_dir=base_dir)
    return [_desired_schedule(agenda, config, schedule, index, base_dir)
            for index, schedule in enumerate(config.schedules)]


def _desired_schedule(
    agenda: Agenda, config: AgendaConfig, schedule: ScheduleConfig, index: int,
    base_dir: Path | None,
) -> _Desired:
    """The job a schedule that passed the rules stands for (built by Job's own builders, so
    it is stored as a job made in code would be)."""
    payload = check_payload(schedule.job, config.jobs[schedule.job], schedule.data,
                            path=f"schedules[{index}].data", base_dir=base_dir)
    job = agenda.create(schedule.job, {**payload, MANAGED_BY_KEY: config.owner,
                                       SCHEDULE_KEY_KEY: schedule.schedule_key},
                        validate=False)  # checked by the rules, with the schedule's path
    kind = timing_kind(schedule)
    if schedule.priority is not None:
        job.priority(schedule.priority)
    job.attrs.start_date = _date(schedule.start_date, schedule.timezone)
    job.attrs.end_date = _date(schedule.end_date, schedule.timezone)
    if schedule.skip_days is not None:
        job.skip_days(parse_skip_days(schedule.skip_days))
    _set_timing(job, schedule, kind)
    job.attrs.disabled = schedule.disabled
    job.attrs.type = "normal"
    return _Desired(index=index, schedule=schedule, key=schedule.schedule_key, kind=kind,
                    params=job.attrs)


def _date(text: str | None, zone: str | None) -> datetime | None:
    return None if text is None else absolute_date(text, zone)


def _set_timing(job: Job[Any], schedule: ScheduleConfig, kind: ScheduleKind) -> None:
    zone = schedule.timezone
    if kind == "at":
        assert schedule.at is not None
        job.repeat_at(schedule.at)
        job.attrs.repeat_timezone = zone
        job.attrs.repeat_interval = None
        return
    interval = schedule.every if kind == "every" else schedule.cron
    assert interval is not None
    job.repeat_every(interval, timezone=zone)


# -- comparing ------------------------------------------------------------------------------


def _compare(want: _Desired, current: JobParameters[Any] | None, now: datetime) -> Change:
    if current is None:
        return _create(want, now)
    paused = pause_of(current)
    if paused is not None:  # the operator's pause is kept: disabled, with its marker
        kept = attrs.evolve(want.params, disabled=True,
                            data=with_pause(want.params.data, paused))
        want = attrs.evolve(want, params=kept)
    params = attrs.evolve(want.params, id=current.id)
    diffs = tuple(
        FieldDiff(field=name, old=getattr(current, name), new=getattr(params, name))
        for name in COMPARED_FIELDS if _differs(name, current, params)
    )
    changed = {diff.field for diff in diffs}
    reenabled = current.disabled and not params.disabled
    next_run: NextRun = "keep"
    if changed & TIMING_FIELDS or reenabled:
        next_run = "schedule"
        params.next_run_at = _first_run_of(want, current.last_run_at, now)
    else:
        params.next_run_at = current.next_run_at
        if not params.disabled and _drifted(params, current, now):
            recomputed = _first_run_of(want, current.last_run_at, now)
            if recomputed != current.next_run_at:
                next_run = "schedule"
                params.next_run_at = recomputed
                diffs += (FieldDiff(field="next_run_at", old=current.next_run_at,
                                    new=recomputed),)
    return Change(action="update" if diffs else "unchanged", key=want.key, job=params.name,
                  id=current.id, diffs=diffs, next_runs=_fire_times(params, now),
                  timezone=params.repeat_timezone, disabled=params.disabled, paused=paused,
                  write=_job_write(want, next_run) if diffs else None)


def _create(want: _Desired, now: datetime) -> Change:
    params = attrs.evolve(want.params, next_run_at=_first_run_of(want, None, now))
    diffs = tuple(
        FieldDiff(field=name, old=None, new=getattr(params, name))
        for name in COMPARED_FIELDS if _shown_on_create(name, getattr(params, name))
    )
    return Change(action="create", key=want.key, job=params.name, diffs=diffs,
                  next_runs=_fire_times(params, now), timezone=params.repeat_timezone,
                  disabled=params.disabled, write=_job_write(want, "schedule"))


def _job_write(want: _Desired, next_run: NextRun) -> JobWrite:
    fields = {field.name: getattr(want.params, field.name)
              for field in attrs.fields(JobParameters) if field.name not in _NOT_WRITTEN}
    return JobWrite(fields=FrozenFields.of(fields), kind=want.kind,
                    skip_immediate=want.schedule.skip_immediate, next_run=next_run)


def _drifted(params: JobParameters[Any], current: JobParameters[Any], now: datetime) -> bool:
    """A next run the declared schedule cannot explain: none at all (edited by hand), or
    later than its next tick from now. The second is what a writer that does not check the
    stored timing in its state writes (e.g. Node Agenda) leaves when an apply changed the
    schedule while the job ran. A failed last run is left alone: its retry backoff may push
    it further."""
    if current.next_run_at is None:
        return True
    failed_last = current.failed_at is not None and (
        current.last_finished_at is None or current.failed_at >= current.last_finished_at)
    if failed_last:
        return False
    latest = timing.compute_next_run_at(attrs.evolve(params, last_run_at=now), now)
    return latest is not None and current.next_run_at > latest + DRIFT_TOLERANCE


def _differs(name: str, current: JobParameters[Any], wanted: JobParameters[Any]) -> bool:
    old, new = (normalized_field(name, getattr(job, name)) for job in (current, wanted))
    return bool(old != new)


def _shown_on_create(name: str, value: Any) -> bool:
    if name == "type":
        return False
    if name == "data":
        return True
    if name == "priority":
        return bool(value)
    return value not in (None, False, [])


def _first_run_of(want: _Desired, last_run_at: datetime | None, now: datetime) -> (
    datetime | None
):
    return first_run(want.params, want.kind, skip_immediate=want.schedule.skip_immediate,
                     last_run_at=last_run_at, now=now)


def first_run(
    params: JobParameters[Any], kind: ScheduleKind, *, skip_immediate: bool,
    last_run_at: datetime | None, now: datetime,
) -> datetime | None:
    """``next_run_at`` for a new schedule or one whose timing changed (module docstring);
    ``last_run_at`` is the stored job's last run (None for a new one)."""
    params = attrs.evolve(params, last_run_at=None, next_run_at=None)
    if kind != "every":
        return timing.compute_next_run_at(params, now)
    if last_run_at is not None:
        after_last = timing.compute_next_run_at(
            attrs.evolve(params, last_run_at=last_run_at), now
        )
        if after_last is None or after_last >= now:
            return after_last
        return timing.compute_next_run_at(params, now)
    if skip_immediate:
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


def delete_change(job: JobParameters[Any], key: str, reason: str) -> Change:
    """A delete of a stored job (``pruned``, or a ``duplicate`` of a declared schedule)."""
    return Change(action="delete", key=key, job=job.name, id=job_id(job), reason=reason,
                  timezone=job.repeat_timezone, disabled=job.disabled)

