"""The one configured cattrs converter for every boundary (rows, documents, payloads).

Datetimes of job fields travel as ISO 8601 strings in UTC with milliseconds and a ``Z``; job
fields keep Agenda v6's camelCase names in documents (MongoDB, Redis) and snake_case in SQL
rows. Datetimes inside job data (typed payloads) keep their offset and microseconds:
:data:`payload_converter` is the shared converter with that one difference.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar, get_args

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from agenda_decl._clock import truncate_ms
from agenda_decl._model import (
    JobId,
    JobNotification,
    JobParameters,
    JobStateNotification,
    StateNotificationType,
)

converter = cattrs.Converter(forbid_extra_keys=False)
T = TypeVar("T")


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as JavaScript's ``Date.toISOString`` writes it."""
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    # "+00:00" cut off rather than a naive copy made first: a worker formats several per job.
    return utc.isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_datetime(value: str | datetime) -> datetime:
    """Read a stored instant; naive values are taken as UTC (how drivers return them)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return truncate_ms(parsed.astimezone(UTC))


converter.register_unstructure_hook(datetime, format_datetime)
converter.register_structure_hook(datetime, lambda value, _: parse_datetime(value))


def format_payload_datetime(value: datetime) -> str:
    """A datetime of job data (a payload field) as ISO 8601 that reads back equal: its own
    UTC offset (``Z`` for UTC) and its microseconds (milliseconds when it has no finer part,
    the form JavaScript writes). Job fields are instants in UTC; a payload value is what the
    application gave, so nothing of it is dropped."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"expected an aware datetime, got a naive one ({value!r})")
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    text = value.isoformat(timespec=spec)
    return text[: -len("+00:00")] + "Z" if not offset else text


