"""The JSON Schema (2020-12) of ``agenda.yaml``, generated from the attrs model.

    python -m agenda_decl.config.schema > schemas/agenda.schema.json

Every class of :mod:`agenda_decl.config.model` becomes a ``$defs`` entry with
``additionalProperties: false``; storage and notification kinds are a ``oneOf`` told apart by
``type``. Descriptions come from the model's ``#:`` comments and docstrings, then from
:data:`DESCRIPTIONS`; :data:`CONSTRAINTS` adds what types alone do not say (minimums, name
patterns, enums for editors' completion). A test keeps the committed file equal to this
output. The loader remains the authority: the schema is for editors, and in a few places
(priority and weekday names) it accepts only the canonical lower-case spelling.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from agenda_decl import timing
from agenda_decl.config import model
from agenda_decl.config.rules import WEEKDAYS
from agenda_decl.config.validate import BACKOFF_PRESETS

__all__ = ["CONSTRAINTS", "DESCRIPTIONS", "build_schema", "main", "schema_text"]

Schema = dict[str, Any]
_NONE = type(None)
_IMPORT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
_DURATION_REF = {"$ref": "#/$defs/Duration"}

#: Descriptions of fields the model does not comment, by ``Class.field``.
DESCRIPTIONS: dict[str, str] = {
    "AgendaConfig.version": "The version of this file format.",
    "AgendaConfig.backend": "Where jobs are stored and how workers hear about new ones.",
    "AgendaConfig.scheduler": "Options of the scheduler (the worker process).",
    "AgendaConfig.jobs": "Job definitions by name.",
    "AgendaConfig.schedules": "Repeating jobs kept in storage by `agenda-decl apply`.",
    "AgendaConfig.codegen": "Options of `agenda-decl generate` (typed job handles).",
    "BackendConfig.storage": "The storage backend, chosen by `type`.",
    "SQLiteStorage.type": "SQLite: one local file, the embedded default (no server).",
    "PostgresStorage.type": "PostgreSQL, in Agenda v6's table layout.",
    "RedisStorage.type": "Redis, in Agenda v6's key layout.",
    "MongoStorage.type": "MongoDB, in Agenda v6's document layout.",
    "InMemoryNotifications.type": "Within one process only.",
    "NoNotifications.type": "No channel: workers poll (every `process_every`).",
    "PostgresNotifications.type": "PostgreSQL LISTEN/NOTIFY.",
    "RedisNotifications.type": "Redis pub/sub.",
    "MongoChangeStreamNotifications.type":
        "MongoDB change streams on the jobs collection (needs a replica set).",
    "SQLiteStorage.path": "The database file, relative to this file (created when missing).",
    "SQLiteStorage.table_name": "The jobs table.",
    "SQLiteStorage.watch_changes":
        "Wake workers when another process commits to the file (SQLite's change counter), "
        "instead of waiting for the poll.",
    "SQLiteStorage.watch_interval": "How often the change counter is read (e.g. '20 ms').",
    "PostgresStorage.connection_string":
        "A PostgreSQL URL; write `${DATABASE_URL}` to read it from the environment.",
    "PostgresStorage.table_name": "The jobs table (Agenda v6's layout).",
    "PostgresStorage.ensure_schema": "Create the table and its indexes when missing.",
    "PostgresStorage.channel_name": "The LISTEN/NOTIFY channel.",
    "PostgresStorage.disable_notifications": "Poll only: no LISTEN/NOTIFY.",
    "PostgresStorage.listen_connection_string":
        "A direct PostgreSQL URL for the LISTEN connection, when `connection_string` goes "
        "through a transaction pooler such as PgBouncer (storage and NOTIFY go through it).",
    "RedisStorage.connection_string":
        "A Redis URL (redis://, rediss://, unix://; a Redis Cluster: redis+cluster:// or "
        "rediss+cluster:// and any one node); write `${REDIS_URL}` to read it from the "
        "environment.",
    "RedisStorage.key_prefix": "The prefix of every key (Agenda v6's layout). On a Redis "
        "Cluster it must start with a hash tag, e.g. `{agenda}:`, so that every key of the "
        "store shares one slot.",
    "RedisStorage.channel_name": "The pub/sub channel.",
    "RedisStorage.disable_notifications": "Poll only: no pub/sub.",
    "MongoStorage.address": "A MongoDB URL (mongodb://host/db) or host:port/db.",
    "MongoStorage.collection": "The jobs collection (Agenda v6's layout).",
    "MongoStorage.ensure_index": "Create the index Agenda uses when missing.",
    "PostgresNotifications.connection_string": "A PostgreSQL URL.",
    "PostgresNotifications.channel_name": "The LISTEN/NOTIFY channel.",
    "PostgresNotifications.listen_connection_string":
        "A direct PostgreSQL URL for the LISTEN connection, when `connection_string` is a "
        "transaction pooler's.",
    "RedisNotifications.connection_string":
        "A Redis URL (redis+cluster://: pub/sub on the node named, which reaches every node).",
    "RedisNotifications.channel_name": "The pub/sub channel.",
    "SchedulerConfig.process_every": "How often the scheduler looks for due jobs.",
    "SchedulerConfig.max_concurrency": "Jobs running at once in this worker, all names together.",
    "SchedulerConfig.default_concurrency": "Jobs of one name running at once (per worker).",
    "SchedulerConfig.lock_limit": "Jobs locked at once in this worker (0: no limit).",
    "SchedulerConfig.default_lock_limit": "Jobs of one name locked at once (0: no limit).",
    "SchedulerConfig.default_lock_lifetime":
        "How long a lock lasts without `touch()` before another worker may take the job.",
    "SchedulerConfig.remove_on_complete": "Delete one-off jobs once they complete.",
    "SchedulerConfig.retention": "How long finished jobs are kept (workers delete older ones).",
    "PayloadField.type":
        "str, int, float, bool, datetime, date, list[T], or T | None (optional).",
    "PayloadField.default": "The value used when the field is not given.",
    "PayloadField.choices": "The only values allowed.",
    "PayloadField.description": "What the field means (copied into generated code).",
    "BackoffConfig.strategy": "How the delay grows between retries.",
    "BackoffConfig.delay": "The first delay.",
    "BackoffConfig.max_retries": "Retries after the first failure (the handler runs at most "
                                 "max_retries + 1 times).",
    "BackoffConfig.max_delay": "The longest delay.",
    "BackoffConfig.factor": "exponential: each delay is the previous one times this.",
    "BackoffConfig.increment": "linear: added to the delay on each retry (default: delay).",
    "BackoffConfig.jitter": "Random spread of each delay, 0 to 1 (0.1 = +-10%).",
    "JobConfig.description": "What the job does.",
    "JobConfig.concurrency": "Jobs of this name running at once (per worker).",
    "JobConfig.lock_limit": "Jobs of this name locked at once (0: no limit).",
    "JobConfig.lock_lifetime": "How long a lock lasts without `touch()`.",
    "JobConfig.priority": "An integer or lowest, low, normal, high, highest.",
    "JobConfig.remove_on_complete": "Delete one-off jobs of this name once they complete.",
    "ScheduleConfig.job": "The name of a job defined under `jobs`.",
    "ScheduleConfig.every": "An interval: milliseconds or text like '5 minutes'.",
    "ScheduleConfig.cron": "A cron expression: 5 fields, 6 with seconds first, or @daily etc.",
    "ScheduleConfig.timezone": "The IANA zone of cron and `at` times (default UTC).",
    "ScheduleConfig.data": "The job's data, checked against its payload.",
    "ScheduleConfig.priority": "An integer or lowest, low, normal, high, highest.",
    "ScheduleConfig.start_date": "No run before this ISO 8601 date or date and time.",
    "ScheduleConfig.end_date": "No run after this ISO 8601 date or date and time.",
    "ScheduleConfig.disabled": "Keep the job in storage but do not run it.",
}

_PRIORITY: Schema = {"anyOf": [{"type": "integer"},
                               {"type": "string", "enum": list(timing.PRIORITY_NAMES)}]}
_WEEKDAY: Schema = {"anyOf": [
    {"type": "integer", "minimum": 0, "maximum": 6},
    {"type": "string", "enum": [*WEEKDAYS, *(day[:3] for day in WEEKDAYS)]},
]}

#: Keywords merged into a field's schema, by ``Class.field``.
CONSTRAINTS: dict[str, Schema] = {
    "SQLiteStorage.table_name": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"},
    "PostgresStorage.table_name": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,43}$"},
    "PostgresStorage.channel_name": {"pattern": r"^[A-Za-z_][A-Za-z0-9_:.-]{0,56}$"},
    "PostgresNotifications.channel_name": {"pattern": r"^[A-Za-z_][A-Za-z0-9_:.-]{0,56}$"},
    "RedisStorage.key_prefix": {"pattern": r"^[A-Za-z0-9_.:{}/-]{1,128}$"},
    "RedisStorage.channel_name": {"pattern": r"^[A-Za-z0-9_.:{}/-]{1,128}$"},
    "SQLiteStorage.log_table_name": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"},
    "PostgresStorage.log_table_name": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,48}$"},
    "JobLogConfig.max_entries": {"minimum": 1},
    "RedisNotifications.channel_name": {"pattern": r"^[A-Za-z0-9_.:{}/-]{1,128}$"},
    "SchedulerConfig.name": {"minLength": 1, "maxLength": 255},
    "SchedulerConfig.max_concurrency": {"minimum": 1},
    "SchedulerConfig.default_concurrency": {"minimum": 1},
    "SchedulerConfig.lock_limit": {"minimum": 0},
    "SchedulerConfig.default_lock_limit": {"minimum": 0},
    "PayloadField.type": {"examples": ["str", "int", "float", "bool", "datetime", "date",
                                       "list[str]", "datetime | None"]},
    "BackoffConfig.max_retries": {"minimum": 0},
    "BackoffConfig.factor": {"exclusiveMinimum": 0},
    "BackoffConfig.jitter": {"minimum": 0, "maximum": 1},
    "JobConfig.handler": {"pattern": _IMPORT_PATTERN, "examples": ["myapp.jobs:send_invoice"]},
    "JobConfig.concurrency": {"minimum": 1},
    "JobConfig.lock_limit": {"minimum": 0},
    "ScheduleConfig.key": {"minLength": 1, "maxLength": 255},
    "ScheduleConfig.cron": {"examples": ["0 3 * * *", "*/15 * * * *", "*/10 * * * * *",
                                         "@daily"]},
    "ScheduleConfig.at": {"examples": ["3:30pm", "15:30", "noon"]},
    "ScheduleConfig.timezone": {"examples": ["UTC", "Europe/Berlin", "America/New_York"]},
    "ScheduleConfig.start_date": {"examples": ["2026-12-01", "2026-12-01T09:00:00Z"]},
    "ScheduleConfig.end_date": {"examples": ["2027-12-31", "2027-12-31T23:59:59Z"]},
    "CodegenConfig.output": {"pattern": r"\.py$"},
}

#: Field schemas that replace the generated one (unions the loader reads with care).
OVERRIDES: dict[str, Schema] = {
    "JobConfig.priority": _PRIORITY,
    "ScheduleConfig.priority": _PRIORITY,
    "ScheduleConfig.skip_days": {"type": "array", "items": _WEEKDAY, "maxItems": 6},
    "JobConfig.backoff": {"anyOf": [
        {"type": "string", "enum": list(BACKOFF_PRESETS),
         "description": "A preset: aggressive (100, 200, 400 ms), standard (about 1, 2, 4, 8, "
                        "16 s), relaxed (about 5, 15, 45, 135 s)."},
        {"$ref": "#/$defs/BackoffConfig"},
    ]},
    "JobConfig.payload": {"anyOf": [
        {"type": "object", "description": "Field name -> type name or field.",
         "additionalProperties": {"$ref": "#/$defs/PayloadFieldOrType"}},
        {"type": "string", "pattern": _IMPORT_PATTERN,
         "description": "The import path of an attrs class (package.module:Class)."},
    ]},
}


def _comments() -> dict[str, str]:
    """``#:`` comments of the model, by ``Class.field``."""
    found: dict[str, str] = {}
    current, pending = "", list[str]()
    for line in inspect.getsource(model).splitlines():
        stripped = line.strip()
        if line.startswith("class "):
            current, pending = line.split()[1].split("(")[0].rstrip(":"), []
        elif stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
        elif match := re.match(r"^    ([a-z_]+):", line):
            if pending:
                found[f"{current}.{match[1]}"] = " ".join(pending).replace("``", "`")
            pending = []
        else:
            pending = []
    return found


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, Schema] = {}
        self.comments = _comments()

    def type_schema(self, tp: Any) -> Schema:
        origin, args = get_origin(tp), get_args(tp)
        if origin in (Union, type(int | str)):
            return self._union(args)
        if origin is Literal:
            return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
        if origin is list:
            return {"type": "array", "items": self.type_schema(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.type_schema(args[1])}
        if attrs.has(tp):
            return self.ref(tp)
        simple = {str: "string", int: "integer", float: "number", bool: "boolean",
                  _NONE: "null"}
        return {"type": simple[tp]} if tp in simple else {}

    def _union(self, args: tuple[Any, ...]) -> Schema:
        members = [arg for arg in args if arg is not _NONE]
        if set(members) == {int, str}:
            schemas: list[Schema] = [dict(_DURATION_REF)]
        elif all(attrs.has(arg) for arg in members) and len(members) > 1:
            return {"oneOf": [self.ref(arg) for arg in members]
                    + ([{"type": "null"}] if _NONE in args else [])}
        else:
            schemas = [self.type_schema(arg) for arg in members]
        if _NONE in args:
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}

    def ref(self, cls: type) -> Schema:
        if cls.__name__ not in self.defs:
            self.defs[cls.__name__] = {}  # reserve first: classes may refer to each other
            self.defs[cls.__name__] = self.class_schema(cls)
        return {"$ref": f"#/$defs/{cls.__name__}"}

    def class_schema(self, cls: type) -> Schema:
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            properties[field.name] = self.field_schema(cls, field)
            if field.default is attrs.NOTHING:
                required.append(field.name)
        schema: Schema = {"type": "object"}
        doc = inspect.getdoc(cls)
        if doc and not doc.startswith(cls.__name__ + "("):
            schema["description"] = " ".join(doc.split()).replace("``", "`")
        schema["properties"] = properties
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        if cls is model.ScheduleConfig:
            schema["oneOf"] = [{"required": [name]} for name in ("every", "cron", "at")]
        return schema

    def field_schema(self, cls: type, field: attrs.Attribute[Any]) -> Schema:
        name = f"{cls.__name__}.{field.name}"
        schema: Schema = dict(OVERRIDES.get(name) or self.type_schema(field.type))
        if name in OVERRIDES and _NONE in get_args(field.type) and "anyOf" in schema:
            if {"type": "null"} not in schema["anyOf"]:
                schema["anyOf"] = [*schema["anyOf"], {"type": "null"}]
        elif name in OVERRIDES and _NONE in get_args(field.type):
            schema = {"anyOf": [schema, {"type": "null"}]}
        description = self.comments.get(name) or DESCRIPTIONS.get(name)
        if description:
            schema = {"description": description, **schema}
        schema.update(CONSTRAINTS.get(name, {}))
        default = _default(field)
        if default is not attrs.NOTHING:
            schema["default"] = default
        return schema


