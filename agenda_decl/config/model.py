"""The typed model of ``agenda.yaml`` (version 1): frozen attrs classes, one per block.

The loader (``load.py``) turns YAML into these classes through the config's own cattrs
converter (``_structure.converter``), refusing unknown keys; semantic checks (durations, cron,
zones, payloads) happen in ``validate.py`` (for schedules, by the rule set of ``rules.py``,
which ``plan`` applies too), so every error can name its file:line:column. The JSON Schema in
``schemas/agenda.schema.json`` is kept equal to this model by a test.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from agenda_decl._secrets import mask_url

#: A duration as written in the file: milliseconds or text ("5 minutes").
Duration = int | str

#: Payload field types: a base type, ``list[T]``, or ``T | None``.
BASE_PAYLOAD_TYPES = ("str", "int", "float", "bool", "datetime", "date")


def _secret_repr(value: str | None) -> str:
    """Connection strings in ``repr()``: the password masked (they often come from ``${ENV}``)."""
    return repr(value if value is None else mask_url(value))


# -- storage -------------------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class JobLogConfig:
    """The job log (Agenda 6.2's) with a retention: `logging: true` is the job log kept
    without a limit. The worker deletes, at most once a minute while it writes entries, those
    older than `max_age` and those beyond the newest `max_entries`."""

    #: Delete entries older than this (e.g. '30 days').
    max_age: Duration | None = None
    #: Keep at most this many entries, the newest.
    max_entries: int | None = None


#: ``logging:`` of a storage: ``true``/``false``, or the job log with a retention.
Logging = bool | JobLogConfig


@attrs.define(kw_only=True, frozen=True)
class SQLiteStorage:
    type: Literal["sqlite"]
    path: str = "agenda.db"
    table_name: str = "agenda_jobs"
    #: Write the job log (Agenda 6.2's `logging`): every start, success, failure (with its
    #: traceback), retry and completion, read with `agenda-decl logs`.
    logging: Logging = False
    #: The job log's table, in the same file (created only when `logging` is on).
    log_table_name: str = "agenda_logs"
    #: Wake workers when another process commits to the file (SQLite's change counter,
    #: read every `watch_interval`), instead of waiting for the poll.
    watch_changes: bool = True
    #: How often the change counter is read (e.g. '20 ms').
    watch_interval: Duration = "20 ms"


@attrs.define(kw_only=True, frozen=True)
class PostgresStorage:
    type: Literal["postgres"]
    connection_string: str = attrs.field(repr=_secret_repr)
    table_name: str = "agenda_jobs"
    ensure_schema: bool = True
    channel_name: str = "agenda:jobs"
    disable_notifications: bool = False
    #: A direct URL to the server for the channel's LISTEN connection, when
    #: `connection_string` goes through a transaction pooler such as PgBouncer.
    listen_connection_string: str | None = attrs.field(default=None, repr=_secret_repr)
    #: Write the job log (Agenda 6.2's `logging`), in Node's `agenda_logs` table.
    logging: Logging = False
    #: The job log's table (Node's `logTableName`; created only when `logging` is on).
    log_table_name: str = "agenda_logs"


@attrs.define(kw_only=True, frozen=True)
class RedisStorage:
    type: Literal["redis"]
    connection_string: str = attrs.field(repr=_secret_repr)
    key_prefix: str = "agenda:"
    channel_name: str = "agenda:jobs"
    disable_notifications: bool = False
    #: Write the job log (Agenda 6.2's `logging`), in Node's keys under `key_prefix`.
    logging: Logging = False


@attrs.define(kw_only=True, frozen=True)
class MongoStorage:
    type: Literal["mongo"]
    address: str = attrs.field(repr=_secret_repr)
    collection: str = "agendaJobs"
    ensure_index: bool = True
    #: Write the job log (Agenda 6.2's `logging`), in Node's log collection.
    logging: Logging = False
    #: The job log's collection (Node's `logCollection`).
    log_collection: str = "agenda_logs"


Storage = SQLiteStorage | PostgresStorage | RedisStorage | MongoStorage


# -- notifications -------------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class InMemoryNotifications:
    """Within one process only (a single worker that also enqueues)."""

    type: Literal["inmemory"]


@attrs.define(kw_only=True, frozen=True)
class NoNotifications:
    """Polling only, even when the storage has a channel of its own."""

    type: Literal["none"]


@attrs.define(kw_only=True, frozen=True)
class PostgresNotifications:
    type: Literal["postgres"]
    connection_string: str = attrs.field(repr=_secret_repr)
    channel_name: str = "agenda:jobs"
    #: A direct URL for the LISTEN connection when `connection_string` is a pooler's.
    listen_connection_string: str | None = attrs.field(default=None, repr=_secret_repr)


@attrs.define(kw_only=True, frozen=True)
class RedisNotifications:
    type: Literal["redis"]
    connection_string: str = attrs.field(repr=_secret_repr)
    channel_name: str = "agenda:jobs"


@attrs.define(kw_only=True, frozen=True)
class MongoChangeStreamNotifications:
    type: Literal["mongo-changestream"]
    #: Omitted: the address of the MongoDB storage (the stream watches its jobs collection).
    address: str | None = attrs.field(default=None, repr=_secret_repr)
    #: Omitted: the collection of the MongoDB storage.
    collection: str | None = None


Notifications = (
    InMemoryNotifications
    | NoNotifications
    | PostgresNotifications
    | RedisNotifications
    | MongoChangeStreamNotifications
)


@attrs.define(kw_only=True, frozen=True)
class BackendConfig:
    storage: Storage
    #: Omitted: the storage's own channel (PostgreSQL, Redis), or polling only.
    notifications: Notifications | None = None


# -- scheduler and jobs --------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class RetentionConfig:
    """How long finished jobs are kept. Each worker (``agenda-decl run``) deletes older ones
    of this file's job names at its start, then every ``check_every`` (as ``agenda-decl jobs
    purge`` does)."""

    #: Delete completed jobs (one-off jobs that ran) this long after they finished.
    completed: Duration | None = None
    #: How often a worker looks for jobs to delete.
    check_every: Duration = "1 hour"


@attrs.define(kw_only=True, frozen=True)
class SchedulerConfig:
    #: Also the owner of the schedules this file manages: two apps sharing one store need
    #: different names.
    name: str | None = None
    process_every: Duration = "5 seconds"
    max_concurrency: int = 20
    default_concurrency: int = 5
    lock_limit: int = 0
    default_lock_limit: int = 0
    default_lock_lifetime: Duration = "10 minutes"
    remove_on_complete: bool = False
    #: Omitted: finished jobs are kept until deleted (``agenda-decl jobs purge``).
    retention: RetentionConfig | None = None


@attrs.define(kw_only=True, frozen=True)
class PayloadField:
    """One field of a job's payload. In YAML either ``name: int`` or the full form."""

    type: str
    #: Omitted: the field is required (unless its type allows ``None``). A factory, so that
    #: ``attrs.NOTHING`` (no default) is itself the default rather than "argument required".
    default: Any = attrs.field(factory=lambda: attrs.NOTHING)
    #: The allowed values (a literal type).
    choices: list[Any] | None = None
    description: str | None = None

    @property
    def required(self) -> bool:
        return self.default is attrs.NOTHING and not self.type.replace(" ", "").endswith("|None")


