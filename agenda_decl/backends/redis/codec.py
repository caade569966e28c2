"""The Redis job hash of @agendajs/redis-backend 3.0.7 (Node Agenda 6.2.6), both ways: every
value a string, ``'null'`` for absent.

Field names and encodings are Node's (ISO dates, ``'true'``/``'false'``, data as JSON text,
``skipDays`` as a JSON array, the lock as ``lockedAtMs``). A job without data is stored as
Node stores it, ``data = '{}'``, plus our field ``noData = 'true'``, which makes it read back
as ``None`` (see ``scripts``). JSON values that go to the Lua side are tagged (``{"o": ...}``,
``{"a": ...}``, ``{"s": ...}``) because Redis's cjson reads ``{}`` and ``[]`` alike.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agenda_decl._convert import CAMEL_NAMES, format_datetime, parse_datetime
from agenda_decl._job_data import truncate_reason
from agenda_decl._model import JobId, JobParameters
from agenda_decl.backends import base
from agenda_decl.backends.redis.scripts import JOB_FIELDS
from agenda_decl.errors import InvalidOptionError

log = logging.getLogger("agenda_decl.backends.redis")

NULL = "null"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIGITS = re.compile(r"^[0-9]+$")

# -- encoding (Agenda v6's hash: every value a string, 'null' when absent) --------------------


def epoch_ms(value: datetime) -> int:
    # floor(delta / 1 ms) from the normalised parts (only days may be negative): a state
    # write turns several dates per job into ms, and dividing timedeltas costs a few times more
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def ms_arg(value: datetime | None) -> str:
    return "" if value is None else str(epoch_ms(value))


#: The last instant :func:`_iso` formatted and its text (one tuple: replaced at once). The
#: jobs of a bulk insert share their ``next_run_at``: formatted once, not once per job.
_LAST_ISO: tuple[datetime | None, str] = (None, NULL)


def _iso(value: datetime | None) -> str:
    global _LAST_ISO
    if value is None:
        return NULL
    last = _LAST_ISO
    if last[0] is value:  # the tuple holds the instant: its id cannot be another's
        return last[1]
    text = format_datetime(value)
    _LAST_ISO = (value, text)
    return text


def str_or_null(value: Any) -> str:
    return NULL if value is None else str(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _number(value: float | None) -> str:
    """As JavaScript's ``String(n)`` writes it (``50``, not ``50.0``)."""
    if value is None:
        return NULL
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def encode_json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidOptionError(f"not JSON: {error}") from None


#: The stored data of a job without data: Node's ``JSON.stringify(data ?? {})``.
NO_DATA = "{}"


def job_fields(job: JobParameters[Any], data: str, by: str | None) -> list[str]:
    """Every field ``save_job`` writes (never the processor's), as hash field/value pairs;
    ``data`` is the job's data as JSON text. The save scripts add ``noData`` when the job has
    none (``save_options``)."""
    # A flat list, not a dict flattened: this runs once per job of a bulk insert.
    skip_days = job.skip_days
    return [
        "name", job.name, "priority", str(job.priority), "nextRunAt", _iso(job.next_run_at),
        "type", job.type, "repeatTimezone", str_or_null(job.repeat_timezone),
        "repeatInterval", str_or_null(job.repeat_interval),
        "data", NO_DATA if job.data is None else data,
        "repeatAt", str_or_null(job.repeat_at), "disabled", _flag(job.disabled),
        "fork", _flag(job.fork), "lastModifiedBy", str_or_null(by),
        "debounceStartedAt", _iso(job.debounce_started_at), "startDate", _iso(job.start_date),
        "endDate", _iso(job.end_date),
        "skipDays", NULL if skip_days is None else encode_json(skip_days),
    ]


