"""From a loaded config to objects: the storage backend, the notification channel, the Agenda.

Nothing here connects: building is cheap and offline; ``agenda.start()`` (or
``backend.connect()``) opens connections. Drivers are imported only for the kinds in use.

Notifications:

* omitted: the storage's own channel (PostgreSQL LISTEN/NOTIFY, Redis pub/sub); SQLite and
  MongoDB have none, so their schedulers poll;
* ``{type: none}``: polling only, even when the storage has a channel of its own;
* any other kind: that channel, and the storage's own channel is switched off.

Handlers (``module:function``) are imported only with ``import_handlers=True`` (the worker),
from the config file's directory, then the current directory, then ``sys.path``;
standard-library targets are refused. Relative SQLite paths are relative to the config file.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from agenda_decl import backoff as backoff_strategies
from agenda_decl._job_log import JobLogRetention
from agenda_decl.agenda import Agenda, Handler
from agenda_decl.backoff import BackoffStrategy
from agenda_decl.config import model
from agenda_decl.config.drivers import missing_drivers
from agenda_decl.config.errors import ConfigError, ConfigIssue, ImportRefError, render_path
from agenda_decl.config.load import source_of
from agenda_decl.config.payload import check_payload, import_object
from agenda_decl.interfaces import AgendaBackend, NotificationChannel
from agenda_decl.notifications import InMemoryNotificationChannel

__all__ = [
    "build_agenda",
    "build_backend",
    "build_backoff",
    "build_channel",
    "config_dir",
    "job_options",
]


def config_dir(config: model.AgendaConfig) -> Path:
    """The directory of the file ``config`` was loaded from (the current one otherwise)."""
    source = source_of(config)
    return source.base_dir if source is not None else Path.cwd()


def _own_channel_off(config: model.AgendaConfig) -> bool:
    """The storage's own channel is off when another (or ``none``) is configured."""
    return config.backend.notifications is not None


def build_backend(
    config: model.AgendaConfig, *, base_dir: Path | None = None, read_only: bool = False
) -> AgendaBackend:
    """The storage backend of ``config`` (not connected). ``read_only`` for inspecting (plan,
    jobs): it creates nothing in storage, reads a store that does not exist yet as empty,
    refuses writes and has no notification channel."""
    storage = config.backend.storage
    off = _own_channel_off(config)
    logs = _job_log(storage)
    if isinstance(storage, model.SQLiteStorage):
        watch = {"watch_changes": storage.watch_changes and not off,
                 "watch_interval": storage.watch_interval}
        return _sqlite(storage, base_dir or config_dir(config), read_only, {**logs, **watch})
    if isinstance(storage, model.PostgresStorage):
        from agenda_decl.backends.postgres import PostgresBackend

        return PostgresBackend(
            connection_string=storage.connection_string, table_name=storage.table_name,
            ensure_schema=storage.ensure_schema, channel_name=storage.channel_name,
            disable_notifications=storage.disable_notifications or off, read_only=read_only,
            log_table_name=storage.log_table_name,
            listen_connection_string=storage.listen_connection_string, **logs,
        )
    if isinstance(storage, model.RedisStorage):
        from agenda_decl.backends.redis import RedisBackend

        return RedisBackend(
            connection_string=storage.connection_string, key_prefix=storage.key_prefix,
            channel_name=storage.channel_name,
            disable_notifications=storage.disable_notifications or off, read_only=read_only,
            **logs,
        )
    from agenda_decl.backends.mongo import MongoBackend

    return MongoBackend(address=storage.address, collection=storage.collection,
                        ensure_index=storage.ensure_index, read_only=read_only,
                        log_collection=storage.log_collection, **logs)


def _job_log(storage: model.Storage) -> dict[str, Any]:
    """The backend options of the storage's ``logging``: on or off, and the retention."""
    setting = storage.logging
    if not isinstance(setting, model.JobLogConfig):
        return {"logging": setting, "log_retention": None}
    limits = (setting.max_age, setting.max_entries)
    retention = None if limits == (None, None) else JobLogRetention(
        max_age=setting.max_age, max_entries=setting.max_entries)
    return {"logging": True, "log_retention": retention}


