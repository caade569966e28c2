"""Semantic checks of a structured ``agenda.yaml``: what types alone cannot say.

Durations, cron expressions, times of day, time zones, dates, weekdays, priorities, counts,
identifiers, handler paths, payload types and defaults, schedule references and keys, and
schedule ``data`` against the job's payload. Every problem becomes a :class:`ConfigIssue` at
the position of the offending value; all of them are returned together.

The name rules mirror the backends' own checks (which run again when a backend is built), so
that ``agenda-decl validate`` needs no driver installed and no database.
"""

from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from agenda_decl import timing
from agenda_decl._secrets import mask_url
from agenda_decl.config import model
from agenda_decl.config.errors import ConfigIssue, ImportRefError, PayloadError, render_path
from agenda_decl.config.payload import (
    RESERVED_DATA_KEYS,
    check_field_value,
    check_payload,
    describe,
    import_object,
    is_import_ref,
    parse_payload_type,
    stdlib_module,
)
from agenda_decl.errors import AgendaError

if TYPE_CHECKING:
    from agenda_decl.config._structure import Parts
    from agenda_decl.config.load import ConfigSource

__all__ = ["BACKOFF_PRESETS", "WEEKDAYS", "check_config", "parse_skip_days"]

BACKOFF_PRESETS = ("aggressive", "standard", "relaxed")
#: Weekday names for ``skip_days`` (0 = Sunday, as in Agenda), full and three-letter.
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")

_SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PG_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
_REDIS_NAME = re.compile(r"^[A-Za-z0-9_.:{}/-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DURATION_HINT = "a duration (milliseconds, or text like '5 minutes' or '1 hour and 30 minutes')"
_TIME_HINT = "a time of day like '3:30pm', '15:30', '3pm', 'noon' or 'midnight'"

Path_ = tuple[str | int, ...]


@attrs.define
class _Checker:
    source: ConfigSource
    import_payload_classes: bool
    issues: list[ConfigIssue] = attrs.field(factory=list)
    #: Jobs whose payload class could not be used: reported once, at the payload value, so
    #: their schedules' data is checked for shape only.
    broken_classes: set[str] = attrs.field(factory=set)

    def report(self, path: Path_, message: str, *, key: bool = False) -> None:
        self.issues.append(self.source.issue(render_path(path), message, key=key))

    def given(self, path: Path_) -> bool:
        return self.source.has(render_path(path))

    # -- small value checks ------------------------------------------------------------------

    def count(self, path: Path_, value: int | None, minimum: int) -> None:
        if value is not None and value < minimum:
            self.report(path, f"expected an integer >= {minimum}, got {value}")

    def duration(self, path: Path_, value: int | str | None, *, positive: bool = True) -> None:
        if value is None:
            return
        try:
            ms = timing.parse_duration(value)
        except AgendaError:
            hint = "; for a cron expression write cron: instead" if _is_cron(value) else ""
            self.report(path, f"expected {_DURATION_HINT}, got {describe(value)}{hint}")
            return
        if positive and ms <= 0:
            self.report(path, f"expected a duration > 0, got {describe(value)}")

    def priority(self, path: Path_, value: int | str | None) -> None:
        try:
            timing.parse_priority(value)
        except AgendaError:
            names = ", ".join(timing.PRIORITY_NAMES)
            self.report(path, f"expected an integer or one of {names}, got {describe(value)}")

    def text(self, path: Path_, value: str | None, what: str, *, limit: int = 255) -> None:
        if value is not None and (not value or len(value) > limit or _CONTROL.search(value)):
            self.report(path, f"expected {what} of 1 to {limit} characters without control "
                        f"characters, got {describe(value)}")

    def import_ref(self, path: Path_, value: str, what: str) -> bool:
        """Whether ``value`` is an import path worth importing (else reported)."""
        if not is_import_ref(value):
            self.report(path, f"expected a {what} as 'package.module:name', got "
                        f"{describe(value)}")
            return False
        if stdlib_module(value):
            self.report(path, f"{what} {value!r} points into the standard library module "
                        f"{stdlib_module(value)!r}; it must be your own code")
            return False
        return True

    def name(self, path: Path_, value: str, pattern: re.Pattern[str], rule: str,
             limit: int) -> None:
        if not pattern.match(value) or len(value) > limit:
            self.report(path, f"expected {rule}, at most {limit} characters, got "
                        f"{describe(value)}")

    def url(self, path: Path_, value: str | None, kind: str, schemes: tuple[str, ...],
            *, conninfo: bool = False) -> None:
        if value is None:
            return
        example = f"{schemes[0]}://user@host/..."
        if "://" in value:
            scheme = value.split("://", 1)[0].lower()
            if scheme in schemes:
                return
            found = f"a {scheme}:// URL"
        elif conninfo and "=" in value:
            return  # libpq's "host=... dbname=..." form
        else:
            found = repr(mask_url(value)) if value else "an empty string"
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        self.report(path, f"expected a {kind} connection string ({allowed}, e.g. {example}), "
                    f"got {found}")


def _is_cron(value: object) -> bool:
    return isinstance(value, str) and timing.is_cron(value)


def check_config(
    parts: Parts, source: ConfigSource, *, import_payload_classes: bool = False
) -> list[ConfigIssue]:
    """Every semantic problem of the structured sections of a file."""
    checker = _Checker(source, import_payload_classes)
    if parts.backend is not None:
        _check_backend(checker, parts.backend)
    if parts.scheduler is not None:
        _check_scheduler(checker, parts.scheduler)
    for name, job in parts.jobs.items():
        _check_job_name(checker, name)
        if job is not None:
            _check_job(checker, name, job)
    keys: dict[tuple[str, str], int] = {}
    for index, schedule in enumerate(parts.schedules):
        if schedule is not None:
            _check_schedule(checker, parts, index, schedule, keys)
    if parts.codegen is not None and not parts.codegen.output.endswith(".py"):
        checker.report(("codegen", "output"), f"expected a path to a .py file, got "
                       f"{describe(parts.codegen.output)}")
    return checker.issues


# -- backend ---------------------------------------------------------------------------------


def _check_backend(checker: _Checker, backend: model.BackendConfig) -> None:
    path: Path_ = ("backend", "storage")
    storage = backend.storage
    if isinstance(storage, model.SQLiteStorage):
        checker.text((*path, "path"), storage.path, "a file path", limit=4096)
        _table_name(checker, (*path, "table_name"), storage.table_name, 63)
    elif isinstance(storage, model.PostgresStorage):
        checker.url((*path, "connection_string"), storage.connection_string, "PostgreSQL",
                    ("postgresql", "postgres"), conninfo=True)
        # The index and trigger names derived from the table must fit PostgreSQL's 63 bytes.
        _table_name(checker, (*path, "table_name"), storage.table_name, 63 - 19)
        _pg_channel(checker, (*path, "channel_name"), storage.channel_name)
    elif isinstance(storage, model.RedisStorage):
        checker.url((*path, "connection_string"), storage.connection_string, "Redis",
                    ("redis", "rediss", "unix"))
        _redis_name(checker, (*path, "key_prefix"), storage.key_prefix)
        _redis_name(checker, (*path, "channel_name"), storage.channel_name)
    else:
        _mongo(checker, path, storage.address, storage.collection)
    _check_notifications(checker, backend)


def _check_notifications(checker: _Checker, backend: model.BackendConfig) -> None:
    path: Path_ = ("backend", "notifications")
    channel = backend.notifications
    if isinstance(channel, model.PostgresNotifications):
        checker.url((*path, "connection_string"), channel.connection_string, "PostgreSQL",
                    ("postgresql", "postgres"), conninfo=True)
        _pg_channel(checker, (*path, "channel_name"), channel.channel_name)
    elif isinstance(channel, model.RedisNotifications):
        checker.url((*path, "connection_string"), channel.connection_string, "Redis",
                    ("redis", "rediss", "unix"))
        _redis_name(checker, (*path, "channel_name"), channel.channel_name)
    elif isinstance(channel, model.MongoChangeStreamNotifications):
        if not isinstance(backend.storage, model.MongoStorage):
            checker.report((*path, "type"), "mongo-changestream notifications need mongo "
                           f"storage (the stream watches the jobs collection), got "
                           f"{backend.storage.type} storage")
        _mongo(checker, path, channel.address, channel.collection)


def _table_name(checker: _Checker, path: Path_, value: str, limit: int) -> None:
    checker.name(path, value, _SQL_IDENTIFIER, "letters, digits and underscores, starting "
                 "with a letter or underscore", limit)


def _pg_channel(checker: _Checker, path: Path_, value: str) -> None:
    checker.name(path, value, _PG_CHANNEL, "letters, digits, '_', ':', '.', '-', starting "
                 "with a letter or underscore", 57)


def _redis_name(checker: _Checker, path: Path_, value: str) -> None:
    checker.name(path, value, _REDIS_NAME, "letters, digits or _ . : { } / -", 128)


def _mongo(checker: _Checker, path: Path_, address: str | None, collection: str | None) -> None:
    if address is not None and "://" in address:
        checker.url((*path, "address"), address, "MongoDB", ("mongodb", "mongodb+srv"))
    elif address is not None and not re.match(r"^[A-Za-z0-9_.\[\]:-]+(/[A-Za-z0-9_-]*)?$",
                                              address):
        checker.report((*path, "address"), "expected a MongoDB address (mongodb://host/db or "
                       f"host:port/db), got {describe(mask_url(address))}")
    if collection is not None and (not collection or "$" in collection or "\x00" in collection
                                   or collection.startswith("system.")):
        checker.report((*path, "collection"), "expected a MongoDB collection name (no '$', "
                       f"not 'system.*'), got {describe(collection)}")


# -- scheduler and jobs ----------------------------------------------------------------------


def _check_scheduler(checker: _Checker, scheduler: model.SchedulerConfig) -> None:
    path: Path_ = ("scheduler",)
    checker.text((*path, "name"), scheduler.name, "a name")
    checker.duration((*path, "process_every"), scheduler.process_every)
    checker.count((*path, "max_concurrency"), scheduler.max_concurrency, 1)
    checker.count((*path, "default_concurrency"), scheduler.default_concurrency, 1)
    checker.count((*path, "lock_limit"), scheduler.lock_limit, 0)
    checker.count((*path, "default_lock_limit"), scheduler.default_lock_limit, 0)
    checker.duration((*path, "default_lock_lifetime"), scheduler.default_lock_lifetime)


def _check_job_name(checker: _Checker, name: str) -> None:
    if not name or len(name) > 255 or _CONTROL.search(name):
        checker.report(("jobs", name), "expected a job name of 1 to 255 characters without "
                       f"control characters, got {name!r}", key=True)


def _check_job(checker: _Checker, name: str, job: model.JobConfig) -> None:
    path: Path_ = ("jobs", name)
    if job.handler is not None:
        checker.import_ref((*path, "handler"), job.handler, "handler")
    if isinstance(job.payload, str):
        if checker.import_ref((*path, "payload"), job.payload, "payload class"):
            _check_payload_class(checker, (*path, "payload"), name, job.payload)
    elif job.payload is not None:
        for field_name, field in job.payload.items():
            _check_field(checker, (*path, "payload", field_name), field_name, field)
    checker.count((*path, "concurrency"), job.concurrency, 1)
    checker.count((*path, "lock_limit"), job.lock_limit, 0)
    checker.duration((*path, "lock_lifetime"), job.lock_lifetime)
    if job.priority is not None:
        checker.priority((*path, "priority"), job.priority)
    if isinstance(job.backoff, str) and job.backoff not in BACKOFF_PRESETS:
        checker.report((*path, "backoff"), f"expected a backoff preset "
                       f"({', '.join(BACKOFF_PRESETS)}) or a strategy mapping, got "
                       f"{describe(job.backoff)}")
    elif isinstance(job.backoff, model.BackoffConfig):
        _check_backoff(checker, (*path, "backoff"), job.backoff)


def _check_payload_class(checker: _Checker, path: Path_, job_name: str, ref: str) -> None:
    """Import the payload class (with ``import_payload_classes``), as plan and enqueueing do:
    a class that cannot be used is reported at the payload value, not at each schedule."""
    if not checker.import_payload_classes:
        checker.broken_classes.add(job_name)  # not imported: schedules get a shape check
        return
    try:
        cls = import_object(ref, base_dir=checker.source.base_dir, what="payload class")
    except ImportRefError as error:
        checker.report(path, str(error))
        checker.broken_classes.add(job_name)
        return
    if not (isinstance(cls, type) and attrs.has(cls)):
        checker.report(path, f"payload {ref!r} of job {job_name!r} is not an attrs class")
        checker.broken_classes.add(job_name)


def _check_field(checker: _Checker, path: Path_, name: str, field: model.PayloadField) -> None:
    if name in RESERVED_DATA_KEYS:
        checker.report(path, f"{name!r} is reserved for agenda-decl's ownership marker",
                       key=True)
    elif not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
        checker.report(path, f"expected a field name that is a Python identifier (letters, "
                       f"digits, '_'; not a keyword), got {name!r}", key=True)
    try:
        parse_payload_type(field.type)
    except ValueError as error:
        shorthand = checker.source.has(render_path((*path, "type")))
        checker.report((*path, "type") if shorthand else path, str(error))
        return
    if field.choices is not None:
        if not field.choices:
            checker.report((*path, "choices"), "expected at least one choice, got an empty list")
        for index, choice in enumerate(field.choices):
            try:
                check_field_value(attrs.evolve(field, choices=None), choice)
            except ValueError as error:
                checker.report((*path, "choices", index), str(error))
    if field.default is not attrs.NOTHING:
        try:
            check_field_value(field, field.default)
        except ValueError as error:
            checker.report((*path, "default"), str(error))


def _check_backoff(checker: _Checker, path: Path_, backoff: model.BackoffConfig) -> None:
    checker.duration((*path, "delay"), backoff.delay, positive=False)
    checker.duration((*path, "max_delay"), backoff.max_delay)
    checker.duration((*path, "increment"), backoff.increment, positive=False)
    checker.count((*path, "max_retries"), backoff.max_retries, 0)
    if backoff.factor <= 0:
        checker.report((*path, "factor"), f"expected a number > 0, got {backoff.factor}")
    if not 0 <= backoff.jitter <= 1:
        checker.report((*path, "jitter"), f"expected a number from 0 to 1, got {backoff.jitter}")
    only = {"factor": "exponential", "increment": "linear"}
    for option, strategy in only.items():
        if checker.given((*path, option)) and backoff.strategy != strategy:
            checker.report((*path, option), f"{option} applies to the {strategy} strategy only "
                           f"(this one is {backoff.strategy})", key=True)


# -- schedules -------------------------------------------------------------------------------


def _check_schedule(
    checker: _Checker,
    parts: Parts,
    index: int,
    schedule: model.ScheduleConfig,
    keys: dict[tuple[str, str], int],
) -> None:
    path: Path_ = ("schedules", index)
    if schedule.job not in parts.jobs:
        defined = ", ".join(parts.jobs) or "none"
        close = difflib.get_close_matches(schedule.job, list(parts.jobs), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        checker.report((*path, "job"), f"unknown job {schedule.job!r} (jobs defined in this "
                       f"file: {defined}{hint})")
    _check_key(checker, path, schedule, keys, index)
    _check_timing(checker, path, schedule)
    if schedule.priority is not None:
        checker.priority((*path, "priority"), schedule.priority)
    _check_dates(checker, path, schedule)
    if schedule.skip_days is not None:
        parse_skip_days(schedule.skip_days,
                        lambda i, message: checker.report((*path, "skip_days", *i), message))
    job = parts.jobs.get(schedule.job)
    if job is not None:
        _check_data(checker, (*path, "data"), schedule.job, job, schedule.data)


def _check_key(checker: _Checker, path: Path_, schedule: model.ScheduleConfig,
               keys: dict[tuple[str, str], int], index: int) -> None:
    checker.text((*path, "key"), schedule.key, "a key")
    identity = (schedule.job, schedule.schedule_key)
    if identity in keys:
        first = keys[identity]
        checker.report((*path, "key") if schedule.key else path,
                       f"schedule key {schedule.schedule_key!r} of job {schedule.job!r} is "
                       f"already used by schedules[{first}]; give each schedule of a job its "
                       "own key")
    else:
        keys[identity] = index


def _check_timing(checker: _Checker, path: Path_, schedule: model.ScheduleConfig) -> None:
    # Presence as written (a value dropped for its type still counts as given).
    given = [name for name in ("every", "cron", "at")
             if getattr(schedule, name) is not None or checker.given((*path, name))]
    if not given:
        checker.report(path, "a schedule needs one of every, cron or at (none given)")
    elif len(given) > 1:
        checker.report((*path, given[1]), f"give only one of every, cron and at (found "
                       f"{' and '.join(given)})", key=True)
    zone_ok = True
    if schedule.timezone is not None:
        try:
            timing.get_zone(schedule.timezone)
        except AgendaError as error:
            checker.report((*path, "timezone"), str(error))
            zone_ok = False
    checker.duration((*path, "every"), schedule.every)
    now = datetime.now(UTC)
    zone = schedule.timezone if zone_ok else None
    if schedule.cron is not None:
        try:
            timing.next_cron_time(schedule.cron, now, zone)
        except AgendaError as error:
            hint = "" if "expected" in str(error) else (
                " (expected 5 fields 'minute hour day month weekday', 6 with seconds first, "
                "or @hourly, @daily, @weekly, @monthly, @yearly)")
            checker.report((*path, "cron"), f"{error}{hint}")
    if schedule.at is not None:
        try:
            timing.next_time_of_day(schedule.at, now, zone)
        except AgendaError:
            checker.report((*path, "at"), f"expected {_TIME_HINT}, got {describe(schedule.at)}")
    if schedule.skip_immediate and schedule.every is None:
        checker.report((*path, "skip_immediate"), "skip_immediate applies to every: schedules "
                       "only", key=True)


def _check_dates(checker: _Checker, path: Path_, schedule: model.ScheduleConfig) -> None:
    dates: dict[str, datetime] = {}
    for name in ("start_date", "end_date"):
        value = getattr(schedule, name)
        if value is None:
            continue
        parsed = absolute_date(value, schedule.timezone)
        if parsed is None:
            checker.report((*path, name), "expected an ISO 8601 date or date and time "
                           f"('2026-12-01' or '2026-12-01T09:00:00Z'), got {describe(value)}; "
                           "relative dates would change on every apply")
        else:
            dates[name] = parsed
    if len(dates) == 2 and dates["end_date"] <= dates["start_date"]:
        checker.report((*path, "end_date"), f"end_date {schedule.end_date!r} is not after "
                       f"start_date {schedule.start_date!r}")


def absolute_date(value: str, zone: str | None) -> datetime | None:
    """An ISO 8601 date or date-time; one without an offset is read in the schedule's zone
    (UTC when it has none), as ``apply`` stores it."""
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


def _check_data(checker: _Checker, path: Path_, job_name: str, job: model.JobConfig,
                data: dict[str, Any]) -> None:
    if isinstance(job.payload, str) and job_name in checker.broken_classes:
        job = attrs.evolve(job, payload=None)  # shape only: the class is reported already
    base_dir: Path | None = checker.source.base_dir
    try:
        check_payload(job_name, job, data, path=render_path(path), base_dir=base_dir)
    except PayloadError as error:
        for where, message in error.problems:
            checker.issues.append(checker.source.issue(where, message))