def insert_groups(
    jobs: Sequence[JobParameters[Any]], ids: Sequence[str], data: Sequence[str], by: str | None,
) -> list[list[Any]]:
    """The jobs of an ``insert_many`` call (ids chosen, ``data`` as JSON texts) as its
    groups: consecutive jobs that differ only in id and data share one row (``[shape,
    [id, data, id, data...]]``), so a ``now_many`` batch sends its common fields once."""
    groups: list[list[Any]] = []
    last: list[str] | None = None
    members: list[str] = []
    millis: dict[datetime | None, str] = {}
    for job, job_id, text in zip(jobs, ids, data, strict=True):
        when = job.next_run_at
        if (ms := millis.get(when)) is None:
            ms = millis[when] = ms_arg(when)
        no_data = job.data is None
        shape = ["", job.name, ms, str(job.priority), "true" if no_data else "",
                 "true" if job.disabled else "", *job_fields(job, "", by)]
        if shape != last:
            last, members = shape, []
            groups.append([shape, members])
        members += (job_id, NO_DATA if no_data else text)
    return groups


def state_args(
    job: JobParameters[Any], by: str | None, lock_token: datetime | None = None
) -> list[str]:
    """One job's arguments of ``SAVE_STATES``: id, name, lock ms, nextRunAt ms, lock token ms
    ('' = unfenced), the timing the state write compares (``TIMING_ARGS``), field pairs."""
    head = [str(job.id), job.name, ms_arg(job.locked_at), ms_arg(job.next_run_at),
            ms_arg(lock_token)]
    skip_days = NULL if job.skip_days is None else encode_json(job.skip_days)
    timing = [
        str_or_null(job.repeat_interval), str_or_null(job.repeat_at),
        str_or_null(job.repeat_timezone), ms_arg(job.start_date), ms_arg(job.end_date), skip_days,
    ]
    return head + timing + _state_fields(job, by)


def _state_fields(job: JobParameters[Any], by: str | None) -> list[str]:
    # nextRunAt stays the first pair: SAVE_STATES leaves it out when the timing changed. A
    # flat list written out: this runs twice per job a worker runs.
    return [
        "nextRunAt", _iso(job.next_run_at), "lastRunAt", _iso(job.last_run_at),
        "progress", _number(job.progress),
        "failReason", str_or_null(truncate_reason(job.fail_reason)),
        "failCount", str_or_null(job.fail_count), "failedAt", _iso(job.failed_at),
        "lastFinishedAt", _iso(job.last_finished_at), "lastModifiedBy", str_or_null(by),
    ]


def tagged(value: Any) -> Any:
    """JSON with its kinds spelled out for the Lua side (cjson reads ``{}`` and ``[]`` alike)."""
    if isinstance(value, Mapping):
        return {"o": {str(key): tagged(item) for key, item in value.items()}}
    if isinstance(value, list | tuple):
        return {"a": [tagged(item) for item in value]}
    return {"s": value}


def _unique_text(field: str, value: Any) -> str | None:
    """The stored string a non-data unique key must equal; ``None`` when nothing can match."""
    if value is None:
        return NULL
    if field == "priority":
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return str(int(value)) if numeric and float(value).is_integer() else None
    if field == "disabled":
        return _flag(value) if isinstance(value, bool) else None
    if field == "repeat_interval" and isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and not (field == "repeat_interval" and _DIGITS.match(value)):
        return value
    return None


def unique_options(job: JobParameters[Any]) -> dict[str, Any]:
    keys: list[dict[str, Any]] = []
    never = False
    for key, value in (job.unique or {}).items():
        parts = key.split(".")
        if parts[0] == "data":
            keys.append({"path": parts[1:], "value": tagged(value)})
        elif (stored := _unique_text(key, value)) is None:
            never = True
        else:
            keys.append({"field": CAMEL_NAMES[key], "text": stored})
    options: dict[str, Any] = {"keys": keys, "never": never, "insertOnly": base.is_insert_only(job)}
    debounce = job.unique_opts.debounce if job.unique_opts else None
    if debounce is not None:
        options["debounce"] = {"delay": debounce.delay, "strategy": debounce.strategy}
        if debounce.max_wait is not None:
            options["debounce"]["maxWait"] = debounce.max_wait
    return options


# -- decoding ---------------------------------------------------------------------------------


