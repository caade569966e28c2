"""All time handling: durations, dates, priorities, cron, time zones and next-run computation
(cron expressions, times of day and the DST rule are in :mod:`agenda_decl._cron`; its public
functions are re-exported here).

Conventions
-----------
* A duration is an ``int`` of milliseconds everywhere. :func:`parse_duration` also reads a
  ``timedelta`` or human text ("5 minutes", "1 hour and 30 minutes", "one minute"); a bare
  numeric string such as ``"5000"`` is milliseconds too (Agenda rejects it).
* Every datetime returned is timezone-aware UTC truncated to milliseconds. Naive datetimes are
  rejected, never guessed.
* A missing time zone means UTC (Agenda uses the process zone, which differs per machine).
* Nothing unreadable turns into a silent default: bad input raises an error from
  :mod:`agenda_decl.errors` whose message names the value (and the field, where there is one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agenda_decl._clock import truncate_ms, utcnow
from agenda_decl._cron import (
    CronSpec,
    as_utc,
    cron_spec,
    first_instant,
    get_zone,
    is_cron,
    next_cron_time,
    next_match,
    next_time_of_day,
    parse_time_of_day,
    time_of_day_cron,
)
from agenda_decl._model import JobParameters
from agenda_decl.errors import (
    InvalidDateError,
    InvalidIntervalError,
    InvalidOptionError,
    InvalidTimezoneError,
)

__all__ = [
    "PRIORITY_NAMES",
    "apply_all_date_constraints",
    "apply_skip_days",
    "compute_next_run_at",
    "get_zone",
    "is_cron",
    "next_cron_time",
    "next_time_of_day",
    "parse_date",
    "parse_duration",
    "parse_priority",
    "should_skip_day",
    "to_timedelta",
    "validate_interval",
    "validate_skip_days",
]

_MS = timedelta(milliseconds=1)
_SECOND = 1000
_UNIT_MS: dict[str, int] = {
    "ms": 1, "msec": 1, "millisecond": 1,
    "sec": _SECOND, "second": _SECOND,
    "min": 60 * _SECOND, "minute": 60 * _SECOND,
    "hr": 3600 * _SECOND, "hour": 3600 * _SECOND,
    "day": 86_400 * _SECOND,
    "week": 7 * 86_400 * _SECOND,
    "month": 30 * 86_400 * _SECOND,  # human-interval's fixed month and year
    "year": 365 * 86_400 * _SECOND,
}  # fmt: skip
_SMALL_NUMBERS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_NUMBER_WORDS: dict[str, int] = {
    **{word: n for n, word in enumerate(_SMALL_NUMBERS)},
    **{word: 20 + 10 * n for n, word in enumerate(_TENS)},
}
_DECIMAL_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_DURATION_HINT = "expected milliseconds, a timedelta, or text like '5 minutes'"

PRIORITY_NAMES: dict[str, int] = {
    "lowest": -20, "low": -10, "normal": 0, "high": 10, "highest": 20,
}  # fmt: skip

_MAX_SKIPPED_OCCURRENCES = 1000
#: A run that starts at most this long before its scheduled tick consumed that tick (timers may
#: fire a little early); Agenda's computeFromInterval uses the same one second.
_EARLY_RUN_SLACK = timedelta(seconds=1)


# ---------------------------------------------------------------------------------------------
# durations

#: What every duration option accepts: milliseconds (``int`` or ``float``), a ``timedelta`` or
#: human text ("5 minutes"); :func:`parse_duration` turns it into milliseconds.
Duration = int | float | timedelta | str


def parse_duration(value: Duration, *, field: str = "duration") -> int:
    """Milliseconds from a number of ms, a ``timedelta`` or human text; never negative.

    Text is read like Agenda's human-interval, case-insensitively: ``"5 minutes"``,
    ``"1.5 minutes"``, ``"one minute"``, ``"twenty five seconds"``, ``"3 days and 4 hours"``,
    ``"500 ms"``. A bare numeric string (``"5000"``) is milliseconds. A month is 30 days and a
    year 365 days. Fractions of a millisecond are rounded.
    """
    if isinstance(value, bool):  # bool is an int subclass; True is no duration
        raise _duration_error(value, field)
    if isinstance(value, int | float):
        return _ms_from_number(value, value, field)
    if isinstance(value, timedelta):
        return _ms_from_number(value / timedelta(microseconds=1) / 1000, value, field)
    if isinstance(value, str):
        ms = _parse_human_interval(value)
        if ms is not None:
            return ms
    raise _duration_error(value, field)


def to_timedelta(value: Duration, *, field: str = "duration") -> timedelta:
    """:func:`parse_duration` as a ``timedelta``."""
    return timedelta(milliseconds=parse_duration(value, field=field))


def _duration_error(value: object, field: str, hint: str = _DURATION_HINT) -> InvalidIntervalError:
    return InvalidIntervalError(f"invalid duration for {field}: {value!r} ({hint})")


def _ms_from_number(ms: float, value: object, field: str) -> int:
    if not math.isfinite(ms) or ms < 0:
        raise _duration_error(value, field, "must be a finite number of milliseconds >= 0")
    return round(ms)


def _parse_human_interval(text: str) -> int | None:
    """The human-interval reading of ``text`` in ms, or None when any part is unreadable.

    Unlike human-interval, every word must be understood ("5 minutes foo" is rejected rather
    than read as 5 minutes) and upper case is accepted.
    """
    normalized = text.strip().lower()
    if _DECIMAL_RE.fullmatch(normalized):
        return round(float(normalized))
    tokens = _duration_tokens(normalized)
    total = 0.0
    quantity: list[str] = []
    for token in tokens:
        unit = _unit_ms(token)
        if unit is None:
            quantity.append(token)
            continue
        amount = _quantity(quantity)
        if amount is None:
            return None
        total, quantity = total + amount * unit, []
    return round(total) if tokens and not quantity else None


def _duration_tokens(text: str) -> list[str]:
    spaced = re.sub(r"(?<=[\d.])(?=[a-z])", " ", text)  # "5minutes" -> "5 minutes"
    spaced = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", spaced)  # "twenty-five"
    return [token for token in re.split(r"[\s,]+", spaced) if token and token != "and"]


def _unit_ms(token: str) -> int | None:
    if token in _UNIT_MS:
        return _UNIT_MS[token]
    if token.endswith("s") and token[:-1] in _UNIT_MS:
        return _UNIT_MS[token[:-1]]
    return None


def _quantity(words: list[str]) -> float | None:
    """A decimal, English number words, or 1 when absent ("minute" is one minute)."""
    if not words:
        return 1.0
    if len(words) == 1 and _DECIMAL_RE.fullmatch(words[0]):
        return float(words[0])
    return _number_from_words(words)


def _number_from_words(words: list[str]) -> float | None:
    if words in (["a"], ["an"]):
        return 1.0
    total = current = 0
    for word in words:
        if word in _NUMBER_WORDS:
            current += _NUMBER_WORDS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word == "thousand":
            total, current = total + max(current, 1) * 1000, 0
        else:
            return None
    return float(total + current)


# ---------------------------------------------------------------------------------------------
# time zones and dates


def parse_date(
    value: datetime | str, *, now: datetime | None = None, field: str = "date"
) -> datetime:
    """An aware datetime or date text as UTC at ms precision.

    Text may be ISO 8601 (with ``Z`` or an offset; naive ISO text and a date alone such as
    ``"2026-12-01"`` are read as UTC), ``"now"``, ``"today"``/``"tomorrow"``/``"yesterday"``
    (midnight UTC, optionally ``"tomorrow at 3pm"``), ``"in 5 minutes"``, ``"5 minutes from now"``
    or ``"5 minutes ago"``. Unreadable text raises InvalidDateError; unlike date.js it never
    falls back to now.
    """
    if not isinstance(value, str):
        return as_utc(value, field)
    reference = utcnow() if now is None else as_utc(now, "now")
    parsed = _parse_iso(value) or _parse_relative(value.strip().lower(), reference)
    if parsed is None:
        raise InvalidDateError(
            f"invalid date for {field}: {value!r} (expected an aware datetime, ISO 8601 text, "
            "or text like 'now', 'in 5 minutes', '5 minutes ago', 'tomorrow')"
        )
    return parsed


def _parse_iso(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:  # documented: ISO text without an offset is UTC
        parsed = parsed.replace(tzinfo=UTC)
    return truncate_ms(parsed.astimezone(UTC))


def _parse_relative(text: str, now: datetime) -> datetime | None:
    if text == "now":
        return now
    day_match = re.fullmatch(r"(today|tomorrow|yesterday)(?:\s+at\s+(.+))?", text)
    if day_match:
        return _day_at(day_match[1], day_match[2], now)
    for pattern, sign in ((r"in\s+(.+)", 1), (r"(.+?)\s+from\s+now", 1), (r"(.+?)\s+ago", -1)):
        match = re.fullmatch(pattern, text)
        ms = _parse_human_interval(match[1]) if match else None
        if ms is not None:
            return now + sign * timedelta(milliseconds=ms)
    return None


def _day_at(day: str, time_text: str | None, now: datetime) -> datetime | None:
    offset = {"today": 0, "tomorrow": 1, "yesterday": -1}[day]
    midnight = datetime.combine(now.date() + timedelta(days=offset), datetime.min.time(), UTC)
    if time_text is None:
        return midnight
    parts = parse_time_of_day(time_text)
    if parts is None:
        return None
    return midnight.replace(hour=parts[0], minute=parts[1], second=parts[2])


# ---------------------------------------------------------------------------------------------
# priorities


def parse_priority(value: int | str | None) -> int:
    """A priority number: None is 0, an int passes, names and numeric strings are read.

    Names (case-insensitive): lowest -20, low -10, normal 0, high 10, highest 20. Unlike
    Agenda, an unknown name raises InvalidOptionError instead of silently becoming 0.
    """
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in PRIORITY_NAMES:
            return PRIORITY_NAMES[text]
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    raise InvalidOptionError(
        f"invalid priority: {value!r} (expected an integer or one of {', '.join(PRIORITY_NAMES)})"
    )


# ---------------------------------------------------------------------------------------------
# intervals


def validate_interval(
    interval: int | float | timedelta | str, *, field: str = "interval"
) -> str | int:
    """What to store as ``repeat_interval``: int ms for numbers, timedeltas and numeric
    strings (so that Agenda can read it); readable text or a cron expression unchanged.

    ``""`` is returned unchanged: as in Agenda, an empty interval means "no repetition". A
    zero or negative interval is rejected (it would run the job in a tight loop).
    """
    if isinstance(interval, str) and not interval.strip():
        return interval
    if isinstance(interval, str) and not _DECIMAL_RE.fullmatch(interval.strip()):
        return _validate_interval_text(interval, field)
    ms = parse_duration(interval, field=field)
    if ms <= 0:
        raise InvalidIntervalError(f"invalid {field}: {interval!r} (must be more than 0 ms)")
    return ms


def _validate_interval_text(interval: str, field: str) -> str:
    ms = _parse_human_interval(interval)
    if ms is None and is_cron(interval):
        return interval
    if ms is None:
        raise InvalidIntervalError(
            f"invalid {field}: {interval!r} is neither a readable interval "
            "(like '5 minutes') nor a cron expression (like '0 6 * * *' or '*/10 * * * * *')"
        )
    if ms <= 0:
        raise InvalidIntervalError(f"invalid {field}: {interval!r} (must be more than 0 ms)")
    return interval


# ---------------------------------------------------------------------------------------------
# date constraints (skip days, start/end dates)


def validate_skip_days(days: Iterable[int]) -> list[int]:
    """Weekday numbers 0-6 (0 = Sunday), deduplicated and sorted."""
    try:
        values = list(days)
    except TypeError:
        raise InvalidOptionError(f"invalid skip days: {days!r} (expected a list of 0-6)") from None
    for day in values:
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            raise InvalidOptionError(
                f"Invalid skip day: {day!r}. Must be an integer 0-6 (0=Sunday, 6=Saturday)"
            )
    return sorted(set(values))


def should_skip_day(
    d: datetime, skip_days: Sequence[int] | None, timezone: str | None = None
) -> bool:
    """True when the weekday of ``d`` in ``timezone`` (UTC when None; 0 = Sunday) is listed."""
    if not skip_days:
        return False
    weekday = (as_utc(d, "date").astimezone(get_zone(timezone)).weekday() + 1) % 7
    return weekday in skip_days


def apply_skip_days(
    d: datetime, skip_days: Sequence[int] | None, timezone: str | None = None
) -> datetime | None:
    """``d``, or the same wall time on the first later day that is not skipped; None when
    every weekday is skipped."""
    moment = as_utc(d, "date")
    if not skip_days:
        return moment
    if len(set(skip_days)) >= 7:
        return None
    zone = get_zone(timezone)
    for _ in range(8):  # Agenda's bound; seven steps already cover a week
        if not should_skip_day(moment, skip_days, timezone):
            return moment
        wall = moment.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
        moment = truncate_ms(first_instant(wall, zone))
    return None


def apply_all_date_constraints(
    d: datetime,
    *,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    skip_days: Sequence[int] | None = None,
    timezone: str | None = None,
) -> datetime | None:
    """Agenda's applyAllDateConstraints: move up to ``start_date``, step over skipped days,
    then None when the result is after ``end_date``."""
    moment = as_utc(d, "date")
    if start_date is not None and moment < as_utc(start_date, "start_date"):
        moment = as_utc(start_date, "start_date")
    result = apply_skip_days(moment, skip_days, timezone)
    if result is not None and end_date is not None and result > as_utc(end_date, "end_date"):
        return None
    return result


# ---------------------------------------------------------------------------------------------
# next run


def compute_next_run_at(job: JobParameters[Any], now: datetime) -> datetime | None:
    """The next ``next_run_at`` of ``job`` after a run (or at creation), or None when it
    finishes (a one-off, or no allowed time is left).

    Raises InvalidIntervalError, whose message starts "failed to calculate", for an unreadable
    interval, repeat_at time or repeat_timezone (one error type for the caller to catch).
    """
    moment = as_utc(now, "now")
    try:
        if job.repeat_interval:
            return _next_from_interval(job, job.repeat_interval, moment)
        if job.repeat_at:
            spec = cron_spec(time_of_day_cron(job.repeat_at))
            step = _cron_step(spec, job.repeat_timezone)
            return _next_allowed(job, step, _tick_base(job, moment))
    except InvalidTimezoneError as error:
        raise InvalidIntervalError(
            f"failed to calculate next_run_at due to invalid repeat timezone "
            f"({job.repeat_timezone!r}): {error}"
        ) from error
    return None


def _next_from_interval(
    job: JobParameters[Any], interval: str | int, now: datetime
) -> datetime | None:
    ms = _interval_ms(interval)
    if ms is not None:  # human interval or ms: run now the first time, then start + interval
        base = now if job.last_run_at is None else as_utc(job.last_run_at, "last_run_at") + ms * _MS
        return apply_all_date_constraints(
            base,
            start_date=job.start_date,
            end_date=job.end_date,
            skip_days=job.skip_days,
            timezone=job.repeat_timezone,
        )
    try:
        spec = cron_spec(str(interval))  # only text reaches here
    except InvalidIntervalError as error:
        raise InvalidIntervalError(
            f"failed to calculate next_run_at due to invalid repeat interval ({interval!r}): "
            f"neither a readable interval nor a valid cron expression ({error})"
        ) from error
    return _next_allowed(job, _cron_step(spec, job.repeat_timezone), _tick_base(job, now))


def _interval_ms(interval: str | int) -> int | None:
    """Milliseconds of a numeric or human interval; None for other text (maybe cron)."""
    if isinstance(interval, str):
        return _parse_human_interval(interval)
    try:
        return parse_duration(interval, field="repeat_interval")
    except InvalidIntervalError as error:
        raise InvalidIntervalError(
            f"failed to calculate next_run_at due to invalid repeat interval ({interval!r}): "
            f"{error}"
        ) from error


def _tick_base(job: JobParameters[Any], now: datetime) -> datetime:
    """The instant after which the next cron/repeat_at tick is searched.

    A run that started up to a second before its scheduled tick (an early timer) has consumed
    that tick, so the search starts there; this is Agenda's "next <= previous nextRunAt" guard
    without its risk of returning the same tick again.
    """
    if job.last_run_at is None:
        return now
    last = as_utc(job.last_run_at, "last_run_at")
    previous = None if job.next_run_at is None else as_utc(job.next_run_at, "next_run_at")
    if previous is not None and previous - _EARLY_RUN_SLACK <= last < previous:
        return previous
    return last


_Step = Callable[[datetime], datetime]


def _cron_step(spec: CronSpec, timezone: str | None) -> _Step:
    zone = get_zone(timezone)
    return lambda after: next_match(spec, zone, after)


def _next_allowed(job: JobParameters[Any], step: _Step, base: datetime) -> datetime | None:
    """The first tick of ``step`` after ``base`` that respects the job's date constraints.

    Unlike Agenda, the result is always a real tick: a start date moves to the first tick at or
    after it, and a skipped day moves to the first tick of a later day, not to the same wall
    time (which a weekly or monthly expression would not fire at).
    """
    if job.skip_days and len(set(job.skip_days)) >= 7:
        return None
    start = None if job.start_date is None else as_utc(job.start_date, "start_date")
    end = None if job.end_date is None else as_utc(job.end_date, "end_date")
    zone = get_zone(job.repeat_timezone)
    tick = step(max(base, start - _MS) if start is not None else base)
    for _ in range(_MAX_SKIPPED_OCCURRENCES):  # bounds a tick that only falls on skipped days
        if end is not None and tick > end:
            return None
        if not should_skip_day(tick, job.skip_days, job.repeat_timezone):
            return tick
        tick = step(_end_of_local_day(tick, zone))
    return None


def _end_of_local_day(moment: datetime, zone: ZoneInfo) -> datetime:
    """The last millisecond of the calendar day of ``moment`` in ``zone``."""
    next_day: date = moment.astimezone(zone).date() + timedelta(days=1)
    return first_instant(datetime.combine(next_day, datetime.min.time()), zone) - _MS
