"""Cron expressions and clock times in IANA time zones: when a cron expression or a daily
time of day (``repeat_at``) next fires, by one DST rule. :mod:`agenda_decl.timing` re-exports
the public functions; this module imports nothing of it.

Cron
----
5 fields (minute first) or 6 fields with **seconds first** (cron-parser's convention, as in
Agenda), or one of ``@yearly @annually @monthly @weekly @daily @hourly``. Fields are matched
against the wall clock of the IANA zone (UTC when none is given).

DST rule (cron expressions, ``repeat_at`` times and skip-day stepping all follow it)
-------------------------------------------------------------------------------------
An expression is *wildcard-hour* when its hour field starts with ``*`` (``*/15 * * * *``,
``0 * * * *``, ``@hourly``); every other expression is *fixed-hour* (``30 1 * * *``,
``0 9 * * 1-5``, ``@daily``, every ``repeat_at`` time).

1. Autumn, a wall time that occurs twice: a fixed-hour expression fires ONCE, at the first
   occurrence (fold=0). A wildcard-hour expression fires at both, since each is a distinct real
   instant (``0 * * * *`` in America/New_York on 2026-11-01 fires at 01:00 EDT and 01:00 EST).
2. Spring, a wall time skipped by the change: a fixed-hour expression fires once, at the first
   valid instant after the gap (``30 2 * * *`` in America/New_York on 2026-03-08 fires at
   03:00 EDT = 07:00Z); several skipped times of one gap collapse into that one run. It never
   skips the day and never jumps ahead. A wildcard-hour expression has no catch-up run: it goes
   on with the new wall clock (``5 * * * *`` fires at 01:05 EST, then 03:05 EDT, one real hour
   later), so it loses no day either.
3. The result is always strictly after the reference instant, so ``next(next(t)) > next(t)``;
   the search is bounded and works for 30-minute shifts (Australia/Lord_Howe).

Stepping a skipped weekday forward keeps the wall time and resolves it by the same rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from agenda_decl._clock import truncate_ms
from agenda_decl.errors import InvalidDateError, InvalidIntervalError, InvalidTimezoneError

_CRON_ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# croniter's non-standard H (hash) and R (random) fields are not cron-parser syntax and would
# make a schedule non-deterministic; month/day names such as "mar" or "fri" still pass.
_HASH_OR_RANDOM_RE = re.compile(r"(?<![a-z])[hr](?![a-z])")
_MAX_SCAN_STEPS = 200_000
_TIME_OF_DAY_RE = re.compile(
    r"(?:at\s+)?(?P<h>\d{1,2})(?::(?P<m>\d{2}))?(?::(?P<s>\d{2}))?\s*(?P<half>[ap])?(?:\.?m\.?)?"
)


# ---------------------------------------------------------------------------------------------
# time zones


def get_zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name``; UTC when None. An unknown name raises InvalidTimezoneError."""
    if name is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as error:
        raise InvalidTimezoneError(
            f"unknown time zone: {name!r} (expected an IANA name such as 'Europe/Berlin')"
        ) from error


def as_utc(value: datetime, field: str) -> datetime:
    """``value`` as UTC at ms precision; a naive datetime is an error, not a guess."""
    if not isinstance(value, datetime):
        raise InvalidDateError(f"invalid date for {field}: {value!r} (expected a datetime)")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidDateError(
            f"invalid date for {field}: naive datetime {value!r} has no time zone; "
            "give a timezone (e.g. datetime(..., tzinfo=UTC))"
        )
    return truncate_ms(value.astimezone(UTC))


# ---------------------------------------------------------------------------------------------
# cron


class CronSpec(NamedTuple):
    """A validated cron expression in croniter's spelling."""

    source: str
    expression: str
    seconds_first: bool
    wildcard_hour: bool


def cron_spec(expr: str) -> CronSpec:
    """Validate ``expr``; raise InvalidIntervalError naming it."""
    if not isinstance(expr, str):
        raise _cron_error(expr, "expected a string")
    return _cached_cron_spec(expr)


@lru_cache(maxsize=1024)  # the scheduler recomputes the same few expressions on every run
def _cached_cron_spec(expr: str) -> CronSpec:
    text = expr.strip().lower()
    text = _CRON_ALIASES.get(text, text)
    fields = text.split()
    if len(fields) not in (5, 6) or _HASH_OR_RANDOM_RE.search(text):
        raise _cron_error(expr, "expected 5 fields, 6 with seconds first, or an @alias")
    spec = CronSpec(expr, " ".join(fields), len(fields) == 6, fields[-4].startswith("*"))
    try:  # a valid expression that can never fire (Feb 30) is as useless as a typo
        _walls(spec, datetime(2000, 1, 1)).get_next(datetime)
    # croniter's own errors are ValueErrors (it exports their base only from 4.0 on).
    except (ValueError, KeyError, TypeError, OverflowError) as error:
        raise _cron_error(expr, str(error) or type(error).__name__) from error
    return spec


def _cron_error(expr: object, reason: str) -> InvalidIntervalError:
    return InvalidIntervalError(f"invalid cron expression {expr!r}: {reason}")


def is_cron(expr: str) -> bool:
    """True for a valid 5-field, 6-field (seconds first) or @alias cron expression."""
    try:
        cron_spec(expr)
    except InvalidIntervalError:
        return False
    return True


def _walls(spec: CronSpec, start: datetime) -> croniter[datetime]:
    """Matching naive wall times strictly after the naive ``start`` (pure calendar arithmetic:
    croniter treats naive datetimes as a clock without DST)."""
    return croniter(
        spec.expression, start, ret_type=datetime, second_at_beginning=spec.seconds_first
    )