def job_from_values(values: list[Any]) -> JobParameters[Any]:
    """A job from the values of ``JOB_FIELDS``, in order (what the scripts return), as text
    (the repository's script calls reply so)."""
    return job_from_hash(dict(zip(JOB_FIELDS, values, strict=True)))


def inserted(job: JobParameters[Any], job_id: str, data: str, by: str | None) -> JobParameters[Any]:
    """What a plain insert stored, without reading it back: the non-processor fields as sent,
    at the precision and in the form the store keeps them."""
    return inserted_all([job], [job_id], [data], by)[0]


def inserted_all(
    jobs: Sequence[JobParameters[Any]], ids: Sequence[str], data: Sequence[str],
    by: str | None,
) -> list[JobParameters[Any]]:
    """:func:`inserted` of every job of a batch (``base.inserted_all``), in order."""
    stored = base.inserted_all(jobs, ids, data, by)  # new records: set, not evolved (slower)
    for record in stored:
        if record.repeat_interval is not None:
            record.repeat_interval = _interval(str(record.repeat_interval))
    return stored


#: The stored forms of an absent value.
_ABSENT = frozenset({NULL, ""})


def _present(fields: Mapping[str, str | None]) -> dict[str, str]:
    """The fields that hold a value (not missing, ``'null'`` or empty), read once per job
    rather than checked field by field."""
    return {key: value for key, value in fields.items()
            if value is not None and value not in _ABSENT}


def _date(present: Mapping[str, str], key: str) -> datetime | None:
    value = present.get(key)
    try:
        return None if value is None else parse_datetime(value)
    except ValueError:
        log.warning("unreadable %s %r in Redis job %s", key, value, present.get("id"))
        return None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _locked_at(fields: Mapping[str, str | None], present: Mapping[str, str]) -> datetime | None:
    """``lockedAtMs``, the lock field; the ISO ``lockedAt`` only of a hash that has no
    ``lockedAtMs`` field at all (written before it existed, not healed yet)."""
    if fields.get("lockedAtMs") is None:
        return _date(present, "lockedAt")
    millis = _int(present.get("lockedAtMs"))
    return None if millis is None else EPOCH + timedelta(milliseconds=millis)


def _data(fields: Mapping[str, str | None]) -> Any:
    if fields.get("noData") == "true" and fields.get("data") == NO_DATA:
        return None
    text = fields.get("data") or "{}"
    try:
        return json.loads(text)
    except ValueError:
        log.warning("job %s has data that is not JSON; handing it over as text", fields.get("id"))
        return text


def _interval(value: str | None) -> str | int | None:
    return int(value) if value is not None and _DIGITS.match(value) else value


def _progress(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def job_from_hash(
    fields: Mapping[str, str | None], job_id: str | None = None
) -> JobParameters[Any]:
    present = _present(fields)
    value = present.get
    skip_days = value("skipDays")
    return JobParameters(
        id=JobId(fields.get("id") or job_id or ""),
        name=fields.get("name") or "",
        priority=_int(fields.get("priority")) or 0,
        next_run_at=_date(present, "nextRunAt"),
        type="single" if fields.get("type") == "single" else "normal",
        locked_at=_locked_at(fields, present),
        last_finished_at=_date(present, "lastFinishedAt"),
        failed_at=_date(present, "failedAt"),
        fail_count=_int(value("failCount")),
        fail_reason=value("failReason"),
        repeat_timezone=value("repeatTimezone"),
        last_run_at=_date(present, "lastRunAt"),
        repeat_interval=_interval(value("repeatInterval")),
        data=_data(fields),
        repeat_at=value("repeatAt"),
        disabled=fields.get("disabled") == "true",
        progress=_progress(value("progress")),
        debounce_started_at=_date(present, "debounceStartedAt"),
        last_modified_by=value("lastModifiedBy"),
        fork=fields.get("fork") == "true",
        start_date=_date(present, "startDate"),
        end_date=_date(present, "endDate"),
        skip_days=None if skip_days is None else json.loads(skip_days),
    )


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
