"""agenda_decl.timing: durations, dates, priorities, zones, time of day, date constraints and
next runs (cron itself is in test_cron.py).

Every instant is fixed; DST cases run on the real IANA data shipped with zoneinfo/tzdata.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agenda_decl._model import JobParameters
from agenda_decl.errors import (
    InvalidDateError,
    InvalidIntervalError,
    InvalidOptionError,
    InvalidTimezoneError,
)
from agenda_decl.timing import (
    apply_all_date_constraints,
    apply_skip_days,
    compute_next_run_at,
    get_zone,
    next_time_of_day,
    parse_date,
    parse_duration,
    parse_priority,
    should_skip_day,
    to_timedelta,
    validate_skip_days,
)


def utc(text: str) -> datetime:
    """A fixed aware UTC instant from ISO text ("2026-03-08T07:00Z")."""
    return datetime.fromisoformat(text).astimezone(UTC)


NOW = utc("2026-02-08T12:00:00.123Z")


def job(**fields: Any) -> JobParameters[Any]:
    return JobParameters(name="test-job", **fields)


# ---------------------------------------------------------------------------------------------
# durations


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        # reference 3.8
        ("3 minutes", 180_000),
        ("1.5 minutes", 90_000),
        ("one minute", 60_000),
        ("3 days and 4 hours", 273_600_000),
        # the brief's forms
        ("5 minutes", 300_000),
        ("1 hour and 30 minutes", 5_400_000),
        ("2 days", 172_800_000),
        ("twenty five seconds", 25_000),
        ("twenty-five seconds", 25_000),
        ("500 ms", 500),
        ("250 milliseconds", 250),
        ("1 millisecond", 1),
        ("2 weeks", 14 * 86_400_000),
        ("1 month", 30 * 86_400_000),
        ("1 year", 365 * 86_400_000),
        ("a minute", 60_000),
        ("minute", 60_000),
        ("5minutes", 300_000),
        ("1 hour, 2 minutes and 3 seconds", 3_723_000),
        ("0 seconds", 0),
        # upper case is accepted (human-interval rejects "5 Minutes")
        ("5 Minutes", 300_000),
        ("  2 HOURS  ", 7_200_000),
        # a bare numeric string is milliseconds
        ("5000", 5000),
        (" 60000 ", 60_000),
    ],
)
def test_parse_duration_reads_human_intervals(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (5000, 5000),
        (0, 0),
        (1.6, 2),
        (timedelta(minutes=5), 300_000),
        (timedelta(microseconds=1500), 2),
    ],
)
def test_parse_duration_reads_numbers_and_timedeltas(
    value: int | float | timedelta, ms: int
) -> None:
    assert parse_duration(value) == ms


@pytest.mark.parametrize(
    "value",
    [
        "fivee minutes",
        "0 6 * * *",
        "5 minutes foo",
        "every 5 minutes",
        "",
        "and",
        "-5 minutes",
        "5 fortnights",
        -1,
        -0.5,
        math.nan,
        math.inf,
        timedelta(seconds=-1),
        True,
        None,
        [5],
    ],
)
def test_parse_duration_rejects_with_value_and_field(value: Any) -> None:
    with pytest.raises(InvalidIntervalError) as caught:
        parse_duration(value, field="process_every")
    assert repr(value) in str(caught.value)
    assert "process_every" in str(caught.value)


def test_parse_duration_error_message_reads_well() -> None:
    with pytest.raises(InvalidIntervalError) as caught:
        parse_duration("fivee minutes", field="process_every")
    assert str(caught.value) == (
        "invalid duration for process_every: 'fivee minutes' "
        "(expected milliseconds, a timedelta, or text like '5 minutes')"
    )


def test_to_timedelta() -> None:
    assert to_timedelta("1 hour and 30 minutes") == timedelta(minutes=90)
    assert to_timedelta(1500) == timedelta(milliseconds=1500)
    with pytest.raises(InvalidIntervalError, match="lock_lifetime"):
        to_timedelta("soon", field="lock_lifetime")


# ---------------------------------------------------------------------------------------------
# zones, dates, priorities


def test_get_zone() -> None:
    assert get_zone(None) == ZoneInfo("UTC")
    assert get_zone("Europe/Berlin") == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "../../etc/passwd", "", "/abs"])
def test_get_zone_rejects_unknown_names(name: str) -> None:
    with pytest.raises(InvalidTimezoneError) as caught:
        get_zone(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", "2026-02-08T12:00:00.123Z"),
        ("NOW", "2026-02-08T12:00:00.123Z"),
        ("in 5 minutes", "2026-02-08T12:05:00.123Z"),
        ("5 minutes ago", "2026-02-08T11:55:00.123Z"),
        ("in 1 hour and 30 minutes", "2026-02-08T13:30:00.123Z"),
        ("2 hours from now", "2026-02-08T14:00:00.123Z"),
        ("tomorrow", "2026-02-09T00:00Z"),
        ("today", "2026-02-08T00:00Z"),
        ("yesterday", "2026-02-07T00:00Z"),
        ("tomorrow at 3:30pm", "2026-02-09T15:30Z"),
        ("2026-12-01", "2026-12-01T00:00Z"),
        ("2026-12-01T10:00:00Z", "2026-12-01T10:00Z"),
        ("2026-12-01T10:00:00+02:00", "2026-12-01T08:00Z"),
        ("2026-12-01T10:00:00.123456-05:00", "2026-12-01T15:00:00.123Z"),
        ("2026-12-01T10:00", "2026-12-01T10:00Z"),  # naive ISO text is UTC (documented)
        ("2026-12-01 10:00:00", "2026-12-01T10:00Z"),
    ],
)
def test_parse_date_reads_text(text: str, expected: str) -> None:
    assert parse_date(text, now=NOW) == utc(expected)


def test_parse_date_converts_aware_datetimes_to_utc_ms() -> None:
    berlin = datetime(2026, 7, 1, 12, 0, 0, 987_654, tzinfo=ZoneInfo("Europe/Berlin"))
    result = parse_date(berlin)
    assert result == utc("2026-07-01T10:00:00.987Z")
    assert result.tzinfo is UTC


def test_parse_date_rejects_a_naive_datetime() -> None:
    with pytest.raises(InvalidDateError) as caught:
        parse_date(datetime(2026, 1, 1, 12, 0), field="start_date")
    message = str(caught.value)
    assert "naive datetime" in message
    assert "give a timezone" in message
    assert "start_date" in message


@pytest.mark.parametrize(
    "value", ["next blue moon", "", "in five blorps", "2026-13-45", "tomorrow at 25:00", 1234]
)
def test_parse_date_never_falls_back_to_now(value: Any) -> None:
    # date.js answers "roughly now" for text it cannot read; we raise instead
    with pytest.raises(InvalidDateError) as caught:
        parse_date(value, now=NOW, field="when")
    assert repr(value) in str(caught.value)
    assert "when" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0),
        (7, 7),
        (-3, -3),
        ("lowest", -20),
        ("low", -10),
        ("normal", 0),
        ("high", 10),
        ("HIGHEST", 20),
        (" High ", 10),
        ("5", 5),
        ("-10", -10),
    ],
)
def test_parse_priority(value: int | str | None, expected: int) -> None:
    assert parse_priority(value) == expected


@pytest.mark.parametrize("value", ["urgent", "", "5.5", 1.5, True])
def test_parse_priority_rejects_unknown_values(value: Any) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        parse_priority(value)
    assert repr(value) in str(caught.value)
    assert "lowest, low, normal, high, highest" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# time of day


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3:30pm", "2026-02-08T15:30Z"),
        ("3:30 PM", "2026-02-08T15:30Z"),
        ("15:30", "2026-02-08T15:30Z"),
        ("3pm", "2026-02-08T15:00Z"),
        ("noon", "2026-02-09T12:00Z"),  # 12:00:00.123 has passed: tomorrow
        ("midnight", "2026-02-09T00:00Z"),
        ("12am", "2026-02-09T00:00Z"),
        ("12pm", "2026-02-09T12:00Z"),
        ("11:59:30", "2026-02-09T11:59:30Z"),
        ("at 3:30pm", "2026-02-08T15:30Z"),
    ],
)
def test_next_time_of_day(text: str, expected: str) -> None:
    assert next_time_of_day(text, NOW) == utc(expected)


def test_next_time_of_day_in_a_zone_and_strictly_after() -> None:
    assert next_time_of_day("3:30pm", NOW, "Europe/Berlin") == utc("2026-02-08T14:30Z")
    assert next_time_of_day("3:30pm", utc("2026-02-08T15:30Z")) == utc("2026-02-09T15:30Z")


@pytest.mark.parametrize("text", ["25:00", "13pm", "0am", "15", "half past three", "", "3:75pm"])
def test_next_time_of_day_rejects_bad_formats(text: str) -> None:
    with pytest.raises(InvalidIntervalError) as caught:
        next_time_of_day(text, NOW)
    assert str(caught.value).startswith(
        f"failed to calculate repeat_at time due to invalid format: {text!r}"
    )


# ---------------------------------------------------------------------------------------------
# date constraints (reference cases 129-133)

SATURDAY = utc("2024-01-13T10:00Z")
SUNDAY = utc("2024-01-14T10:00Z")
MONDAY = utc("2024-01-15T10:00Z")


def test_should_skip_day_case_129() -> None:
    assert not should_skip_day(MONDAY, [])
    assert not should_skip_day(MONDAY, None)
    assert should_skip_day(MONDAY, [1])
    assert should_skip_day(SUNDAY, [0])
    assert not should_skip_day(MONDAY, [0, 6])


def test_should_skip_day_uses_the_zone_case_130() -> None:
    late_sunday = utc("2024-01-14T20:00Z")
    assert should_skip_day(late_sunday, [0])
    assert not should_skip_day(late_sunday, [0], "Pacific/Auckland")
    assert should_skip_day(late_sunday, [1], "Pacific/Auckland")


def test_apply_skip_days_case_131() -> None:
    assert apply_skip_days(SATURDAY, [0, 6]) == MONDAY
    assert apply_skip_days(utc("2024-01-13T14:30Z"), [6]) == utc("2024-01-14T14:30Z")
    assert apply_skip_days(SATURDAY, [0, 1, 2, 3, 4, 5, 6]) is None
    assert apply_skip_days(utc("2024-01-12T10:00Z"), [5, 6, 0]) == MONDAY
    assert apply_skip_days(MONDAY, []) == MONDAY


def test_apply_skip_days_keeps_the_wall_time_across_dst() -> None:
    # Saturday 09:00 CET -> Monday 09:00 CEST: the same wall time, one hour less in UTC
    assert apply_skip_days(utc("2026-03-28T08:00Z"), [0, 6], "Europe/Berlin") == utc(
        "2026-03-30T07:00Z"
    )
    # Saturday 02:30 CET -> Sunday 02:30 does not exist -> 03:00 CEST (the DST rule)
    assert apply_skip_days(utc("2026-03-28T01:30Z"), [6], "Europe/Berlin") == utc(
        "2026-03-29T01:00Z"
    )


def test_apply_all_date_constraints_case_133() -> None:
    start = utc("2024-01-13T00:00Z")  # a Saturday
    assert apply_all_date_constraints(
        utc("2024-01-10T00:00Z"), start_date=start, skip_days=[0, 6]
    ) == utc("2024-01-15T00:00Z")
    assert (
        apply_all_date_constraints(SATURDAY, end_date=SUNDAY + timedelta(hours=1), skip_days=[0, 6])
        is None
    )


def test_apply_all_date_constraints_without_constraints_and_with_end() -> None:
    assert apply_all_date_constraints(MONDAY) == MONDAY
    assert apply_all_date_constraints(MONDAY, end_date=MONDAY) == MONDAY
    assert apply_all_date_constraints(MONDAY, end_date=SUNDAY) is None


def test_validate_skip_days() -> None:
    assert validate_skip_days([6, 0, 6, 3]) == [0, 3, 6]
    assert validate_skip_days(()) == []


@pytest.mark.parametrize("days", [[9], [-1], [1.0], ["1"], [True]])
def test_validate_skip_days_rejects(days: list[Any]) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        validate_skip_days(days)
    assert str(caught.value) == (
        f"Invalid skip day: {days[0]!r}. Must be an integer 0-6 (0=Sunday, 6=Saturday)"
    )


# ---------------------------------------------------------------------------------------------
# compute_next_run_at


def test_human_interval_runs_now_the_first_time_cases_14_and_17() -> None:
    assert compute_next_run_at(job(repeat_interval="5 minutes"), NOW) == NOW


def test_skip_immediate_pushes_the_first_run_one_interval_out_case_14() -> None:
    # repeat_every(skip_immediate=True) sets last_run_at = next_run_at or now before computing
    result = compute_next_run_at(job(repeat_interval="5 minutes", last_run_at=NOW), NOW)
    assert result is not None
    assert result > NOW + timedelta(minutes=4)


def test_interval_is_measured_from_the_start_of_the_last_run() -> None:
    started = utc("2026-02-08T11:58:00.500Z")
    assert compute_next_run_at(job(repeat_interval="5 minutes", last_run_at=started), NOW) == (
        utc("2026-02-08T12:03:00.500Z")
    )
    assert compute_next_run_at(job(repeat_interval=60_000, last_run_at=started), NOW) == utc(
        "2026-02-08T11:59:00.500Z"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"repeat_interval": "0 6 * * *"},
        {"repeat_interval": "0 6 * * *", "repeat_timezone": "America/New_York"},
        {"repeat_at": "3:30pm"},
    ],
)
def test_cron_and_repeat_at_compute_a_next_run_case_18(fields: dict[str, Any]) -> None:
    assert compute_next_run_at(job(**fields), NOW) is not None


def test_cron_never_runs_immediately_and_honours_the_zone() -> None:
    assert compute_next_run_at(job(repeat_interval="0 6 * * *"), NOW) == utc("2026-02-09T06:00Z")
    in_new_york = job(repeat_interval="0 6 * * *", repeat_timezone="America/New_York")
    assert compute_next_run_at(in_new_york, NOW) == utc("2026-02-09T11:00Z")


def test_repeat_at_honours_the_zone() -> None:
    # Agenda reads repeat_at in the process zone whatever repeat_timezone says
    berlin = job(repeat_at="3:30pm", repeat_timezone="Europe/Berlin")
    assert compute_next_run_at(berlin, NOW) == utc("2026-02-08T14:30Z")


def test_cron_after_a_run_is_the_next_tick() -> None:
    ran = job(
        repeat_interval="0 6 * * *",
        next_run_at=utc("2026-02-09T06:00Z"),
        last_run_at=utc("2026-02-09T06:00:00.040Z"),
    )
    assert compute_next_run_at(ran, utc("2026-02-09T06:00:00.040Z")) == utc("2026-02-10T06:00Z")


@pytest.mark.parametrize("early", [timedelta(milliseconds=5), timedelta(milliseconds=999)])
def test_a_run_started_early_does_not_repeat_its_tick(early: timedelta) -> None:
    tick = utc("2026-02-09T06:00Z")
    for fields in ({"repeat_interval": "0 6 * * *"}, {"repeat_at": "6:00am"}):
        ran = job(**fields, next_run_at=tick, last_run_at=tick - early)
        assert compute_next_run_at(ran, tick - early) == utc("2026-02-10T06:00Z")


def test_a_manual_run_before_the_tick_keeps_the_tick() -> None:
    # a run long before the scheduled tick (job.run() by hand) did not consume it
    ran = job(repeat_interval="0 6 * * *", next_run_at=utc("2026-02-09T06:00Z"), last_run_at=NOW)
    assert compute_next_run_at(ran, NOW) == utc("2026-02-09T06:00Z")


def test_repeat_at_after_a_run_is_tomorrow() -> None:
    ran = job(repeat_at="3:30pm", last_run_at=utc("2026-02-08T15:30:00.010Z"))
    assert compute_next_run_at(ran, utc("2026-02-08T15:30:00.010Z")) == utc("2026-02-09T15:30Z")


@pytest.mark.parametrize("fields", [{}, {"repeat_interval": ""}, {"repeat_interval": 0}])
def test_a_one_off_finishes(fields: dict[str, Any]) -> None:
    assert compute_next_run_at(job(next_run_at=NOW, **fields), NOW) is None


def test_interval_date_constraints_follow_agenda() -> None:
    windowed = job(repeat_interval="1 hour", start_date=utc("2026-03-01T00:00Z"))
    assert compute_next_run_at(windowed, NOW) == utc("2026-03-01T00:00Z")
    ended = job(repeat_interval="1 hour", last_run_at=NOW, end_date=NOW + timedelta(minutes=30))
    assert compute_next_run_at(ended, NOW) is None
    weekend = job(repeat_interval="1 hour", skip_days=[0, 6])  # NOW is a Sunday
    assert compute_next_run_at(weekend, NOW) == utc("2026-02-09T12:00:00.123Z")


def test_cron_date_constraints_give_real_ticks() -> None:
    # start on Friday 12:00, weekends skipped: the first 09:00 tick allowed is Monday's
    constrained = job(
        repeat_interval="0 9 * * *", start_date=utc("2026-02-13T12:00Z"), skip_days=[0, 6]
    )
    assert compute_next_run_at(constrained, NOW) == utc("2026-02-16T09:00Z")
    # a monthly tick on a skipped day moves to the next month's tick, not to the 2nd
    monthly = job(repeat_interval="0 9 1 * *", skip_days=[0])  # 2026-03-01 is a Sunday
    assert compute_next_run_at(monthly, NOW) == utc("2026-04-01T09:00Z")
    ended = job(repeat_interval="0 9 * * *", end_date=utc("2026-02-09T08:00Z"))
    assert compute_next_run_at(ended, NOW) is None
    assert (
        compute_next_run_at(job(repeat_interval="0 9 * * *", skip_days=list(range(7))), NOW) is None
    )


def test_cron_start_date_on_a_tick_is_that_tick() -> None:
    on_tick = job(repeat_interval="0 9 * * *", start_date=utc("2026-03-02T09:00Z"))
    assert compute_next_run_at(on_tick, NOW) == utc("2026-03-02T09:00Z")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"repeat_interval": "every blue moon"}, "invalid repeat interval ('every blue moon')"),
        ({"repeat_interval": "5000 * * * *"}, "invalid repeat interval ('5000 * * * *')"),
        ({"repeat_interval": -5}, "invalid repeat interval (-5)"),
        ({"repeat_at": "25:99"}, "invalid format: '25:99'"),
        (
            {"repeat_interval": "0 6 * * *", "repeat_timezone": "Mars/Base"},
            "invalid repeat timezone ('Mars/Base')",
        ),
    ],
)
def test_unreadable_schedules_raise_for_the_caller(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidIntervalError) as caught:
        compute_next_run_at(job(**fields), NOW)
    assert str(caught.value).startswith("failed to calculate")
    assert needle in str(caught.value)
