"""The builder: config -> backend graph -> Agenda, for every storage/notification mix, without
connecting to anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import agenda_decl
from agenda_decl import InMemoryNotificationChannel
from agenda_decl.backends.mongo import MongoBackend, MongoChangeStreamNotificationChannel
from agenda_decl.backends.postgres import PostgresBackend, PostgresNotificationChannel
from agenda_decl.backends.redis import RedisBackend, RedisNotificationChannel
from agenda_decl.backends.sqlite import SQLiteBackend, SQLiteChangeChannel
from agenda_decl.backoff import BackoffContext
from agenda_decl.config import (
    ConfigError,
    LoadedConfig,
    build_agenda,
    build_backend,
    build_channel,
    load,
    load_config,
)
from agenda_decl.config.build import build_backoff, job_options
from agenda_decl.config.model import BackoffConfig, JobConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "configs"

#: example file -> (storage class, channel class the Agenda uses, or None for polling)
MIXES: dict[str, tuple[type, type | None]] = {
    "sqlite": (SQLiteBackend, InMemoryNotificationChannel),
    "postgres": (PostgresBackend, PostgresNotificationChannel),
    "redis": (RedisBackend, RedisNotificationChannel),
    "mongo": (MongoBackend, None),
    "mongo-changestream": (MongoBackend, MongoChangeStreamNotificationChannel),
    "mongo-redis": (MongoBackend, RedisNotificationChannel),
    "mongo-postgres": (MongoBackend, PostgresNotificationChannel),
    "postgres-redis": (PostgresBackend, RedisNotificationChannel),
}


@pytest.mark.parametrize("name", list(MIXES))
def test_every_mix_builds_without_connecting(name: str, tmp_path: Path) -> None:
    config = load_config(EXAMPLES / f"{name}.yaml", environ={})
    agenda = build_agenda(config, base_dir=tmp_path)  # SQLite's file would go under tmp_path
    storage, channel = MIXES[name]
    assert type(agenda.backend) is storage
    if channel is None:
        assert agenda.channel is None
    else:
        assert isinstance(agenda.channel, channel)
    assert sorted(agenda.definitions) == ["heartbeat", "report", "send-welcome"]
    assert agenda.runnable_names() == []  # declared only: nothing imported


def test_another_channel_switches_the_storages_own_off() -> None:
    config = load_config(EXAMPLES / "postgres-redis.yaml", environ={})
    backend = build_backend(config)
    assert backend.notification_channel is None
    assert isinstance(build_channel(config), RedisNotificationChannel)


def test_omitted_notifications_use_the_storages_own_channel() -> None:
    config = load_config(EXAMPLES / "postgres.yaml", environ={})
    backend = build_backend(config)
    assert isinstance(backend.notification_channel, PostgresNotificationChannel)
    assert build_channel(config) is None
    agenda = build_agenda(config)
    assert agenda.channel is agenda.backend.notification_channel
    assert isinstance(agenda.channel, PostgresNotificationChannel)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agenda.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_none_means_polling_only(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nbackend:\n  storage: {type: redis, connection_string: "
                           "'redis://127.0.0.1:6379/0'}\n  notifications: {type: none}\n")
    agenda = build_agenda(load_config(path, environ={}))
    assert isinstance(agenda.backend, RedisBackend)
    assert agenda.backend.notification_channel is None
    assert agenda.channel is None


def test_secrets_stay_out_of_the_backends_repr(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nbackend:\n  storage: {type: postgres, connection_string:"
                           " '${DATABASE_URL}'}\n")
    config = load_config(path, environ={"DATABASE_URL": "postgresql://u:pa55word@h/db"})
    agenda = build_agenda(config)
    assert "pa55word" not in repr(agenda.backend) + repr(agenda.channel) + repr(config)


DEMO = """version: 1
backend:
  storage: {type: sqlite, path: data/jobs.db}
scheduler:
  name: billing
  process_every: 2 seconds
  max_concurrency: 7
  default_concurrency: 3
  lock_limit: 4
  default_lock_limit: 2
  default_lock_lifetime: 1 minute
  remove_on_complete: true
jobs:
  send:
    handler: HANDLERS:send
    concurrency: 2
    lock_limit: 1
    lock_lifetime: 30 seconds
    priority: high
    backoff: {strategy: constant, delay: 5 seconds, max_retries: 2}
    remove_on_complete: false
  plain: {}
