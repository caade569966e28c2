"""The Redis codec's milliseconds: Node stores instants as epoch ms, floored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

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