def _sqlite(storage: model.SQLiteStorage, base_dir: Path, read_only: bool,
            extra: dict[str, Any]) -> AgendaBackend:
    from agenda_decl.backends.sqlite import SQLiteBackend

    options = {"table_name": storage.table_name, "read_only": read_only,
               "log_table_name": storage.log_table_name, **extra}
    if storage.path == ":memory:":
        return SQLiteBackend(path=storage.path, **options)
    path = Path(os.path.expanduser(storage.path))
    path = path if path.is_absolute() else base_dir / path
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)  # `.agenda/agenda.db` on a fresh clone
    return SQLiteBackend(path=path, **options)


def build_channel(config: model.AgendaConfig) -> NotificationChannel | None:
    """The notification channel configured apart from the storage, or None (the storage's
    own channel, or polling only; see the module docstring)."""
    channel = config.backend.notifications
    if channel is None or isinstance(channel, model.NoNotifications):
        return None
    if isinstance(channel, model.InMemoryNotifications):
        return InMemoryNotificationChannel()
    if isinstance(channel, model.PostgresNotifications):
        from agenda_decl.backends.postgres import PostgresNotificationChannel

        return PostgresNotificationChannel(
            connection_string=channel.connection_string, channel_name=channel.channel_name,
            listen_connection_string=channel.listen_connection_string)
    if isinstance(channel, model.RedisNotifications):
        from agenda_decl.backends.redis import RedisNotificationChannel

        return RedisNotificationChannel(connection_string=channel.connection_string,
                                        channel_name=channel.channel_name)
    return _change_stream(config, channel)


def _change_stream(
    config: model.AgendaConfig, channel: model.MongoChangeStreamNotifications
) -> NotificationChannel:
    storage = config.backend.storage
    address = channel.address or getattr(storage, "address", None)
    collection = channel.collection or getattr(storage, "collection", None) or "agendaJobs"
    if address is None:
        raise ConfigError([_issue(config, "backend.notifications.address",
                                  "mongo-changestream notifications need an address "
                                  "(or mongo storage to take it from)")])
    return _address_change_stream(address, collection)


def _address_change_stream(address: str, collection: str) -> NotificationChannel:
    """A change-stream channel that opens (and closes) a MongoDB client of its own."""
    from pymongo import MongoClient

    from agenda_decl.backends.mongo import MongoChangeStreamNotificationChannel

    class AddressChangeStreamChannel(MongoChangeStreamNotificationChannel):
        def __init__(self) -> None:
            super().__init__(collection=collection)
            self._client: MongoClient[dict[str, Any]] | None = None

        async def _open(self) -> None:
            if self._client is None:
                url = address if "://" in address else f"mongodb://{address}"
                self._client = MongoClient(url, appname="agenda-decl")
                self.set_db(self._client.get_default_database("test"))
            await super()._open()

        async def disconnect(self) -> None:
            await super().disconnect()
            client, self._client = self._client, None
            if client is not None:
                await asyncio.to_thread(client.close)

    made: MongoChangeStreamNotificationChannel = AddressChangeStreamChannel()
    return made


# -- jobs ------------------------------------------------------------------------------------


def build_backoff(value: model.BackoffConfig | str | None) -> BackoffStrategy | None:
    """The retry strategy of a job: a preset name or a strategy mapping."""
    if value is None:
        return None
    if isinstance(value, str):
        presets = {"aggressive": backoff_strategies.aggressive,
                   "standard": backoff_strategies.standard,
                   "relaxed": backoff_strategies.relaxed}
        return presets[value]()
    common: dict[str, Any] = {"delay": value.delay, "max_retries": value.max_retries,
                              "max_delay": value.max_delay, "jitter": value.jitter}
    if value.strategy == "constant":
        return backoff_strategies.constant(**common)
    if value.strategy == "linear":
        return backoff_strategies.linear(increment=value.increment, **common)
    return backoff_strategies.exponential(factor=value.factor, **common)


