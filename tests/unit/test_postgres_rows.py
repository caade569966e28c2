"""The PostgreSQL store's generated row decoder (``backends.postgres.rows``) builds the job the
shared converter ``_convert.job_from_row`` builds from the same row as psycopg returns it
(UUID ids, aware datetimes in the session's time zone, JSONB as Python values, the interval
as text), whatever is NULL, in any column order; the claim's tuples come out in the claim's
order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agenda_decl._convert import job_from_row as converted
from agenda_decl._model import JobParameters
from agenda_decl.backends.base import INSTANT_FIELDS
from agenda_decl.backends.postgres import rows
from agenda_decl.backends.postgres.queries import CLAIM_COLUMNS

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))])
INSTANTS = st.builds(lambda at, zone: at.replace(tzinfo=UTC).astimezone(zone),
                     st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)), ZONES)
COLUMNS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.uuids(),
    "name": st.text(min_size=1, max_size=8),
    "priority": st.integers(-20, 20),
    "type": st.sampled_from(["normal", "single"]),
    "fail_count": st.none() | st.integers(0, 9),
    "fail_reason": st.none() | st.text(max_size=8),
    "repeat_timezone": st.none() | st.sampled_from(["UTC", "Europe/Paris"]),
    "repeat_interval": st.none() | st.sampled_from(["60000", "5 minutes", "٣"]),
    "data": st.none() | st.sampled_from([{"i": 1}, [1, 2], "text", 7]),
    "repeat_at": st.none() | st.sampled_from(["3:30pm"]),
    "disabled": st.booleans(),
    "progress": st.none() | st.floats(0, 1),
    "fork": st.booleans(),
    "last_modified_by": st.none() | st.text(max_size=8),
    "skip_days": st.none() | st.sampled_from([[0, 6], []]),
    # Not fields: the table's and the statements' other columns.
    "created_at": INSTANTS,
    "updated_at": INSTANTS,
    "state": st.sampled_from(["queued", "running"]),
    "claimed_stale": st.booleans(),
    **{column: st.none() | INSTANTS for column in INSTANT_FIELDS},
}


def _reference(row: dict[str, Any]) -> JobParameters[Any]:
    """What the repository built before the decoder (row_job over dict rows)."""
    values = dict(row)
    values["id"] = str(row["id"])
    interval = values.get("repeat_interval")
    if isinstance(interval, str) and interval.isascii() and interval.isdigit():
        values["repeat_interval"] = int(interval)
    return converted(values)


@given(st.fixed_dictionaries(COLUMNS), st.randoms(use_true_random=False))
def test_the_decoder_builds_what_the_converter_builds(row: dict[str, Any], order: Any) -> None:
    columns = list(row)
    order.shuffle(columns)
    shuffled = {column: row[column] for column in columns}
    assert rows.row_job(shuffled) == _reference(shuffled)


def _claimed(
    stale: bool, next_run_at: datetime | None, priority: int, created: int
) -> tuple[Any, ...]:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    values: dict[str, Any] = {column: None for column in CLAIM_COLUMNS}
    values.update(id=uuid.uuid4(), name="n", priority=priority, type="normal", disabled=False,
                  fork=False, next_run_at=next_run_at, created_at=at + timedelta(seconds=created),
                  data={"created": created}, claimed_stale=stale)
    return tuple(values[column] for column in CLAIM_COLUMNS)


def test_claimed_jobs_come_stale_first_then_by_next_run_priority_and_insertion() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    claimed = [
        _claimed(False, at, 0, 5),
        _claimed(False, None, 9, 0),
        _claimed(True, at + timedelta(hours=1), 0, 9),
        _claimed(False, at, 3, 7),
        _claimed(False, at, 0, 1),
        _claimed(False, at - timedelta(minutes=1), -5, 8),
    ]
    jobs = rows.claimed_jobs(claimed)
    assert [job.data["created"] for job in jobs] == [9, 8, 7, 1, 5, 0]
    assert all(isinstance(job.id, str) for job in jobs)