def next_cron_time(expr: str, after: datetime, timezone: str | None = None) -> datetime:
    """The first fire time of ``expr`` strictly after ``after``, evaluated in ``timezone``
    (UTC when None), following the module's DST rule."""
    spec = cron_spec(expr)
    return next_match(spec, get_zone(timezone), as_utc(after, "after"))


def next_match(spec: CronSpec, zone: ZoneInfo, after: datetime) -> datetime:
    here = after.astimezone(zone)
    found = _scan(spec, zone, after, here.replace(tzinfo=None))
    # A backward change between `after` and `found` repeats wall times earlier than the wall
    # time of `after`; a wildcard-hour expression may fire on those repeats, so look again
    # from that far back. Fixed-hour expressions use first occurrences only, which never repeat.
    back = _offset(here) - _offset(found.astimezone(zone))
    if spec.wildcard_hour and back > timedelta(0):
        found = _scan(spec, zone, after, here.replace(tzinfo=None) - back)
    return found


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    assert offset is not None  # always aware here
    return offset


def _scan(spec: CronSpec, zone: ZoneInfo, after: datetime, start: datetime) -> datetime:
    """The earliest instant > ``after`` among the wall matches from ``start`` on.

    Walls come in calendar order; the first instant of each wall never decreases with it, so
    once that first instant reaches the best found, nothing later can beat it.
    """
    walls = _wall_times(spec, start)
    best: datetime | None = None
    for _ in range(_MAX_SCAN_STEPS):
        wall = next(walls)
        instants = _instants_for(spec, wall, zone)
        if not instants:  # a skipped wall of a wildcard-hour expression: resume after the gap
            walls = _wall_times(spec, _wall_after_gap(wall, zone) - timedelta(microseconds=1))
            continue
        if best is not None and instants[0] >= best:
            return best
        later = [t for t in instants if t > after]
        if later and (best is None or later[0] < best):
            best = later[0]
    raise InvalidIntervalError(f"no fire time found for cron expression {spec.source!r}")


def _wall_times(spec: CronSpec, start: datetime) -> Iterator[datetime]:
    """:func:`_walls` as an iterator whose croniter failures (no date within 50 years, year
    overflow) become InvalidIntervalError."""
    walls = _walls(spec, start)
    while True:
        try:
            yield walls.get_next(datetime)
        except (OverflowError, ValueError) as error:
            raise _cron_error(spec.source, f"no next fire time ({error})") from error


def _instants_for(spec: CronSpec, wall: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """The instants at which ``spec`` fires for the naive ``wall``, earliest first (DST rule)."""
    real = _real_instants(wall, zone)
    if spec.wildcard_hour:
        return real
    return real[:1] if real else (_gap_end(wall, zone),)


def _real_instants(wall: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """The UTC instants whose wall clock in ``zone`` reads ``wall``: none (a spring gap), one,
    or two (the autumn repeat), earliest first."""
    candidates = {wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
    shown = (t for t in candidates if t.astimezone(zone).replace(tzinfo=None) == wall)
    return tuple(sorted(shown))


def first_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The fold=0 instant of ``wall``, or the end of the gap when the wall time is skipped."""
    real = _real_instants(wall, zone)
    return real[0] if real else _gap_end(wall, zone)


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clock jumps over the skipped ``wall`` (the first valid instant after it).

    The change lies between the instants ``wall`` would have with the offsets after (fold=1)
    and before (fold=0) it; bisect on whole seconds, which is how tzdata places changes.
    """
    low = math.floor(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = math.ceil(wall.replace(tzinfo=zone, fold=0).timestamp())
    offset_after = _offset(datetime.fromtimestamp(high, zone))
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(datetime.fromtimestamp(middle, zone)) == offset_after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _wall_after_gap(wall: datetime, zone: ZoneInfo) -> datetime:
    return _gap_end(wall, zone).astimezone(zone).replace(tzinfo=None)


# ---------------------------------------------------------------------------------------------
# time of day (repeat_at)


def parse_time_of_day(text: str) -> tuple[int, int, int] | None:
    """(hour, minute, second) of "3:30pm", "15:30", "3pm", "noon", "midnight"; else None.

    A bare hour ("15") is rejected as ambiguous; hours with am/pm must be 1-12.
    """
    normalized = text.strip().lower()
    if normalized in ("noon", "midnight"):
        return (12, 0, 0) if normalized == "noon" else (0, 0, 0)
    match = _TIME_OF_DAY_RE.fullmatch(normalized)
    if match is None or (match["half"] is None and match["m"] is None):
        return None
    hour, minute, second = (int(match[k] or 0) for k in ("h", "m", "s"))
    if match["half"] is not None:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["half"] == "p" else 0)
    return (hour, minute, second) if hour < 24 and minute < 60 and second < 60 else None


def next_time_of_day(repeat_at: str, after: datetime, timezone: str | None = None) -> datetime:
    """The next occurrence of the clock time ``repeat_at`` strictly after ``after`` in
    ``timezone`` (UTC when None), with the DST rule of a fixed-hour cron expression."""
    return next_cron_time(time_of_day_cron(repeat_at), after, timezone)


def time_of_day_cron(repeat_at: str) -> str:
    """A daily 6-field cron expression (seconds first) for the clock time ``repeat_at``."""
    parts = parse_time_of_day(repeat_at) if isinstance(repeat_at, str) else None
    if parts is None:
        raise InvalidIntervalError(
            f"failed to calculate repeat_at time due to invalid format: {repeat_at!r} "
            "(expected a time of day like '3:30pm', '15:30', '3pm', 'noon' or 'midnight')"
        )
    hour, minute, second = parts
    return f"{second} {minute} {hour} * * *"