"""


def test_scheduler_and_job_options(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DEMO.replace("HANDLERS", "nowhere")), environ={})
    agenda = build_agenda(config)
    assert (agenda.process_every, agenda.max_concurrency, agenda.default_concurrency) == (
        2000, 7, 3)
    assert (agenda.lock_limit, agenda.default_lock_limit, agenda.default_lock_lifetime) == (
        4, 2, 60_000)
    assert agenda.remove_on_complete is True
    assert agenda.name.startswith("billing:") and agenda.name != build_agenda(config).name
    send, plain = agenda.definitions["send"], agenda.definitions["plain"]
    assert (send.concurrency, send.lock_limit, send.lock_lifetime, send.priority) == (
        2, 1, 30_000, 10)
    assert send.remove_on_complete is False and send.handler is None
    assert send.backoff is not None
    context = BackoffContext(attempt=1, error=RuntimeError(), job_name="send", job_data=None)
    assert [send.backoff(context), send.backoff(BackoffContext(
        attempt=3, error=RuntimeError(), job_name="send", job_data=None))] == [5000, None]
    assert (plain.concurrency, plain.lock_limit, plain.lock_lifetime, plain.backoff) == (
        3, 2, 60_000, None)
    assert isinstance(agenda.backend, SQLiteBackend)
    assert (tmp_path / "data").is_dir()  # relative to the config file, created


def test_backoff_presets_and_strategies() -> None:
    context = BackoffContext(attempt=2, error=RuntimeError(), job_name="x", job_data=None)
    aggressive = build_backoff("aggressive")
    assert aggressive is not None and aggressive(context) == 200
    linear = build_backoff(BackoffConfig(strategy="linear", delay=100, increment=50))
    assert linear is not None and linear(context) == 150
    exponential = build_backoff(BackoffConfig(delay=100, factor=3))
    assert exponential is not None and exponential(context) == 300
    assert build_backoff(None) is None
    assert job_options(JobConfig()) == {}


def test_handlers_are_imported_from_the_config_directory(tmp_path: Path) -> None:
    module = f"cfg_handlers_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{module}.py").write_text("async def send(job):\n    pass\n")
    config = load_config(write(tmp_path, DEMO.replace("HANDLERS", module)), environ={})
    agenda = build_agenda(config, import_handlers=True)
    assert agenda.runnable_names() == ["send"]
    assert agenda.definitions["plain"].handler is None  # no handler: declared


def test_bad_handlers_are_named_with_their_position(tmp_path: Path) -> None:
    text = DEMO.replace("HANDLERS:send", "missing_module_xyz:send").replace(
        "  plain: {}", "  plain: {handler: 'agenda_decl.backoff:nothing_here'}")
    config = load_config(write(tmp_path, text), environ={})
    with pytest.raises(ConfigError) as info:
        build_agenda(config, import_handlers=True)
    assert str(info.value) == (
        f"{tmp_path / 'agenda.yaml'}:15:14: jobs.send.handler: cannot import handler "
        "'missing_module_xyz:send': ModuleNotFoundError: No module named 'missing_module_xyz'\n"
        f"{tmp_path / 'agenda.yaml'}:22:20: jobs.plain.handler: cannot import handler "
        "'agenda_decl.backoff:nothing_here': module 'agenda_decl.backoff' has no attribute "
        "'nothing_here'"
    )


def test_load_returns_the_config_and_the_agenda(tmp_path: Path) -> None:
    path = write(tmp_path, DEMO.replace("HANDLERS", "nowhere"))
    loaded = load(path, environ={})
    assert isinstance(loaded, LoadedConfig)
    assert loaded.path == path.resolve()
    assert loaded.config.owner == "billing"
    assert set(loaded.agenda.definitions) == {"send", "plain"}
    assert agenda_decl.config.load is load


def test_the_embedded_default_builds(tmp_path: Path) -> None:
    config = load_config(ROOT / "agenda.yaml", environ={})
    agenda = build_agenda(config, import_handlers=True, base_dir=tmp_path)
    assert isinstance(agenda.backend, SQLiteBackend)
    assert isinstance(agenda.channel, InMemoryNotificationChannel)
    assert sorted(agenda.runnable_names()) == ["cleanup", "heartbeat", "report", "send-welcome"]


def test_sqlite_watches_changes_unless_told_otherwise(tmp_path: Path) -> None:
    storage = "version: 1\nbackend:\n  storage: {type: sqlite, path: jobs.db%s}\n%s"
    watching = build_backend(load_config(write(tmp_path, storage % (", watch_interval: 15 ms", "")),
                                         environ={}))
    assert isinstance(watching.notification_channel, SQLiteChangeChannel)
    assert watching.notification_channel.interval == 0.015
    for off in ((", watch_changes: false", ""), ("", "  notifications: {type: none}\n")):
        backend = build_backend(load_config(write(tmp_path, storage % off), environ={}))
        assert backend.notification_channel is None
