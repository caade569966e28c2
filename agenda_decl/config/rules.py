"""The one rule set for schedules, used by ``validate`` (every file that loads) and by ``plan``
(a config built in code too), so that both accept and refuse the same schedules with the same
messages.

A schedule names a declared job; its key is unique per job; it gives exactly one of
``every``, ``cron`` and ``at``, each readable; ``skip_immediate`` goes with ``every`` only;
its time zone, priority, start and end dates (absolute ISO 8601; the end after the start) and
skip days are readable; its ``data`` fits the job's payload. Nothing here needs an Agenda, a
backend or a clock: the rules are pure functions of the config (and of the payload classes,
which are imported unless a job is to be checked for shape only).

The small value rules (durations, priorities, names) are shared with ``validate``'s checks of
the other sections.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import attrs

from agenda_decl import timing
from agenda_decl.config.errors import KeyPath, PayloadError, render_path
from agenda_decl.config.model import JobConfig, ScheduleConfig
from agenda_decl.config.payload import check_payload, describe
from agenda_decl.errors import AgendaError

__all__ = [
    "TIMING_KEYS",
    "WEEKDAYS",
    "Problem",
    "ScheduleKind",
    "absolute_date",
    "duration_problem",
    "parse_skip_days",
    "priority_problem",
    "schedule_problems",
    "text_problem",
    "timing_kind",
]

#: Weekday names for ``skip_days`` (0 = Sunday, as in Agenda), full and three-letter.
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
ScheduleKind = Literal["every", "cron", "at"]
TIMING_KEYS: tuple[ScheduleKind, ...] = ("every", "cron", "at")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DURATION_HINT = "a duration (milliseconds, or text like '5 minutes' or '1 hour and 30 minutes')"
_TIME_HINT = "a time of day like '3:30pm', '15:30', '3pm', 'noon' or 'midnight'"
_CRON_HINT = ("expected 5 fields 'minute hour day month weekday', 6 with seconds first, or "
              "@hourly, @daily, @weekly, @monthly, @yearly")


@attrs.frozen
class Problem:
    """One broken value: its rendered path (``schedules[2].cron``), the message, and whether
    it is shown at the key rather than at the value."""

    path: str
    message: str
    at_key: bool = False


# -- value rules (shared with validate) ----------------------------------------------------


def duration_problem(value: int | str | None, *, positive: bool = True) -> str | None:
    """What is wrong with a duration of the file (None when it is fine or absent)."""
    if value is None:
        return None
    try:
        ms = timing.parse_duration(value)
    except AgendaError:
        hint = "; for a cron expression write cron: instead" if _is_cron(value) else ""
        return f"expected {_DURATION_HINT}, got {describe(value)}{hint}"
    if positive and ms <= 0:
        return f"expected a duration > 0, got {describe(value)}"
    return None


def priority_problem(value: int | str | None) -> str | None:
    try:
        timing.parse_priority(value)
    except AgendaError:
        names = ", ".join(timing.PRIORITY_NAMES)
        return f"expected an integer or one of {names}, got {describe(value)}"
    return None


def text_problem(value: str | None, what: str, *, limit: int = 255) -> str | None:
    if value is not None and (not value or len(value) > limit or _CONTROL.search(value)):
        return (f"expected {what} of 1 to {limit} characters without control characters, "
                f"got {describe(value)}")
    return None


def _is_cron(value: object) -> bool:
    return isinstance(value, str) and timing.is_cron(value)


def absolute_date(value: str, zone: str | None) -> datetime | None:
    """An ISO 8601 date or date-time; one without an offset is read in the schedule's zone
    (UTC when it has none), as ``apply`` stores it. None for anything else (relative text
    such as "in 5 minutes" would move on every apply)."""
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        try:
            parsed = parsed.replace(tzinfo=timing.get_zone(zone))
        except AgendaError:
            parsed = parsed.replace(tzinfo=UTC)  # the bad zone is reported on its own
    return timing.parse_date(parsed)


def parse_skip_days(
    days: list[int | str], report: Callable[[tuple[int, ...], str], None] | None = None
) -> list[int]:
    """Weekday numbers (0 = Sunday) from numbers 0-6 and names ("sat", "Sunday"); problems go
    to ``report(index_path, message)`` (ValueError when no reporter is given)."""
    def problem(where: tuple[int, ...], message: str) -> None:
        if report is None:
            raise ValueError(message)
        report(where, message)

    result: list[int] = []
    for index, day in enumerate(days):
        number = _weekday(day)
        if number is None:
            problem((index,), "expected a weekday: 0-6 (0 = Sunday) or a name like 'sat' or "
                    f"'sunday', got {describe(day)}")
        else:
            result.append(number)
    if len(set(result)) == 7:
        problem((), "every weekday is skipped: the schedule would never run")
    return sorted(set(result))


def _weekday(day: int | str) -> int | None:
    if isinstance(day, int) and not isinstance(day, bool):
        return day if 0 <= day <= 6 else None
    if isinstance(day, str):
        text = day.strip().lower()
        for number, name in enumerate(WEEKDAYS):
            if text in (name, name[:3]):
                return number
    return None


def timing_kind(schedule: ScheduleConfig) -> ScheduleKind:
    """Which of ``every``, ``cron`` and ``at`` a schedule that passed the rules gives."""
    return next(key for key in TIMING_KEYS if getattr(schedule, key) is not None)


# -- the schedule rules --------------------------------------------------------------------


def _never_written(_path: str) -> bool:
    return False


def schedule_problems(
    schedules: Sequence[ScheduleConfig | None],
    jobs: Mapping[str, JobConfig | None],
    *,
    written: Callable[[str], bool] = _never_written,
    shape_only: Collection[str] = (),
    base_dir: Path | None = None,
) -> list[Problem]:
    """Every problem of ``schedules`` (None: a schedule that could not be structured, reported
    elsewhere), in the order of the schedules.

    ``jobs`` are the declared jobs (None: declared but broken). ``written(path)`` tells whether
    the file wrote a value that was dropped for its type (it still counts as given). Data of
    the jobs in ``shape_only`` is checked for its shape only, without importing their payload
    class; other payload classes are imported from ``base_dir``.
    """
    rules = _ScheduleRules(jobs=jobs, written=written, shape_only=shape_only,
                           base_dir=base_dir)
    for index, schedule in enumerate(schedules):
        if schedule is not None:
            rules.check(index, schedule)
    return rules.problems


@attrs.define
class _ScheduleRules:
    jobs: Mapping[str, JobConfig | None]
    written: Callable[[str], bool]
    shape_only: Collection[str]
    base_dir: Path | None
    problems: list[Problem] = attrs.field(factory=list)
    #: (job, schedule key) -> the index of the first schedule that uses it.
    first_use: dict[tuple[str, str], int] = attrs.field(factory=dict)

    def report(self, path: KeyPath, message: str | None, *, at_key: bool = False) -> None:
        if message is not None:
            self.problems.append(Problem(render_path(path), message, at_key))

    def given(self, path: KeyPath, value: object) -> bool:
        return value is not None or self.written(render_path(path))

    def check(self, index: int, schedule: ScheduleConfig) -> None:
        path: KeyPath = ("schedules", index)
        self.job(path, schedule)
        self.key(path, schedule, index)
        self.timing(path, schedule)
        if schedule.priority is not None:
            self.report((*path, "priority"), priority_problem(schedule.priority))
        self.dates(path, schedule)
        if schedule.skip_days is not None:
            parse_skip_days(schedule.skip_days,
                            lambda where, message: self.report((*path, "skip_days", *where),
                                                               message))
        job = self.jobs.get(schedule.job)
        if job is not None:
            self.data((*path, "data"), schedule.job, job, schedule.data)

    def job(self, path: KeyPath, schedule: ScheduleConfig) -> None:
        if schedule.job in self.jobs:
            return
        defined = ", ".join(self.jobs) or "none"
        close = difflib.get_close_matches(schedule.job, list(self.jobs), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.report((*path, "job"), f"unknown job {schedule.job!r} (jobs defined in this "
                    f"file: {defined}{hint})")

    def key(self, path: KeyPath, schedule: ScheduleConfig, index: int) -> None:
        """A schedule is identified by (job, key): the key is unique per job."""
        self.report((*path, "key"), text_problem(schedule.key, "a key"))
        identity = (schedule.job, schedule.schedule_key)
        if identity not in self.first_use:
            self.first_use[identity] = index
            return
        self.report((*path, "key") if schedule.key else path,
                    f"schedule key {schedule.schedule_key!r} of job {schedule.job!r} is "
                    f"already used by schedules[{self.first_use[identity]}]; give each "
                    "schedule of a job its own key")

    def timing(self, path: KeyPath, schedule: ScheduleConfig) -> None:
        """Exactly one of every, cron and at, each readable; skip_immediate with every only."""
        given = [key for key in TIMING_KEYS
                 if self.given((*path, key), getattr(schedule, key))]
        if not given:
            self.report(path, "a schedule needs one of every, cron or at (none given)")
        elif len(given) > 1:
            self.report((*path, given[1]), f"give only one of every, cron and at (found "
                        f"{' and '.join(given)})", at_key=True)
        zone = self.zone(path, schedule.timezone)
        self.report((*path, "every"), duration_problem(schedule.every))
        now = datetime.now(UTC)
        if schedule.cron is not None:
            try:
                timing.next_cron_time(schedule.cron, now, zone)
            except AgendaError as error:
                hint = "" if "expected" in str(error) else f" ({_CRON_HINT})"
                self.report((*path, "cron"), f"{error}{hint}")
        if schedule.at is not None:
            try:
                timing.next_time_of_day(schedule.at, now, zone)
            except AgendaError:
                self.report((*path, "at"), f"expected {_TIME_HINT}, got {describe(schedule.at)}")
        if schedule.skip_immediate and schedule.every is None:
            self.report((*path, "skip_immediate"), "skip_immediate applies to every: "
                        "schedules only", at_key=True)

    def zone(self, path: KeyPath, name: str | None) -> str | None:
        """The schedule's zone if it is readable (else reported, and UTC is used)."""
        if name is None:
            return None
        try:
            timing.get_zone(name)
        except AgendaError as error:
            self.report((*path, "timezone"), str(error))
            return None
        return name

    def dates(self, path: KeyPath, schedule: ScheduleConfig) -> None:
        """Absolute dates; an end date must be after the start date (a window of one instant
        or less would never let the schedule run)."""
        dates: dict[str, datetime] = {}
        for name in ("start_date", "end_date"):
            value = getattr(schedule, name)
            if value is None:
                continue
            parsed = absolute_date(value, schedule.timezone)
            if parsed is None:
                self.report((*path, name), "expected an ISO 8601 date or date and time "
                            f"('2026-12-01' or '2026-12-01T09:00:00Z'), got {describe(value)}; "
                            "relative dates would change on every apply")
            else:
                dates[name] = parsed
        if len(dates) == 2 and dates["end_date"] <= dates["start_date"]:
            self.report((*path, "end_date"), f"end_date {schedule.end_date!r} is not after "
                        f"start_date {schedule.start_date!r}")

    def data(self, path: KeyPath, job_name: str, job: JobConfig, data: dict[str, Any]) -> None:
        if isinstance(job.payload, str) and job_name in self.shape_only:
            job = attrs.evolve(job, payload=None)  # shape only: import nothing
        try:
            check_payload(job_name, job, data, path=render_path(path), base_dir=self.base_dir)
        except PayloadError as error:
            for where, message in error.problems:
                self.problems.append(Problem(where, message))
