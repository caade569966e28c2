"""The Redis codec: Node stores instants as epoch ms, floored; an insert batch's rows and
ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agenda_decl._model import JobParameters
from agenda_decl.backends import base
from agenda_decl.backends.redis import codec
from agenda_decl.backends.redis.codec import EPOCH, epoch_ms, ms_arg


@pytest.mark.parametrize(("moment", "expected"), [
    (EPOCH, 0),
    (EPOCH + timedelta(microseconds=999), 0),
    (EPOCH + timedelta(milliseconds=1), 1),
    (EPOCH - timedelta(microseconds=1), -1),  # floored, not cut toward zero
    (EPOCH - timedelta(days=1, microseconds=1500), -86_400_002),
    (datetime(2026, 12, 6, 10, 0, 0, 123_456, tzinfo=UTC), 1_796_551_200_123),
    (datetime(2026, 12, 6, 11, 0, 0, 123_999, tzinfo=timezone(timedelta(hours=1))),
     1_796_551_200_123),
])
def test_epoch_ms_floors_to_the_millisecond(moment: datetime, expected: int) -> None:
    assert epoch_ms(moment) == expected
    assert ms_arg(moment) == str(expected)


def test_no_instant_is_an_empty_argument() -> None:
    assert ms_arg(None) == ""


def test_random_ids_are_distinct_version_4_uuids_in_their_canonical_text() -> None:
    ids = base.random_ids(5000)
    assert len(set(ids)) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    # every variant digit appears: the two variant bits are set, the other two are random
    assert {text[19] for text in ids} == set("89ab")


def test_insert_groups_share_a_row_between_jobs_that_differ_only_in_id_and_data() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    jobs: list[JobParameters[Any]] = [
            JobParameters(name="a", data={"i": 1}, next_run_at=now),
            JobParameters(name="a", data={"i": 2}, next_run_at=now),
            JobParameters(name="a", data=None, next_run_at=now),
            JobParameters(name="b", data={"i": 3}, next_run_at=now)]
    groups = codec.insert_groups(jobs, ["1", "2", "3", "4"],
                                 ['{"i":1}', '{"i":2}', "null", '{"i":3}'], "me")
    assert [members for _, members in groups] == [
        ["1", '{"i":1}', "2", '{"i":2}'], ["3", codec.NO_DATA], ["4", '{"i":3}']]
    shape = groups[0][0]
    assert shape[:6] == ["", "a", str(int(now.timestamp() * 1000)), "0", "", ""]
    assert groups[1][0][4] == "true"  # noData
    assert groups[2][0][1] == "b"
