"""The one source of "now": a clock the scheduler asks, which tests can replace."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)
#: The last instant read (milliseconds since the epoch, the datetime): a worker reads the
#: clock several times per job, most of them within one millisecond, and building the
#: datetime (now, then dropping the microseconds) was 5% of its event loop. One tuple,
#: replaced whole: threads that read the clock see a matching pair.
_last: tuple[int, datetime] = (0, _EPOCH)


def truncate_ms(value: datetime) -> datetime:
    """Drop sub-millisecond digits: every store keeps at least milliseconds, MongoDB no more."""
    extra = value.microsecond % 1000
    # Most values are stored instants, whole milliseconds already: no copy (about ten a job).
    return value.replace(microsecond=value.microsecond - extra) if extra else value


def utcnow() -> datetime:
    """The current instant, aware UTC, at millisecond precision."""
    return _at_ms(time.time_ns() // 1_000_000)


def _at_ms(ms: int) -> datetime:
    """The instant ``ms`` milliseconds after the epoch (the last one is reused)."""
    global _last
    last = _last
    if last[0] == ms:
        return last[1]
    instant = _EPOCH + ms * _MS
    _last = (ms, instant)
    return instant


class Clock(Protocol):
    """What the scheduler reads the time from (see ``agenda_decl.testing.FakeClock``)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock. Stores with a clock of their own may use theirs instead (see
    ``JobRepository.get_next_job_to_run``)."""

    is_system = True

    def now(self) -> datetime:
        return utcnow()


class StoreAlignedClock:
    """The wall clock shifted onto the store's clock (the skew is measured by the scheduler),
    so lock stamps and deadlines from every worker agree with one another."""

    is_system = True

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._offset_us = 0

    @property
    def offset(self) -> timedelta:
        """What is added to this machine's clock (the store's clock minus it)."""
        return self._offset

    @offset.setter
    def offset(self, value: timedelta) -> None:
        self._offset, self._offset_us = value, value // _US

    def now(self) -> datetime:
        # The wall clock plus the offset, in whole microseconds (what datetime.now() reads),
        # then the milliseconds of that: truncate_ms(datetime.now(UTC) + offset).
        return _at_ms((time.time_ns() // 1000 + self._offset_us) // 1000)