def parse_payload_datetime(value: str | datetime) -> datetime:
    """The inverse of :func:`format_payload_datetime`: the offset and microseconds as stored;
    text without an offset is UTC (as everywhere in agenda-decl)."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_date(value: str | date) -> date:
    """A calendar date stored as ``YYYY-MM-DD`` (payload fields of type ``date``)."""
    if isinstance(value, datetime):
        raise ValueError(f"expected a date, got a datetime ({value!r})")
    return value if isinstance(value, date) else date.fromisoformat(value)


converter.register_unstructure_hook(date, date.isoformat)
converter.register_structure_hook(date, lambda value, _: parse_date(value))
# An interval is a string (human or cron) or a number of milliseconds: keep whichever it is.
converter.register_structure_hook_func(
    lambda type_: type_ in (str | int, str | int | None), lambda value, _: value
)

#: Job data of typed payloads (attrs payload classes, generated handles): the shared rules,
#: except that datetimes keep their offset and microseconds (see format_payload_datetime).
payload_converter = converter.copy()
payload_converter.register_unstructure_hook(datetime, format_payload_datetime)
payload_converter.register_structure_hook(datetime,
                                          lambda value, _: parse_payload_datetime(value))


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in attrs.fields(JobParameters))
#: snake_case attribute -> Agenda v6's persisted camelCase name.
CAMEL_NAMES: dict[str, str] = {name: camel(name) for name in JOB_FIELDS}


def _camel_overrides() -> Any:
    return {name: override(rename=CAMEL_NAMES[name]) for name in JOB_FIELDS if name != "data"}


# Documents keep ``data`` as is (any JSON); the other fields are renamed.
_to_document = make_dict_unstructure_fn(JobParameters[Any], converter, **_camel_overrides())
_from_document = make_dict_structure_fn(JobParameters[Any], converter, **_camel_overrides())
for _cls in (JobNotification, JobStateNotification):
    _renames: Any = {f.name: override(rename=camel(f.name)) for f in attrs.fields(_cls)}
    converter.register_unstructure_hook(_cls, make_dict_unstructure_fn(_cls, converter, **_renames))
    converter.register_structure_hook(_cls, make_dict_structure_fn(_cls, converter, **_renames))


def job_to_document(job: JobParameters[Any]) -> dict[str, Any]:
    """camelCase fields, ISO strings for dates, ``None`` values kept."""
    document: dict[str, Any] = _to_document(job)
    document["data"] = job.data
    return document


def job_from_document(document: dict[str, Any]) -> JobParameters[Any]:
    """The inverse of :func:`job_to_document`; unknown keys are ignored, missing ones default."""
    known = {value for value in CAMEL_NAMES.values()}
    present = {key: value for key, value in document.items() if key in known and value is not None}
    return _from_document(present, JobParameters)


def job_from_row(row: dict[str, Any]) -> JobParameters[Any]:
    """Build a job from a snake_case row (SQL); columns that are not fields are ignored."""
    values = {name: row[name] for name in JOB_FIELDS if row.get(name) is not None}
    for name in ("next_run_at", "locked_at", "last_finished_at", "failed_at", "last_run_at",
                 "debounce_started_at", "start_date", "end_date"):
        if name in values:
            values[name] = parse_datetime(values[name])
    values.pop("unique", None)
    values.pop("unique_opts", None)
    return JobParameters(**values)


# Notifications are encoded and decoded by hand: they are the hot path of a busy worker (a
# save and three state changes per job), and cattrs costs several times more. The rules are
# the converter's: camelCase keys, ISO dates, ``None`` left out when writing; ``str``/``int``/
# ``float`` applied to what is read, missing optional keys as ``None``.

_STATE_TYPES = frozenset(get_args(StateNotificationType))
_STATE_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (field.name, camel(field.name)) for field in attrs.fields(JobStateNotification)
)
_STATE_READERS: dict[str, Callable[[Any], Any]] = {
    "source": str, "progress": float, "error": str, "fail_count": int, "retry_at": parse_datetime,
    "retry_attempt": int, "duration": int, "last_run_at": parse_datetime,
    "last_finished_at": parse_datetime,
}


def notification_to_json(notification: JobNotification | JobStateNotification) -> str:
    """The wire form Agenda v6 uses: camelCase keys, ISO dates, absent values left out."""
    if isinstance(notification, JobNotification):
        return _job_notification_text(notification)
    return _state_notification_text(notification)


def _job_notification_text(notification: JobNotification) -> str:
    """What ``json.dumps`` writes for the payload (compact separators, ASCII escapes), built
    field by field as the state notification's is: every lone enqueue makes one before its
    statement is sent, and the dict plus ``json.dumps`` cost it about twice as much."""
    parts = [f'"jobId":{_json_text(notification.job_id)}',
             f'"jobName":{_json_text(notification.job_name)}']
    if notification.next_run_at is not None:
        parts.append(f'"nextRunAt":"{_format_instant(notification.next_run_at)}"')
    parts.append(f'"priority":{_json_value(notification.priority)}')
    parts.append(f'"timestamp":"{_format_instant(notification.timestamp)}"')
    if notification.source is not None:
        parts.append(f'"source":{_json_text(notification.source)}')
    return "{" + ",".join(parts) + "}"


def _state_notification_text(notification: JobStateNotification) -> str:
    """What ``json.dumps`` writes for the payload (compact separators, ASCII escapes), built
    field by field: a worker sends three per job, and the dict plus ``json.dumps`` cost
    twice as much. The keys are ASCII camelCase names: nothing in them to escape."""
    parts = []
    for name, key in _STATE_FIELDS:
        value = getattr(notification, name)
        if value is not None:
            parts.append(f'"{key}":{_json_value(value)}')
    return "{" + ",".join(parts) + "}"


def _json_value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _json_text(value)
    if kind is datetime:
        return f'"{_format_instant(value)}"'
    if kind is int:
        return int.__repr__(value)
    return json.dumps(value)  # a float (NaN and infinities included), a str or int subclass


_json_text = json.encoder.encode_basestring_ascii
#: A job's three notifications repeat its run times, and jobs finishing in the same
#: millisecond share their timestamps: most instants were formatted a moment ago.
_format_instant = functools.lru_cache(maxsize=1024)(format_datetime)


def _object(text: str | bytes) -> dict[str, Any]:
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise ValueError(f"a notification is a JSON object, not {type(payload).__name__}")
    return payload


def _optional(payload: dict[str, Any], key: str, read: Callable[[Any], T]) -> T | None:
    value = payload.get(key)
    return None if value is None else read(value)


def notification_from_json(text: str | bytes) -> JobNotification:
    payload = _object(text)
    return JobNotification(
        job_id=JobId(_text(payload, "jobId")),
        job_name=_text(payload, "jobName"),
        next_run_at=_optional(payload, "nextRunAt", parse_datetime),
        priority=int(payload["priority"]),
        timestamp=parse_datetime(payload["timestamp"]),
        source=_optional(payload, "source", str),
    )


def _text(payload: dict[str, Any], key: str) -> str:
    """A required id or name: a non-empty string (a forged ``null`` must not become 'None')."""
    value = payload[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def state_notification_from_json(text: str | bytes) -> JobStateNotification:
    payload = _object(text)
    kind = payload["type"]
    if kind not in _STATE_TYPES:
        raise ValueError(f"unknown state notification type {kind!r}")
    optional = {name: _optional(payload, camel(name), read)
                for name, read in _STATE_READERS.items()}
    return JobStateNotification(
        type=kind, job_id=JobId(_text(payload, "jobId")), job_name=_text(payload, "jobName"),
        timestamp=parse_datetime(payload["timestamp"]), **optional,
    )