def _default(field: attrs.Attribute[Any]) -> Any:
    default = field.default
    factory = getattr(default, "factory", None)
    if callable(factory):  # an attrs.Factory: only empty containers are worth showing
        value = factory()
        return value if value in ({}, []) else attrs.NOTHING
    if default is None or isinstance(default, str | int | float | bool):
        return default
    return attrs.NOTHING


def build_schema() -> Schema:
    """The schema as a dict."""
    for value in vars(model).values():
        if isinstance(value, type) and attrs.has(value):
            attrs.resolve_types(value)
    builder = _Builder()
    root = builder.class_schema(model.AgendaConfig)
    for value in vars(model).values():  # classes reached only through OVERRIDES, too
        if isinstance(value, type) and attrs.has(value) and value is not model.AgendaConfig:
            builder.ref(value)
    defs = dict(sorted(builder.defs.items()))
    defs["Duration"] = {
        "description": "Milliseconds, or text like '5 minutes', '1 hour and 30 minutes'.",
        "anyOf": [{"type": "integer", "minimum": 0},
                  {"type": "string", "examples": ["5 seconds", "10 minutes", "1 hour"]}],
    }
    defs["PayloadFieldOrType"] = {"anyOf": [
        {"type": "string", "description": "The shorthand: just the type.",
         "examples": CONSTRAINTS["PayloadField.type"]["examples"]},
        {"$ref": "#/$defs/PayloadField"},
    ]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/agenda-decl/agenda-decl/schemas/agenda.schema.json",
        "title": "agenda.yaml",
        "description": "The declarative configuration of agenda-decl: storage, notifications, "
                       "scheduler, jobs with typed payloads, and repeating schedules.",
        **{key: value for key, value in root.items() if key != "type"},
        "type": "object",
        "$defs": defs,
    }


def schema_text() -> str:
    """The schema as written to ``schemas/agenda.schema.json``."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.write(schema_text())


if __name__ == "__main__":
    main()