def job_options(job: model.JobConfig) -> dict[str, Any]:
    """The keyword options of ``Agenda.define``/``declare`` for a job (unset ones left out,
    so the scheduler's defaults apply)."""
    options: dict[str, Any] = {
        "concurrency": job.concurrency,
        "lock_limit": job.lock_limit,
        "lock_lifetime": job.lock_lifetime,
        "priority": job.priority,
        "backoff": build_backoff(job.backoff),
        "remove_on_complete": job.remove_on_complete,
    }
    return {key: value for key, value in options.items() if value is not None}


def _worker_name(config: model.AgendaConfig) -> str:
    """Unique per process: the scheduler ignores notifications from its own name, so workers
    sharing a config must not share one."""
    return f"{config.owner}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def build_agenda(
    config: model.AgendaConfig,
    *,
    import_handlers: bool = False,
    base_dir: Path | None = None,
    read_only: bool = False,
) -> Agenda:
    """An :class:`Agenda` on the configured backend and channel with every job declared (or,
    with ``import_handlers``, defined with its imported handler). Nothing connects yet.
    ``read_only`` (``agenda-decl plan`` and ``jobs``): storage is only read (see
    :func:`build_backend`) and no notification channel is built.

    Raises :class:`ConfigError` naming every handler or payload class that cannot be imported,
    or the drivers of the storage and notifications that are not installed.
    """
    missing = missing_drivers(config)
    if missing:
        raise ConfigError(missing)
    base_dir = base_dir or config_dir(config)
    handlers = _import_handlers(config, base_dir) if import_handlers else {}
    scheduler = config.scheduler
    agenda = Agenda(
        build_backend(config, base_dir=base_dir, read_only=read_only),
        notification_channel=None if read_only else build_channel(config),
        name=_worker_name(config),
        process_every=scheduler.process_every,
        max_concurrency=scheduler.max_concurrency,
        default_concurrency=scheduler.default_concurrency,
        lock_limit=scheduler.lock_limit,
        default_lock_limit=scheduler.default_lock_limit,
        default_lock_lifetime=scheduler.default_lock_lifetime,
        remove_on_complete=scheduler.remove_on_complete,
    )
    for name, job in config.jobs.items():
        # Application code enqueuing through this Agenda gets the payload checked (and its
        # defaults filled in) before anything is stored.
        validate = functools.partial(check_payload, name, job, path=f"{name}.data",
                                     base_dir=base_dir)
        handler = handlers.get(name)
        if handler is not None:
            agenda.define(name, handler, **job_options(job), validate_data=validate)
        else:
            agenda.declare(name, **job_options(job), validate_data=validate)
    return agenda


def _import_handlers(config: model.AgendaConfig, base_dir: Path) -> dict[str, Handler]:
    roots = [str(base_dir), os.getcwd()]
    for root in reversed(roots):
        if root not in sys.path:
            sys.path.insert(0, root)
    handlers: dict[str, Handler] = {}
    issues: list[ConfigIssue] = []
    for name, job in config.jobs.items():
        path = render_path(("jobs", name))
        if isinstance(job.payload, str):
            _check_import(config, f"{path}.payload", job.payload, "payload class", issues)
        if job.handler is None:
            continue
        handler = _check_import(config, f"{path}.handler", job.handler, "handler", issues)
        if handler is not None:
            handlers[name] = handler
    if issues:
        raise ConfigError(issues)
    return handlers


def _check_import(
    config: model.AgendaConfig, path: str, ref: str, what: str, issues: list[ConfigIssue]
) -> Any:
    try:
        target = import_object(ref, what=what)
    except ImportRefError as error:
        issues.append(_issue(config, path, str(error)))
        return None
    if not callable(target):
        issues.append(_issue(config, path, f"{what} {ref!r} is not callable"))
        return None
    return target


def _issue(config: model.AgendaConfig, path: str, message: str) -> ConfigIssue:
    source = source_of(config)
    return source.issue(path, message) if source else ConfigIssue("<config>", 1, 1, path,
                                                                  message)
