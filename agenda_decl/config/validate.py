"""Semantic checks of a structured ``agenda.yaml``: what types alone cannot say.

Durations, priorities, counts, identifiers, connection strings, handler paths, payload types
and defaults; the schedules (timing, time zones, dates, skip days, keys, data) by the one rule
set that ``plan`` applies too (:mod:`agenda_decl.config.rules`). Every problem becomes a
:class:`ConfigIssue` at the position of the offending value; all of them are returned together.

The name rules mirror the backends' own checks (which run again when a backend is built), so
that ``agenda-decl validate`` needs no driver installed and no database.
"""

from __future__ import annotations

import keyword
import re
from typing import TYPE_CHECKING

import attrs

from agenda_decl._secrets import mask_url
from agenda_decl.config import model
from agenda_decl.config.errors import ConfigIssue, ImportRefError, render_path
from agenda_decl.config.payload import (
    RESERVED_DATA_KEYS,
    check_field_value,
    describe,
    import_object,
    is_import_ref,
    parse_payload_type,
    stdlib_module,
)
from agenda_decl.config.rules import (
    duration_problem,
    priority_problem,
    schedule_problems,
    text_problem,
)
from agenda_decl.connectors.redis_urls import (
    CLUSTER_PREFIX_RULE,
    CLUSTER_SCHEMES,
    has_hash_tag,
    is_cluster_url,
    socket_timeout_problem,
)

if TYPE_CHECKING:
    from agenda_decl.config._structure import Parts
    from agenda_decl.config.source import ConfigSource

__all__ = ["BACKOFF_PRESETS", "check_config"]

BACKOFF_PRESETS = ("aggressive", "standard", "relaxed")

_SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PG_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
_REDIS_NAME = re.compile(r"^[A-Za-z0-9_.:{}/-]{1,128}$")
_REDIS_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Path_ = tuple[str | int, ...]


@attrs.define
class _Checker:
    source: ConfigSource
    import_payload_classes: bool
    issues: list[ConfigIssue] = attrs.field(factory=list)
    #: Jobs whose payload class could not be used (or was not imported): reported once, at
    #: the payload value, so their schedules' data is checked for shape only.
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
        problem = duration_problem(value, positive=positive)
        if problem is not None:
            self.report(path, problem)

    def priority(self, path: Path_, value: int | str | None) -> None:
        problem = priority_problem(value)
        if problem is not None:
            self.report(path, problem)

    def text(self, path: Path_, value: str | None, what: str, *, limit: int = 255) -> None:
        problem = text_problem(value, what, limit=limit)
        if problem is not None:
            self.report(path, problem)

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
    for problem in schedule_problems(parts.schedules, parts.jobs, written=source.has,
                                     shape_only=checker.broken_classes,
                                     base_dir=source.base_dir):
        checker.issues.append(source.issue(problem.path, problem.message, key=problem.at_key))
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
        checker.duration((*path, "watch_interval"), storage.watch_interval)
        _table_name(checker, (*path, "table_name"), storage.table_name, 63)
    elif isinstance(storage, model.PostgresStorage):
        _pg_urls(checker, path, storage)
        # The index and trigger names derived from the table must fit PostgreSQL's 63 bytes.
        _table_name(checker, (*path, "table_name"), storage.table_name, 63 - 19)
        _pg_channel(checker, (*path, "channel_name"), storage.channel_name)
    elif isinstance(storage, model.RedisStorage):
        _redis_url(checker, (*path, "connection_string"), storage.connection_string)
        _redis_name(checker, (*path, "key_prefix"), storage.key_prefix)
        if (storage.connection_string is not None and is_cluster_url(storage.connection_string)
                and not has_hash_tag(storage.key_prefix)):
            checker.report((*path, "key_prefix"), f"{storage.key_prefix!r} has no hash "
                           f"tag: {CLUSTER_PREFIX_RULE}")
        _redis_name(checker, (*path, "channel_name"), storage.channel_name)
    else:
        _mongo(checker, path, storage.address, storage.collection)
        _mongo(checker, path, None, storage.log_collection, field="log_collection")
    _check_job_log(checker, path, storage)
    _check_notifications(checker, backend)


def _redis_url(checker: _Checker, path: Path_, value: str | None) -> None:
    checker.url(path, value, "Redis", _REDIS_SCHEMES)
    if value is not None and (problem := socket_timeout_problem(value)) is not None:
        checker.report(path, problem)


def _pg_urls(checker: _Checker, path: Path_,
             block: model.PostgresStorage | model.PostgresNotifications) -> None:
    for field in ("connection_string", "listen_connection_string"):
        checker.url((*path, field), getattr(block, field), "PostgreSQL",
                    ("postgresql", "postgres"), conninfo=True)


def _check_job_log(checker: _Checker, path: Path_, storage: model.Storage) -> None:
    if isinstance(storage, model.SQLiteStorage | model.PostgresStorage):
        # PostgreSQL: the index names derived from the table ("_timestamp_idx") fit 63 bytes.
        limit = 63 if isinstance(storage, model.SQLiteStorage) else 63 - 14
        _table_name(checker, (*path, "log_table_name"), storage.log_table_name, limit)
    if isinstance(storage.logging, model.JobLogConfig):
        checker.duration((*path, "logging", "max_age"), storage.logging.max_age)
        checker.count((*path, "logging", "max_entries"), storage.logging.max_entries, 1)


def _check_notifications(checker: _Checker, backend: model.BackendConfig) -> None:
    path: Path_ = ("backend", "notifications")
    channel = backend.notifications
    if isinstance(channel, model.PostgresNotifications):
        _pg_urls(checker, path, channel)
        _pg_channel(checker, (*path, "channel_name"), channel.channel_name)
    elif isinstance(channel, model.RedisNotifications):
        _redis_url(checker, (*path, "connection_string"), channel.connection_string)
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


def _mongo(checker: _Checker, path: Path_, address: str | None, collection: str | None,
           *, field: str = "collection") -> None:
    if address is not None and "://" in address:
        checker.url((*path, "address"), address, "MongoDB", ("mongodb", "mongodb+srv"))
    elif address is not None and not re.match(r"^[A-Za-z0-9_.\[\]:-]+(/[A-Za-z0-9_-]*)?$",
                                              address):
        checker.report((*path, "address"), "expected a MongoDB address (mongodb://host/db or "
                       f"host:port/db), got {describe(mask_url(address))}")
    if collection is not None and (not collection or "$" in collection or "\x00" in collection
                                   or collection.startswith("system.")):
        checker.report((*path, field), "expected a MongoDB collection name (no '$', "
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
    if scheduler.retention is not None:
        checker.duration((*path, "retention", "completed"), scheduler.retention.completed)
        checker.duration((*path, "retention", "check_every"), scheduler.retention.check_every)


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
