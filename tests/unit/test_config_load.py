"""The loader of agenda.yaml: broken files -> the exact `file:line:column: path: message`
lines; the hardened YAML reader; ${ENV} interpolation and the masking of secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agenda_decl.config import (
    ConfigError,
    ConfigIssue,
    PayloadError,
    check_payload,
    issue_for,
    load_config,
    redacted,
    source_of,
)
from agenda_decl.config.load import MAX_FILE_BYTES, read_yaml
from agenda_decl.config.model import (
    JobConfig,
    PayloadField,
    PostgresStorage,
    RedisStorage,
    SchedulerConfig,
    SQLiteStorage,
)

BASE = "version: 1\nbackend:\n  storage: {type: sqlite, path: jobs.db}\n"
INVOICE = "jobs:\n  send-invoice:\n    payload: {customer_id: int, due: datetime}\n"
INVOICE_DATA = "{customer_id: 1, due: 2026-12-01T00:00:00Z}"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so that messages name "agenda.yaml"


def write(text: str | bytes, name: str = "agenda.yaml") -> str:
    if isinstance(text, bytes):
        Path(name).write_bytes(text)
    else:
        Path(name).write_text(text, encoding="utf-8")
    return name


def errors(text: str | bytes, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(text), environ=environ or {})
    lines = str(info.value).splitlines()
    assert lines == [str(issue) for issue in info.value.issues]
    return lines


BROKEN: list[tuple[str, str, list[str]]] = [
    ("duplicate key", BASE + "jobs:\n  a: {}\n  a: {}\n", [
        "agenda.yaml:6:3: jobs.a: duplicate key 'a' (first at line 5, column 3)",
    ]),
    ("unknown key with the allowed ones", "version: 1\nbackend:\n  storage: {type: sqlite, "
     "paht: jobs.db}\n", [
        "agenda.yaml:3:27: backend.storage.paht: unknown key 'paht' (allowed: type, path, "
        "table_name, logging, log_table_name, watch_changes, watch_interval; did you mean "
        "'path'?)",
    ]),
    ("unknown top-level key", BASE + "schedule: []\n", [
        "agenda.yaml:4:1: schedule: unknown key 'schedule' (allowed: version, backend, "
        "scheduler, jobs, schedules, codegen; did you mean 'schedules'?)",
    ]),
    ("wrong type: no coercion of '5'", BASE + "jobs:\n  send-invoice:\n    concurrency: '5'\n", [
        "agenda.yaml:6:18: jobs.send-invoice.concurrency: expected an integer, got '5' "
        "(a string)",
    ]),
    ("integer out of range", BASE + "jobs:\n  send-invoice:\n    concurrency: -2\n", [
        "agenda.yaml:6:18: jobs.send-invoice.concurrency: expected an integer >= 1, got -2",
    ]),
    ("bad duration", BASE + "scheduler:\n  process_every: 5 minuts\n", [
        "agenda.yaml:5:18: scheduler.process_every: expected a duration (milliseconds, or text "
        "like '5 minutes' or '1 hour and 30 minutes'), got '5 minuts' (a string)",
    ]),
    ("bad cron", BASE + INVOICE + "schedules:\n  - {job: send-invoice, cron: '0 25 * * *', "
     f"data: {INVOICE_DATA}}}\n", [
        "agenda.yaml:8:31: schedules[0].cron: invalid cron expression '0 25 * * *': "
        "[0 25 * * *] is not acceptable, out of range (expected 5 fields 'minute hour day "
        "month weekday', 6 with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly)",
    ]),
    ("bad time zone", BASE + INVOICE + "schedules:\n  - {job: send-invoice, cron: '0 3 * * *', "
     f"timezone: Europe/Berln, data: {INVOICE_DATA}}}\n", [
        "agenda.yaml:8:54: schedules[0].timezone: unknown time zone: 'Europe/Berln' (expected "
        "an IANA name such as 'Europe/Berlin')",
    ]),
    ("bad time of day", BASE + "jobs: {a: {}}\nschedules:\n  - {job: a, at: '25:00'}\n", [
        "agenda.yaml:6:18: schedules[0].at: expected a time of day like '3:30pm', '15:30', "
        "'3pm', 'noon' or 'midnight', got '25:00' (a string)",
    ]),
    ("unknown job in a schedule", BASE + INVOICE + "schedules:\n  - {job: send-invoices, "
     "every: 1 hour}\n", [
        "agenda.yaml:8:11: schedules[0].job: unknown job 'send-invoices' (jobs defined in this "
        "file: send-invoice; did you mean 'send-invoice'?)",
    ]),
    ("two of every/cron/at", BASE + INVOICE + "schedules:\n  - job: send-invoice\n    every: "
     f"1 hour\n    cron: '0 3 * * *'\n    data: {INVOICE_DATA}\n", [
        "agenda.yaml:10:5: schedules[0].cron: give only one of every, cron and at (found every "
        "and cron)",
    ]),
    ("none of every/cron/at", BASE + INVOICE + "schedules:\n  - job: send-invoice\n    data: "
     f"{INVOICE_DATA}\n", [
        "agenda.yaml:8:5: schedules[0]: a schedule needs one of every, cron or at (none given)",
    ]),
    ("data that does not fit the payload", BASE + INVOICE + "schedules:\n  - job: send-invoice"
     "\n    every: 1 hour\n    data: {customer_id: '7', due: next week, currency: EUR}\n", [
        "agenda.yaml:10:25: schedules[0].data.customer_id: expected an integer, got '7' "
        "(a string)",
        "agenda.yaml:10:35: schedules[0].data.due: expected a date and time in ISO 8601 (like "
        "'2026-12-01T09:00:00Z'), got 'next week' (a string)",
        "agenda.yaml:10:56: schedules[0].data.currency: unknown field 'currency' (fields of "
        "job 'send-invoice': customer_id, due)",
    ]),
    ("a required payload field missing", BASE + INVOICE + "schedules:\n  - {job: send-invoice,"
     " every: 1 hour, data: {due: 2026-12-01}}\n", [
        "agenda.yaml:8:46: schedules[0].data.customer_id: required field 'customer_id' of job "
        "'send-invoice' is missing (type int)",
    ]),
    ("missing environment variable", "version: 1\nbackend:\n  storage:\n    type: postgres\n"
     "    connection_string: ${DATABASE_URL}\n", [
        "agenda.yaml:5:24: backend.storage.connection_string: environment variable "
        "DATABASE_URL is not set (set it, or write ${DATABASE_URL:-default})",
    ]),
    ("malformed reference", BASE + "scheduler: {name: 'w-${1X}'}\n", [
        "agenda.yaml:4:19: scheduler.name: invalid reference '${1X}': expected ${NAME} or "
        "${NAME:-default} (write $${ for a literal ${)",
    ]),
    ("python tag", BASE + "jobs:\n  evil: !!python/object/apply:os.system [echo hi]\n", [
        "agenda.yaml:5:9: jobs.evil: Python objects are never loaded: YAML tag "
        "'!!python/object/apply:os.system' is not allowed (only plain values: strings, numbers, "
        "booleans, null, lists and mappings)",
    ]),
    ("other tags", BASE + "scheduler: {name: !!binary aGk=}\n", [
        "agenda.yaml:4:19: scheduler.name: YAML tag '!!binary' is not allowed (only plain "
        "values: strings, numbers, booleans, null, lists and mappings)",
    ]),
    ("unsupported version", "version: 2\nbackend:\n  storage: {type: sqlite}\n", [
        "agenda.yaml:1:10: version: unsupported version 2 (this agenda-decl reads version 1)",
    ]),
    ("empty file", "", [
        "agenda.yaml:1:1: missing required key 'version'",
        "agenda.yaml:1:1: missing required key 'backend'",
    ]),
    ("not a mapping", "- a\n- b\n", [
        "agenda.yaml:1:1: expected a mapping at the top level, got a list",
    ]),
    ("unknown storage type", "version: 1\nbackend:\n  storage: {type: mysql}\n", [
        "agenda.yaml:3:19: backend.storage.type: unknown type 'mysql' (allowed: mongo, "
        "postgres, redis, sqlite)",
    ]),
    ("missing required key", "version: 1\nbackend:\n  storage: {type: postgres}\n", [
        "agenda.yaml:3:12: backend.storage: missing required key 'connection_string'",
    ]),
    ("YAML syntax", "version: 1\nbackend:\n  storage: {type: sqlite\n", [
        "agenda.yaml:4:1: invalid YAML: while parsing a flow mapping expected ',' or '}', but "
        "got '<stream end>'",
    ]),
    ("handlers", BASE + "jobs:\n  a: {handler: myapp.jobs.send}\n  b: {handler: "
     "subprocess:Popen}\n", [
        "agenda.yaml:5:16: jobs.a.handler: expected a handler as 'package.module:name', got "
        "'myapp.jobs.send' (a string)",
        "agenda.yaml:6:16: jobs.b.handler: handler 'subprocess:Popen' points into the standard "
        "library module 'subprocess'; it must be your own code",
    ]),
    ("payload types", BASE + "jobs:\n  a:\n    payload:\n      n: integer\n      m: {type: "
     "'int | str'}\n      c: {type: int, choices: [1, two], default: 3}\n", [
        "agenda.yaml:7:10: jobs.a.payload.n: unknown type 'integer' (expected str, int, float, "
        "bool, datetime, date, list[T] or T | None)",
        "agenda.yaml:8:17: jobs.a.payload.m.type: unsupported type 'int | str': the only union "
        "allowed is 'T | None' (types: str, int, float, bool, datetime, date, list[T] or "
        "T | None)",
        "agenda.yaml:9:35: jobs.a.payload.c.choices[1]: expected an integer, got 'two' "
        "(a string)",
        "agenda.yaml:9:50: jobs.a.payload.c.default: expected one of 1, 'two', got 3 "
        "(a number)",
    ]),
    ("reserved keys", BASE + "jobs:\n  x:\n    payload: {__managed_by__: str}\nschedules:\n"
     "  - {job: x, every: 1 minute, data: {__schedule_key__: k}}\n", [
        "agenda.yaml:6:15: jobs.x.payload.__managed_by__: '__managed_by__' is reserved for "
        "agenda-decl's ownership marker",
        "agenda.yaml:8:56: schedules[0].data.__schedule_key__: '__schedule_key__' is reserved "
        "for agenda-decl's ownership marker (use another key)",
    ]),
    ("identifiers and connection strings", "version: 1\nbackend:\n  storage: {type: postgres, "
     "connection_string: 'mysql://u:pw@h/db', table_name: 'jobs; drop table x'}\n  "
     "notifications: {type: redis, connection_string: 'redis://h', channel_name: 'a b'}\n", [
        "agenda.yaml:3:48: backend.storage.connection_string: expected a PostgreSQL connection "
        "string (postgresql:// or postgres://, e.g. postgresql://user@host/...), got a mysql:// "
        "URL",
        "agenda.yaml:3:81: backend.storage.table_name: expected letters, digits and "
        "underscores, starting with a letter or underscore, at most 44 characters, got "
        "'jobs; drop table x' (a string)",
        "agenda.yaml:4:78: backend.notifications.channel_name: expected letters, digits or "
        "_ . : { } / -, at most 128 characters, got 'a b' (a string)",
    ]),
    ("skip days and dates", BASE + "jobs: {a: {}}\nschedules:\n  - {job: a, every: 1 hour, "
     "skip_days: [sat, 7, funday], start_date: '2027-01-01', end_date: '2026-01-01'}\n", [
        "agenda.yaml:6:46: schedules[0].skip_days[1]: expected a weekday: 0-6 (0 = Sunday) or a "
        "name like 'sat' or 'sunday', got 7 (a number)",
        "agenda.yaml:6:49: schedules[0].skip_days[2]: expected a weekday: 0-6 (0 = Sunday) or a "
        "name like 'sat' or 'sunday', got 'funday' (a string)",
        "agenda.yaml:6:94: schedules[0].end_date: end_date '2026-01-01' is not after start_date "
        "'2027-01-01'",
    ]),
    ("relative dates", BASE + "jobs: {a: {}}\nschedules:\n  - {job: a, every: 1 hour, "
     "start_date: tomorrow}\n", [
        "agenda.yaml:6:41: schedules[0].start_date: expected an ISO 8601 date or date and time "
        "('2026-12-01' or '2026-12-01T09:00:00Z'), got 'tomorrow' (a string); relative dates "
        "would change on every apply",
    ]),
    ("schedule keys unique per job", BASE + "jobs: {a: {}}\nschedules:\n  - {job: a, every: "
     "1 hour}\n  - {job: a, every: 2 hours}\n", [
        "agenda.yaml:7:5: schedules[1]: schedule key 'a' of job 'a' is already used by "
        "schedules[0]; give each schedule of a job its own key",
    ]),
    ("backoff", BASE + "jobs:\n  a: {backoff: fast}\n  b: {backoff: {strategy: linear, "
     "factor: 3, jitter: 2}}\n", [
        "agenda.yaml:5:16: jobs.a.backoff: expected a backoff preset (aggressive, standard, "
        "relaxed) or a strategy mapping, got 'fast' (a string)",
        "agenda.yaml:6:35: jobs.b.backoff.factor: factor applies to the exponential strategy "
        "only (this one is linear)",
        "agenda.yaml:6:54: jobs.b.backoff.jitter: expected a number from 0 to 1, got 2.0",
    ]),
    ("every given a cron expression", BASE + "jobs: {a: {}}\nschedules:\n  - {job: a, every: "
     "'*/5 * * * *'}\n", [
        "agenda.yaml:6:21: schedules[0].every: expected a duration (milliseconds, or text like "
        "'5 minutes' or '1 hour and 30 minutes'), got '*/5 * * * *' (a string); for a cron "
        "expression write cron: instead",
    ]),
    ("mongo-changestream without mongo storage", BASE.replace("  storage", "  notifications: "
     "{type: mongo-changestream, address: 'mongodb://h/db'}\n  storage"), [
        "agenda.yaml:3:25: backend.notifications.type: mongo-changestream notifications need "
        "mongo storage (the stream watches the jobs collection), got sqlite storage",
    ]),
]


@pytest.mark.parametrize(("text", "expected"), [(text, expected) for _, text, expected in BROKEN],
                         ids=[name for name, _, _ in BROKEN])
def test_broken_file(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_every_problem_of_a_file_at_once() -> None:
    text = (
        "version: 1\n"
        "backend:\n"
        "  storage: {type: sqlite, tabel_name: x}\n"
        "scheduler:\n"
        "  process_every: soon\n"
        "  max_concurrency: 0\n"
        "jobs:\n"
        "  a:\n"
        "    handler: os:system\n"
        "    concurrency: '5'\n"
        "    payload: {n: int}\n"
        "schedules:\n"
        "  - {job: a, every: 1 hour, data: {n: x}}\n"
        "  - {job: b, cron: nope}\n"
    )
    assert errors(text) == [
        "agenda.yaml:3:27: backend.storage.tabel_name: unknown key 'tabel_name' (allowed: "
        "type, path, table_name, logging, log_table_name, watch_changes, watch_interval; did "
        "you mean 'table_name'?)",
        "agenda.yaml:5:18: scheduler.process_every: expected a duration (milliseconds, or text "
        "like '5 minutes' or '1 hour and 30 minutes'), got 'soon' (a string)",
        "agenda.yaml:6:20: scheduler.max_concurrency: expected an integer >= 1, got 0",
        "agenda.yaml:9:14: jobs.a.handler: handler 'os:system' points into the standard "
        "library module 'os'; it must be your own code",
        "agenda.yaml:10:18: jobs.a.concurrency: expected an integer, got '5' (a string)",
        "agenda.yaml:13:39: schedules[0].data.n: expected an integer, got 'x' (a string)",
        "agenda.yaml:14:11: schedules[1].job: unknown job 'b' (jobs defined in this file: a)",
        "agenda.yaml:14:20: schedules[1].cron: invalid cron expression 'nope': expected 5 "
        "fields, 6 with seconds first, or an @alias",
    ]


def test_issues_carry_their_parts() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(BASE + "jobs:\n  a: {concurrency: 0}\n"), environ={})
    assert info.value.issues == [ConfigIssue("agenda.yaml", 5, 20, "jobs.a.concurrency",
                                             "expected an integer >= 1, got 0")]


# -- the YAML reader ---------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_alias_bomb_is_refused() -> None:
    levels = ["  a: &a [x, x, x, x, x, x, x, x, x, x]\n"]
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        levels.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]\n")
    assert errors(BASE + "bomb:\n" + "".join(levels)) == [
        "agenda.yaml:5:19: refused: more than 100000 values after expanding aliases "
        "(an alias bomb?)",
    ]


def test_more_than_100_aliases_are_refused() -> None:
    text = BASE + "x: &x 1\ny: [" + ", ".join(["*x"] * 101) + "]\n"
    assert errors(text) == ["agenda.yaml:5:405: refused: more than 100 aliases (*name) in one "
                            "file"]


def test_recursive_alias_is_refused() -> None:
    assert errors(BASE + "x: &x [*x]\n") == [
        "agenda.yaml:4:4: refused: nested more than 64 levels deep (a recursive alias?)"
    ]


def test_oversize_file_is_refused_before_parsing() -> None:
    text = BASE + "# " + "x" * MAX_FILE_BYTES + "\n"
    assert errors(text) == ["agenda.yaml:1:1: the file is larger than 1000000 bytes (1 MB), "
                            "the limit for a config file"]


def test_file_that_is_not_utf8() -> None:
    assert errors(b"version: 1\nname: \xff\n") == [
        "agenda.yaml:1:1: the file is not UTF-8 text (byte 17)"
    ]


def test_character_yaml_does_not_allow() -> None:
    assert errors("version: 1\nname: a\x07b\n") == [
        "agenda.yaml:2:8: invalid YAML: control character U+0007 is not allowed"
    ]


def test_empty_sections_are_allowed() -> None:
    config = load_config(write(BASE + "jobs:\n  cleanup:\nschedules:\n"), environ={})
    assert config.jobs == {"cleanup": JobConfig()}
    assert config.schedules == []


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("nowhere.yaml")
    assert str(info.value) == "nowhere.yaml:1:1: cannot read the file (No such file or directory)"


def test_yes_no_on_off_stay_strings_and_true_false_are_booleans() -> None:
    data = read_yaml(write("on: yes\nn: no\nOff: y\nflags: [true, False, off, ON]\n"))
    assert data == {"on": "yes", "n": "no", "Off": "y", "flags": [True, False, "off", "ON"]}


def test_times_dates_and_numbers() -> None:
    data = read_yaml(write("at: 10:30\nwhen: 2026-12-01\nn: [1, -2, 0x1f, 0o17, 1.5, 1e3, "
                           "1_000, .inf, 0755]\nnothing: [~, null, ]\nquoted: '5'\n"))
    assert data == {"at": "10:30", "when": "2026-12-01", "n": [1, -2, 31, 15, 1.5, 1000.0,
                    "1_000", ".inf", 755], "nothing": [None, None], "quoted": "5"}


def test_10_30_stays_a_time_of_day_and_on_a_data_key() -> None:
    config = load_config(write(BASE + "jobs: {a: {}}\nschedules:\n  - job: a\n    at: 10:30\n"
                               "    data: {on: yes}\n"), environ={})
    assert config.schedules[0].at == "10:30"
    assert config.schedules[0].data == {"on": "yes"}


def test_merge_keys_and_anchors() -> None:
    config = load_config(write(
        BASE + "jobs:\n  a: &defaults {concurrency: 2, priority: high}\n"
        "  b:\n    <<: *defaults\n    concurrency: 3\n"
    ), environ={})
    assert config.jobs["b"].concurrency == 3
    assert config.jobs["b"].priority == "high"


def test_payload_shorthand_and_full_fields() -> None:
    config = load_config(write(BASE + "jobs:\n  a:\n    payload:\n      n: int\n      tags: "
                               "{type: 'list[str]', default: []}\n"), environ={})
    payload = config.jobs["a"].payload
    assert isinstance(payload, dict)
    assert payload["n"] == PayloadField(type="int")
    assert payload["tags"].default == []


# -- ${ENV} --------------------------------------------------------------------------------------


def test_env_interpolation_with_defaults_and_escape() -> None:
    config = load_config(write(
        "version: 1\nbackend:\n  storage:\n    type: postgres\n"
        "    connection_string: ${DATABASE_URL:-postgresql://postgres@127.0.0.1/test}\n"
        "scheduler:\n  name: ${APP}-worker-$${literal}\n"
    ), environ={"APP": "billing"})
    storage = config.backend.storage
    assert isinstance(storage, PostgresStorage)
    assert storage.connection_string == "postgresql://postgres@127.0.0.1/test"
    assert config.scheduler.name == "billing-worker-${literal}"


def test_env_value_is_not_expanded_again_and_stays_a_string() -> None:
    config = load_config(write(BASE + "scheduler: {name: '${A}'}\njobs:\n  x: {description: "
                               "'${N}'}\n"), environ={"A": "${B}", "B": "no", "N": "5"})
    assert config.scheduler.name == "${B}"
    assert config.jobs["x"].description == "5"


SECRET = "s3cr3t-Passw0rd"
URL = f"postgresql://app:{SECRET}@db.internal:5432/billing"


def test_secrets_from_the_environment_never_show() -> None:
    text = ("version: 1\nbackend:\n  storage:\n    type: postgres\n"
            "    connection_string: ${DATABASE_URL}\n"
            "  notifications:\n    type: redis\n    connection_string: redis://:${REDIS_PW}@r:6379\n"
            "scheduler: {name: '${TOKEN}'}\n")
    environ = {"DATABASE_URL": URL, "REDIS_PW": "redis-pw-123", "TOKEN": "tok-9876543"}
    config = load_config(write(text), environ=environ)
    shown = json.dumps(redacted(config)) + repr(config) + str(config)
    for secret in (SECRET, "redis-pw-123"):
        assert secret not in shown
    assert "tok-9876543" not in json.dumps(redacted(config))
    view = redacted(config)
    assert view["backend"]["storage"]["connection_string"] == (
        "postgresql://app:***@db.internal:5432/billing")
    assert view["backend"]["notifications"]["connection_string"] == "redis://:***@r:6379"
    assert view["scheduler"]["name"] == "${TOKEN}"
    assert repr(config.scheduler.name) == "'${TOKEN}'"
    assert config.scheduler.name == "tok-9876543"  # the value itself, wherever it is used


def test_secrets_never_show_in_errors() -> None:
    text = ("version: 1\nbackend:\n  storage:\n    type: redis\n    connection_string: "
            "${DATABASE_URL}\nscheduler: {name: '${TOKEN}', max_concurrency: '${TOKEN}'}\n")
    message = "\n".join(errors(text, {"DATABASE_URL": URL, "TOKEN": "tok-9876543"}))
    assert SECRET not in message
    assert "tok-9876543" not in message
    assert message == (
        "agenda.yaml:5:24: backend.storage.connection_string: expected a Redis connection "
        "string (redis:// or rediss:// or unix:// or redis+cluster:// or rediss+cluster://, "
        "e.g. redis://user@host/...), got a postgresql:// URL\n"
        "agenda.yaml:6:48: scheduler.max_concurrency: expected an integer, got '${TOKEN}' "
        "(a string from the environment)"
    )


def test_a_redis_cluster_needs_a_key_prefix_with_a_hash_tag() -> None:
    storage = ("version: 1\nbackend:\n  storage:\n    type: redis\n    connection_string: "
               "redis+cluster://10.0.0.1:7000\n")
    assert errors(storage) == [
        "agenda.yaml:4:5: backend.storage.key_prefix: 'agenda:' has no hash tag: on a Redis "
        "Cluster every key of the store must share one slot, so the prefix needs a hash tag, "
        "for example '{agenda}:'"
    ]
    config = load_config(write(storage + "    key_prefix: '{agenda}:'\n"), environ={})
    assert config.backend is not None
    assert isinstance(config.backend.storage, RedisStorage)
    assert config.backend.storage.key_prefix == "{agenda}:"


def test_a_redis_socket_timeout_must_be_seconds_above_zero() -> None:
    """Storage and notifications alike: the field is named with its place in the file, the
    password is not shown."""
    text = ("version: 1\nbackend:\n  storage:\n    type: redis\n    connection_string: "
            "redis://:Sup3r@r:6379/0?socket_timeout=abc\n  notifications:\n    type: redis\n"
            "    connection_string: redis://r:6379/0?socket_timeout=0\n")
    assert errors(text) == [
        "agenda.yaml:5:24: backend.storage.connection_string: socket_timeout must be a number "
        "of seconds above 0, got 'abc'",
        "agenda.yaml:8:24: backend.notifications.connection_string: socket_timeout must be a "
        "number of seconds above 0, got '0'",
    ]
    config = load_config(write(text.replace("abc", "2.5").replace("=0\n", "=30\n")), environ={})
    assert config.backend is not None
    assert isinstance(config.backend.storage, RedisStorage)
    assert config.backend.storage.connection_string.endswith("?socket_timeout=2.5")


def test_a_value_from_the_environment_is_quoted_as_the_file_wrote_it() -> None:
    token = "t0k3n-" + "x" * 100
    text = BASE + "scheduler: {max_concurrency: 'Bearer ${TOKEN}'}\njobs:\n  x: {priority: " \
        "'${TOKEN}'}\nschedules:\n  - {job: x, every: '${TOKEN}'}\n"
    assert errors(text, {"TOKEN": token}) == [
        "agenda.yaml:4:30: scheduler.max_concurrency: expected an integer, got "
        "'Bearer ${TOKEN}' (a string from the environment)",
        "agenda.yaml:6:17: jobs.x.priority: expected an integer or one of lowest, low, "
        "normal, high, highest, got '${TOKEN}' (a string from the environment)",
        "agenda.yaml:8:21: schedules[0].every: expected a duration (milliseconds, or text like "
        "'5 minutes' or '1 hour and 30 minutes'), got '${TOKEN}' (a string from the "
        "environment)",
    ]


def test_the_listen_url_is_a_secret_and_a_checked_postgres_url() -> None:
    text = ("version: 1\nbackend:\n  storage:\n    type: postgres\n"
            "    connection_string: postgresql://app@pgbouncer:6432/jobs\n"
            "    listen_connection_string: ${DIRECT_URL}\n")
    config = load_config(write(text), environ={"DIRECT_URL": URL})
    assert isinstance(config.backend.storage, PostgresStorage)
    assert config.backend.storage.listen_connection_string == URL
    shown = json.dumps(redacted(config)) + repr(config)
    assert SECRET not in shown
    assert redacted(config)["backend"]["storage"]["listen_connection_string"] == (
        "postgresql://app:***@db.internal:5432/billing")
    message = "\n".join(errors(text, {"DIRECT_URL": f"redis://:{SECRET}@r:6379"}))
    assert SECRET not in message
    assert message == (
        "agenda.yaml:6:31: backend.storage.listen_connection_string: expected a PostgreSQL "
        "connection string (postgresql:// or postgres://, e.g. postgresql://user@host/...), "
        "got a redis:// URL"
    )


def test_literal_passwords_in_the_file_are_masked_too() -> None:
    config = load_config(write("version: 1\nbackend:\n  storage: {type: redis, "
                               "connection_string: 'redis://u:hunter22@h:1/0'}\n"), environ={})
    assert "hunter22" not in json.dumps(redacted(config)) + repr(config)


# -- positions for other layers ------------------------------------------------------------------


def test_source_positions_and_issue_for() -> None:
    config = load_config(write(BASE + INVOICE + "schedules:\n  - job: send-invoice\n"
                               f"    every: 1 hour\n    data: {INVOICE_DATA}\n"), environ={})
    source = source_of(config)
    assert source is not None
    assert source.base_dir == Path.cwd().resolve()
    assert source.position("schedules[0].every") == (9, 12)
    assert source.position("schedules[0].data.missing.deeper") == (10, 11)
    assert str(issue_for(config, "schedules[0].data.due", "boom")) == (
        "agenda.yaml:10:33: schedules[0].data.due: boom")


def test_check_payload_returns_stored_form() -> None:
    job = JobConfig(payload={
        "n": PayloadField(type="int"),
        "due": PayloadField(type="datetime"),
        "day": PayloadField(type="date | None"),
        "tags": PayloadField(type="list[str]", default=["a"]),
        "kind": PayloadField(type="str", choices=["x", "y"], default="x"),
        "ratio": PayloadField(type="float", default=1),
    })
    data = check_payload("j", job, {"n": 1, "due": "2026-12-01T10:00:00+02:00"}, path="data")
    assert data == {"n": 1, "due": "2026-12-01T10:00:00.000+02:00", "day": None, "tags": ["a"],
                    "kind": "x", "ratio": 1}
    with pytest.raises(PayloadError) as info:
        check_payload("j", job, {"n": True, "due": "x", "tags": ["a", 2], "kind": "z"},
                      path="schedules[0].data")
    assert info.value.problems == [
        ("schedules[0].data.n", "expected an integer, got true (a boolean)"),
        ("schedules[0].data.due", "expected a date and time in ISO 8601 (like "
         "'2026-12-01T09:00:00Z'), got 'x' (a string)"),
        ("schedules[0].data.tags[1]", "expected a string, got 2 (a number)"),
        ("schedules[0].data.kind", "expected one of 'x', 'y', got 'z' (a string)"),
    ]
    assert (info.value.path, info.value.message) == info.value.problems[0]


def test_check_payload_with_an_attrs_class(tmp_path: Path) -> None:
    (tmp_path / "reportmodels.py").write_text(
        "import attrs\n@attrs.define\nclass Report:\n    format: str\n    pages: int = 1\n")
    job = JobConfig(payload="reportmodels:Report")
    assert check_payload("r", job, {"format": "pdf"}, path="d", base_dir=tmp_path) == {
        "format": "pdf", "pages": 1}
    with pytest.raises(PayloadError) as info:
        check_payload("r", job, {"pages": 2, "colour": "red"}, path="d", base_dir=tmp_path)
    assert info.value.problems == [
        ("d.format", "required field is missing"),
        ("d", "unknown fields colour (allowed: format, pages)"),
    ]
    with pytest.raises(PayloadError, match="cannot import payload class 'nomodule:X'"):
        check_payload("r", JobConfig(payload="nomodule:X"), {}, path="d", base_dir=tmp_path)


@pytest.mark.parametrize(("given", "stored"), [
    ("2026-12-01T10:30:00.123456+02:00", "2026-12-01T10:30:00.123456+02:00"),
    ("2026-12-01T10:30:00-03:30", "2026-12-01T10:30:00.000-03:30"),
    ("2026-12-01T10:30:00.5Z", "2026-12-01T10:30:00.500Z"),
    ("2026-12-01T10:30:00+00:00", "2026-12-01T10:30:00.000Z"),
    ("2026-12-01T10:30:00", "2026-12-01T10:30:00.000Z"),  # no offset: UTC
])
def test_a_datetime_field_keeps_its_offset_and_microseconds(given: str, stored: str) -> None:
    job = JobConfig(payload={"due": PayloadField(type="datetime")})
    data = check_payload("j", job, {"due": given}, path="data")
    assert data == {"due": stored}
    assert datetime.fromisoformat(stored) == datetime.fromisoformat(given).replace(
        tzinfo=datetime.fromisoformat(given).tzinfo or UTC)


def test_a_class_payload_datetime_keeps_its_offset_and_microseconds(tmp_path: Path) -> None:
    (tmp_path / "stampmodels.py").write_text(
        "import datetime\nimport attrs\n@attrs.define\nclass Stamp:\n"
        "    at: datetime.datetime\n")
    job = JobConfig(payload="stampmodels:Stamp")
    given = "2026-12-01T10:30:00.123456+02:00"
    assert check_payload("s", job, {"at": given}, path="d", base_dir=tmp_path) == {"at": given}


def test_class_payload_is_imported_only_when_asked(tmp_path: Path) -> None:
    text = (BASE + "jobs:\n  r: {payload: 'reportmodels2:Report'}\nschedules:\n"
            "  - {job: r, every: 1 hour, data: {format: pdf, pages: many}}\n")
    load_config(write(text), environ={})  # not imported: its shape only is checked
    (tmp_path / "reportmodels2.py").write_text(
        "import attrs\n@attrs.define\nclass Report:\n    format: str\n    pages: int = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(text), environ={}, import_payload_classes=True)
    assert [(issue.path, issue.message) for issue in info.value.issues] == [
        ("schedules[0].data.pages", "invalid value (invalid literal for int() with "
         "base 10: 'many')"),
    ]


def test_loaded_model_defaults() -> None:
    config = load_config(write(BASE), environ={})
    assert config.backend.storage == SQLiteStorage(type="sqlite", path="jobs.db")
    assert config.backend.notifications is None
    assert config.owner == "agenda-decl"
    assert config.jobs == {} and config.schedules == []


def test_config_has_its_own_converter_and_storage_conversion_stays_as_it_was() -> None:
    """The strict hooks of the config classes live on the config's converter: a file refuses
    "5" for an integer, while the storage converter (one per boundary) is left alone and
    structures the same classes by cattrs' ordinary rules."""
    from agenda_decl._convert import converter as storage_converter
    from agenda_decl.config._structure import converter as config_converter

    assert errors(BASE + "jobs:\n  send-invoice:\n    concurrency: '5'\n") == [
        "agenda.yaml:6:18: jobs.send-invoice.concurrency: expected an integer, got '5' "
        "(a string)",
    ]
    assert config_converter is not storage_converter
    lenient = storage_converter.structure({"max_concurrency": "5", "unknown": 1},
                                          SchedulerConfig)
    assert lenient == SchedulerConfig(max_concurrency=5)
