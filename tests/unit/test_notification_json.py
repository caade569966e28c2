"""The notification wire form (Agenda v6's JSON), written and read by hand on the hot path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenda_decl._convert import (
    format_datetime,
    notification_from_json,
    notification_to_json,
    state_notification_from_json,
)
from agenda_decl._model import JobId, JobNotification, JobStateNotification

WHEN = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)


def test_job_notification_wire_form_and_round_trip() -> None:
    note = JobNotification(job_id=JobId("j1"), job_name="send", next_run_at=WHEN, priority=10,
                           timestamp=WHEN, source="w1")
    text = notification_to_json(note)
    assert text == ('{"jobId":"j1","jobName":"send","nextRunAt":"2026-03-01T09:30:15.123Z",'
                    '"priority":10,"timestamp":"2026-03-01T09:30:15.123Z","source":"w1"}')
    assert notification_from_json(text) == note


def test_absent_values_are_left_out_and_read_back_as_none() -> None:
    note = JobNotification(job_id=JobId("j1"), job_name="send", next_run_at=None, priority=0,
                           timestamp=WHEN)
    assert "nextRunAt" not in notification_to_json(note)
    assert notification_from_json(notification_to_json(note)) == note


def test_state_notification_round_trip_with_every_field() -> None:
    note = JobStateNotification(
        type="retry", job_id=JobId("j1"), job_name="send", timestamp=WHEN, source="w1",
        progress=12.5, error="boom", fail_count=2, retry_at=WHEN + timedelta(seconds=5),
        retry_attempt=2, duration=300, last_run_at=WHEN, last_finished_at=WHEN,
    )
    payload = json.loads(notification_to_json(note))
    assert list(payload) == ["type", "jobId", "jobName", "timestamp", "source", "progress",
                             "error", "failCount", "retryAt", "retryAttempt", "duration",
                             "lastRunAt", "lastFinishedAt"]
    assert state_notification_from_json(notification_to_json(note)) == note


def test_dates_in_other_zones_are_written_in_utc() -> None:
    east = WHEN.astimezone(timezone(timedelta(hours=5, minutes=30)))
    note = JobNotification(job_id=JobId("j1"), job_name="n", next_run_at=east, priority=0,
                           timestamp=east)
    assert json.loads(notification_to_json(note))["nextRunAt"] == "2026-03-01T09:30:15.123Z"


def test_values_are_coerced_like_the_converter_does() -> None:
    note = notification_from_json(
        '{"jobId":1,"jobName":"n","priority":"3","timestamp":"2026-03-01T09:30:15Z"}'
    )
    assert (note.job_id, note.priority, note.next_run_at) == ("1", 3, None)
    state = state_notification_from_json(
        '{"type":"progress","jobId":"a","jobName":"n","timestamp":"2026-03-01T09:30:15Z",'
        '"progress":50,"failCount":"2"}'
    )
    assert (state.progress, state.fail_count) == (50.0, 2)


@pytest.mark.parametrize("text", [
    "not json", "[]", "null", '{"jobId": 1}', '{"jobName": "x", "timestamp": "yesterday"}',
    '{"jobId":"a","jobName":"x","priority":null,"timestamp":"2026-03-01T09:30:15Z"}',
    '{"jobId":null,"jobName":"x","priority":0,"timestamp":"2026-03-01T09:30:15Z"}',
    '{"jobId":"a","jobName":"","priority":0,"timestamp":"2026-03-01T09:30:15Z"}',
])
def test_malformed_job_notifications_raise(text: str) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - any error: the channel logs and skips
        notification_from_json(text)


@pytest.mark.parametrize("text", [
    '{"type": "boom", "jobId": "a", "jobName": "x", "timestamp": "2026-03-01T09:30:15Z"}',
    '{"type": "start", "jobId": "a", "jobName": "x", "timestamp": "2026-03-01T09:30:15Z",'
    ' "progress": "x"}',
    '{"type": "start"}',
    '{"type": "start", "jobId": null, "jobName": "x", "timestamp": "2026-03-01T09:30:15Z"}',
])
def test_malformed_state_notifications_raise(text: str) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011
        state_notification_from_json(text)


_TEXT = st.text(st.characters(codec="utf-8"), min_size=1)
_INSTANT = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 1, 1),
                        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))]))


@given(job_id=_TEXT, name=_TEXT, next_run_at=st.none() | _INSTANT,
       priority=st.integers(-(2**31), 2**31 - 1), timestamp=_INSTANT, source=st.none() | _TEXT)
def test_the_job_payload_is_what_json_dumps_writes(
    job_id: str, name: str, next_run_at: datetime | None, priority: int, timestamp: datetime,
    source: str | None,
) -> None:
    """Written by hand, the payload is byte for byte what ``json.dumps`` makes of Agenda's
    object (its keys in Agenda's order, absent values left out, any text escaped), and reads
    back as the notification."""
    note = JobNotification(job_id=JobId(job_id), job_name=name, next_run_at=next_run_at,
                           priority=priority, timestamp=timestamp, source=source)
    expected: dict[str, object] = {"jobId": job_id, "jobName": name}
    if next_run_at is not None:
        expected["nextRunAt"] = format_datetime(next_run_at)
    expected.update(priority=priority, timestamp=format_datetime(timestamp))
    if source is not None:
        expected["source"] = source
    text = notification_to_json(note)
    assert text == json.dumps(expected, separators=(",", ":"))
    read = notification_from_json(text)
    assert (read.job_id, read.job_name, read.priority, read.source) == (
        job_id, name, priority, source)
