"""The one source of "now": a clock the scheduler asks, which tests can replace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


def truncate_ms(value: datetime) -> datetime:
    """Drop sub-millisecond digits: every store keeps at least milliseconds, MongoDB no more."""
    extra = value.microsecond % 1000
    # Most values are stored instants, whole milliseconds already: no copy (about ten a job).
    return value.replace(microsecond=value.microsecond - extra) if extra else value


def utcnow() -> datetime:
    """The current instant, aware UTC, at millisecond precision."""
    return truncate_ms(datetime.now(UTC))


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
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return truncate_ms(datetime.now(UTC) + self.offset)
