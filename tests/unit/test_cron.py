"""agenda_decl.timing's cron: syntax, intervals, next fire times, time zones, the DST table
on real zone data, and properties over random instants."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from agenda_decl.errors import (
    InvalidDateError,
    InvalidIntervalError,
    InvalidTimezoneError,
)
from agenda_decl.timing import (
    is_cron,
    next_cron_time,
    next_time_of_day,
    validate_interval,
)


def utc(text: str) -> datetime:
    """A fixed aware UTC instant from ISO text ("2026-03-08T07:00Z")."""
    return datetime.fromisoformat(text).astimezone(UTC)


NOW = utc("2026-02-08T12:00:00.123Z")


# ---------------------------------------------------------------------------------------------
# cron syntax and intervals


@pytest.mark.parametrize(
    "expr",
    [
        "0 6 * * *",
        "*/15 * * * *",
        "*/10 * * * * *",
        "0 0 6 * * *",
        "0 9 * * mon-fri",
        "0 9 * * 7",
        "0 0 L * *",
        "@daily",
        "@hourly",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@DAILY",
    ],
)
def test_is_cron_accepts(expr: str) -> None:
    assert is_cron(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "5 minutes",
        "1 hour and 30 minutes",  # five words, but not cron
        "0 6 * *",
        "* * * * * * *",
        "61 * * * *",
        "0 6 31 2 *",  # valid syntax that never fires
        "@reboot",
        "@midnight",
        "H * * * *",
        "R * * * *",
        "",
    ],
)
def test_is_cron_rejects(expr: str) -> None:
    assert not is_cron(expr)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("5 minutes", "5 minutes"),
        ("0 6 * * *", "0 6 * * *"),
        ("*/10 * * * * *", "*/10 * * * * *"),
        ("@daily", "@daily"),
        (300_000, 300_000),
        (1.5, 2),
        (timedelta(minutes=5), 300_000),
        ("5000", 5000),  # stored as a number so that Agenda (Node) can read it too
        ("", ""),  # as Agenda: an empty interval turns a job into a one-off
    ],
)
def test_validate_interval(value: Any, stored: str | int) -> None:
    assert validate_interval(value) == stored


@pytest.mark.parametrize("value", ["every blue moon", "61 * * * *", 0, "0 minutes", -5, None])
def test_validate_interval_rejects_with_value_and_field(value: Any) -> None:
    with pytest.raises(InvalidIntervalError) as caught:
        validate_interval(value, field="every")
    assert repr(value) in str(caught.value)
    assert "every" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# next_cron_time: syntax, aliases, zones


def fire_times(expr: str, after: datetime, count: int, zone: str | None = None) -> list[datetime]:
    times = []
    for _ in range(count):
        after = next_cron_time(expr, after, zone)
        times.append(after)
    return times


def test_five_field_cron_in_utc() -> None:
    assert fire_times("0 6 * * *", utc("2026-02-08T12:00Z"), 2) == [
        utc("2026-02-09T06:00Z"),
        utc("2026-02-10T06:00Z"),
    ]


def test_next_cron_time_is_strictly_after_a_tick() -> None:
    assert next_cron_time("0 6 * * *", utc("2026-02-09T06:00Z")) == utc("2026-02-10T06:00Z")
    assert next_cron_time("0 6 * * *", utc("2026-02-09T05:59:59.999Z")) == utc("2026-02-09T06:00Z")


def test_six_field_cron_has_seconds_first() -> None:
    assert fire_times("*/10 * * * * *", utc("2026-02-08T12:00:03.5Z"), 3) == [
        utc("2026-02-08T12:00:10Z"),
        utc("2026-02-08T12:00:20Z"),
        utc("2026-02-08T12:00:30Z"),
    ]
    assert next_cron_time("30 0 6 * * *", utc("2026-02-08T12:00Z")) == utc("2026-02-09T06:00:30Z")
    assert next_cron_time("* * * * * *", utc("2026-02-08T12:00:00.400Z")) == utc(
        "2026-02-08T12:00:01Z"
    )


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", "2026-02-08T13:00Z"),
        ("@daily", "2026-02-09T00:00Z"),
        ("@weekly", "2026-02-15T00:00Z"),  # Sunday
        ("@monthly", "2026-03-01T00:00Z"),
        ("@yearly", "2027-01-01T00:00Z"),
        ("@annually", "2027-01-01T00:00Z"),
    ],
)
def test_cron_aliases(alias: str, expected: str) -> None:
    assert next_cron_time(alias, NOW) == utc(expected)


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        (None, "2026-01-10T12:00Z", "2026-01-11T06:00Z"),
        ("UTC", "2026-01-10T12:00Z", "2026-01-11T06:00Z"),
        ("America/New_York", "2026-01-10T12:00Z", "2026-01-11T11:00Z"),  # EST
        ("America/New_York", "2026-07-10T12:00Z", "2026-07-11T10:00Z"),  # EDT
        ("Europe/Berlin", "2026-01-10T12:00Z", "2026-01-11T05:00Z"),
        ("Asia/Kolkata", "2026-01-10T12:00Z", "2026-01-11T00:30Z"),
        ("Australia/Lord_Howe", "2026-01-10T12:00Z", "2026-01-10T19:00Z"),  # +11 in January
    ],
)
def test_cron_is_evaluated_in_the_zone(zone: str | None, after: str, expected: str) -> None:
    assert next_cron_time("0 6 * * *", utc(after), zone) == utc(expected)


def test_results_are_utc_ms() -> None:
    result = next_cron_time("0 6 * * *", utc("2026-01-10T12:00Z"), "America/New_York")
    assert result.tzinfo is UTC
    assert result.microsecond % 1000 == 0


@pytest.mark.parametrize("expr", ["every blue moon", "61 * * * *", "0 6 31 2 *", "@reboot"])
def test_next_cron_time_rejects_bad_expressions(expr: str) -> None:
    with pytest.raises(InvalidIntervalError) as caught:
        next_cron_time(expr, NOW)
    assert repr(expr) in str(caught.value)


def test_next_cron_time_rejects_naive_instants_and_unknown_zones() -> None:
    with pytest.raises(InvalidDateError, match="naive datetime"):
        next_cron_time("0 6 * * *", datetime(2026, 1, 1))
    with pytest.raises(InvalidTimezoneError, match="Mars/Base"):
        next_cron_time("0 6 * * *", NOW, "Mars/Base")


# ---------------------------------------------------------------------------------------------
# the DST table (real zone data)
#
# 2026 changes: New York 03-08 02:00 EST->03:00 EDT and 11-01 02:00 EDT->01:00 EST; Berlin
# 03-29 02:00->03:00 and 10-25 03:00->02:00; Dublin (negative DST in tzdata) 03-29 01:00->02:00
# and 10-25 02:00->01:00; Lord Howe (30-minute shift) 04-05 02:00->01:30 and 10-04 02:00->02:30.
# Sao Paulo 2018-11-04 00:00->01:00 (the change at midnight); Apia 2011-12-30 skipped entirely.

DST_TABLE = [
    # spring: a skipped fixed time fires once, at the first valid instant after the gap
    (
        "America/New_York",
        "30 2 * * *",
        "2026-03-07T12:00Z",
        ["2026-03-08T07:00Z", "2026-03-09T06:30Z"],
    ),
    (
        "America/New_York",
        "0 2 * * *",
        "2026-03-07T12:00Z",
        ["2026-03-08T07:00Z", "2026-03-09T06:00Z"],
    ),
    (
        "America/New_York",
        "* 2 * * *",
        "2026-03-08T06:58Z",
        ["2026-03-08T07:00Z", "2026-03-09T06:00Z"],
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-28T12:00Z",
        ["2026-03-29T01:00Z", "2026-03-30T00:30Z"],
    ),
    (
        "Europe/Dublin",
        "30 1 * * *",
        "2026-03-28T12:00Z",
        ["2026-03-29T01:00Z", "2026-03-30T00:30Z"],
    ),
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-02T16:00Z",
        ["2026-10-03T15:30Z", "2026-10-04T15:15Z"],
    ),
    (
        "America/Sao_Paulo",
        "0 0 * * *",
        "2018-11-02T12:00Z",
        ["2018-11-03T03:00Z", "2018-11-04T03:00Z", "2018-11-05T02:00Z"],
    ),
    (
        "Pacific/Apia",
        "0 9 * * *",
        "2011-12-29T12:00Z",
        ["2011-12-29T19:00Z", "2011-12-30T10:00Z", "2011-12-30T19:00Z"],
    ),
    # autumn: a repeated fixed time fires once, at its first occurrence (fold=0)
    (
        "America/New_York",
        "30 1 * * *",
        "2026-10-31T12:00Z",
        ["2026-11-01T05:30Z", "2026-11-02T06:30Z"],
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-24T12:00Z",
        ["2026-10-25T00:30Z", "2026-10-26T01:30Z"],
    ),
    (
        "Europe/Dublin",
        "30 1 * * *",
        "2026-10-24T12:00Z",
        ["2026-10-25T00:30Z", "2026-10-26T01:30Z"],
    ),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04T00:00Z",
        ["2026-04-04T14:45Z", "2026-04-05T15:15Z"],
    ),
    (
        "America/New_York",
        "*/10 30 1 * * *",
        "2026-11-01T05:29Z",
        ["2026-11-01T05:30Z", "2026-11-01T05:30:10Z"],
    ),
    # wildcard-hour: both folds fire; a skipped hour has no catch-up run
    (
        "America/New_York",
        "0 * * * *",
        "2026-11-01T03:30Z",
        ["2026-11-01T04:00Z", "2026-11-01T05:00Z", "2026-11-01T06:00Z", "2026-11-01T07:00Z"],
    ),
    (
        "America/New_York",
        "5 * * * *",
        "2026-03-08T05:00Z",
        ["2026-03-08T05:05Z", "2026-03-08T06:05Z", "2026-03-08T07:05Z"],
    ),
    (
        "Europe/Berlin",
        "@hourly",
        "2026-10-24T23:30Z",
        ["2026-10-25T00:00Z", "2026-10-25T01:00Z", "2026-10-25T02:00Z"],
    ),
    # no DST at all
    ("Asia/Kolkata", "30 2 * * *", "2026-03-07T12:00Z", ["2026-03-07T21:00Z", "2026-03-08T21:00Z"]),
    ("UTC", "30 2 * * *", "2026-03-07T12:00Z", ["2026-03-08T02:30Z", "2026-03-09T02:30Z"]),
]


@pytest.mark.parametrize(("zone", "expr", "after", "expected"), DST_TABLE)
def test_dst_table(zone: str, expr: str, after: str, expected: list[str]) -> None:
    assert fire_times(expr, utc(after), len(expected), zone) == [utc(e) for e in expected]


def test_autumn_fixed_time_does_not_fire_again_in_the_second_fold() -> None:
    # after the 01:30 EDT run, 01:30 EST (one real hour later) is not another run
    after_first_run = utc("2026-11-01T05:30:00.250Z")
    assert next_cron_time("30 1 * * *", after_first_run, "America/New_York") == utc(
        "2026-11-02T06:30Z"
    )
    inside_second_fold = utc("2026-11-01T06:10Z")  # 01:10 EST
    assert next_cron_time("30 1 * * *", inside_second_fold, "America/New_York") == utc(
        "2026-11-02T06:30Z"
    )


def test_wildcard_search_from_the_first_fold_finds_the_second() -> None:
    # 01:50 EDT: the next "0 * * * *" tick is 01:00 EST, whose wall time is earlier
    assert next_cron_time("0 * * * *", utc("2026-11-01T05:50Z"), "America/New_York") == utc(
        "2026-11-01T06:00Z"
    )


@pytest.mark.parametrize(
    ("repeat_at", "after", "expected"),
    [
        ("2:30am", "2026-03-07T12:00Z", "2026-03-08T07:00Z"),  # skipped: 03:00 EDT
        ("1:30am", "2026-10-31T12:00Z", "2026-11-01T05:30Z"),  # repeated: first one
        ("1:30am", "2026-11-01T05:30Z", "2026-11-02T06:30Z"),  # and only once
    ],
)
def test_repeat_at_follows_the_same_dst_rule(repeat_at: str, after: str, expected: str) -> None:
    assert next_time_of_day(repeat_at, utc(after), "America/New_York") == utc(expected)


CHANGES = [
    ("America/New_York", "2026-03-08T07:00Z"),
    ("America/New_York", "2026-11-01T06:00Z"),
    ("Europe/Berlin", "2026-03-29T01:00Z"),
    ("Europe/Berlin", "2026-10-25T01:00Z"),
    ("Europe/Dublin", "2026-03-29T01:00Z"),
    ("Europe/Dublin", "2026-10-25T01:00Z"),
    ("Australia/Lord_Howe", "2026-04-04T15:00Z"),
    ("Australia/Lord_Howe", "2026-10-03T15:30Z"),
]


def matching_minutes(zone: str, start: datetime, end: datetime, step: int) -> list[datetime]:
    """Brute force: every real minute in (start, end] whose wall minute is a multiple of step."""
    found, moment = [], start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while moment <= end:
        if moment.astimezone(ZoneInfo(zone)).minute % step == 0:
            found.append(moment)
        moment += timedelta(minutes=1)
    return found


@pytest.mark.parametrize(("zone", "change"), CHANGES)
@pytest.mark.parametrize(
    ("expr", "step"), [("*/15 * * * *", 15), ("*/20 * * * *", 20), ("0 * * * *", 60)]
)
def test_wildcard_crons_fire_at_every_real_matching_instant(
    zone: str, change: str, expr: str, step: int
) -> None:
    # strictly increasing, no duplicate, and nothing missing beyond what the clock skipped
    start, end = utc(change) - timedelta(hours=3), utc(change) + timedelta(hours=3)
    expected = matching_minutes(zone, start, end, step)
    fired = fire_times(expr, start, len(expected), zone)
    assert fired == expected
    assert all(a < b for a, b in itertools.pairwise(fired))


# ---------------------------------------------------------------------------------------------
# property: strictly after, strictly increasing, and a real tick


PROPERTY_ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Europe/Dublin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Chatham",
]
PROPERTY_EXPRS = [
    "*/15 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "30 1 * * *",
    "0 0 * * *",
    "15 2 * * 0",
    "*/10 * * * * *",
    "0 30 1 * * *",
    "0 9 1 * *",
]


def is_change_instant(moment: datetime, zone: ZoneInfo) -> bool:
    before = (moment - timedelta(seconds=1)).astimezone(zone).utcoffset()
    return before != moment.astimezone(zone).utcoffset()


ANY_INSTANT = st.tuples(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
    st.sampled_from(PROPERTY_ZONES),
)
# uniform instants seldom land near a change, so half the examples are drawn around one
NEAR_A_CHANGE = st.builds(
    lambda change, ms: (utc(change[1]) + timedelta(milliseconds=ms), change[0]),
    st.sampled_from(CHANGES),
    st.integers(min_value=-3 * 3_600_000, max_value=3 * 3_600_000),
)
INSTANT_IN_ZONE = st.one_of(ANY_INSTANT, NEAR_A_CHANGE)


@settings(max_examples=300, deadline=None)
@given(case=INSTANT_IN_ZONE, expr=st.sampled_from(PROPERTY_EXPRS))
def test_next_cron_time_properties(case: tuple[datetime, str], expr: str) -> None:
    after, zone = case
    first = next_cron_time(expr, after, zone)
    second = next_cron_time(expr, first, zone)
    assert after < first < second
    assert first.tzinfo is UTC
    assert first.microsecond % 1000 == 0
    fields = expr.split()
    for moment in (first, second):  # each is a tick of the wall clock, or the end of a gap
        if is_change_instant(moment, ZoneInfo(zone)):
            continue
        wall = moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        assert croniter.match(expr, wall, second_at_beginning=len(fields) == 6)
        if not fields[-4].startswith("*"):  # a fixed hour fires at the first occurrence only
            assert wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC) == moment


@settings(max_examples=100, deadline=None)
@given(case=INSTANT_IN_ZONE, step=st.sampled_from([15, 30, 60]))
def test_wildcard_cron_returns_the_earliest_matching_instant(
    case: tuple[datetime, str], step: int
) -> None:
    after, zone = case
    expr = "0 * * * *" if step == 60 else f"*/{step} * * * *"
    result = next_cron_time(expr, after, zone)
    assert result == matching_minutes(zone, after, after + timedelta(hours=3), step)[0]