@attrs.define(kw_only=True, frozen=True)
class BackoffConfig:
    strategy: Literal["constant", "linear", "exponential"] = "exponential"
    delay: Duration = 1000
    max_retries: int = 3
    max_delay: Duration | None = None
    factor: float = 2
    increment: Duration | None = None
    jitter: float = 0


@attrs.define(kw_only=True, frozen=True)
class JobConfig:
    #: ``module:function``; imported only by ``agenda-decl run``.
    handler: str | None = None
    #: Field name -> field, or the import path of an attrs class (``pkg.models:Report``).
    payload: dict[str, PayloadField] | str | None = None
    description: str | None = None
    concurrency: int | None = None
    lock_limit: int | None = None
    lock_lifetime: Duration | None = None
    priority: int | str | None = None
    #: A strategy, or a preset name: ``aggressive``, ``standard``, ``relaxed``.
    backoff: BackoffConfig | str | None = None
    remove_on_complete: bool | None = None


@attrs.define(kw_only=True, frozen=True)
class ScheduleConfig:
    """A repeating job kept in storage by ``agenda-decl apply``. Exactly one of ``every``,
    ``cron`` and ``at`` is given."""

    job: str
    #: Tells several schedules of one job apart (default: the job name).
    key: str | None = None
    every: Duration | None = None
    cron: str | None = None
    #: A daily time of day ("3:30pm", "15:30").
    at: str | None = None
    timezone: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)
    priority: int | str | None = None
    start_date: str | None = None
    end_date: str | None = None
    #: Weekdays not to run on: 0-6 (0 = Sunday) or names ("sat", "sunday").
    skip_days: list[int | str] | None = None
    disabled: bool = False
    #: Wait one interval before the first run (``every`` only).
    skip_immediate: bool = False

    @property
    def schedule_key(self) -> str:
        return self.key or self.job


@attrs.define(kw_only=True, frozen=True)
class CodegenConfig:
    #: Where the typed handles module is written, relative to the config file.
    output: str = "agenda_jobs.py"


@attrs.define(kw_only=True, frozen=True)
class AgendaConfig:
    version: Literal[1]
    backend: BackendConfig
    scheduler: SchedulerConfig = attrs.field(factory=SchedulerConfig)
    jobs: dict[str, JobConfig] = attrs.field(factory=dict)
    schedules: list[ScheduleConfig] = attrs.field(factory=list)
    codegen: CodegenConfig | None = None

    @property
    def owner(self) -> str:
        """Who manages the schedules of this file in storage."""
        return self.scheduler.name or "agenda-decl"
