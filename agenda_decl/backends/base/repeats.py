"""Repeating a write whose outcome is unknown (the connection died after the store may have
done it, before the reply came): what a store does so that the repeat changes nothing more.

* Claims are repeated with their clock-derived arguments (``now``, the scan horizon, the lock
  deadline) moved on by the time spent retrying, so a lock is stamped with the time it is
  really taken. A claim whose reply was lost leaves its jobs locked by nobody who knows: they
  are claimed again once their lock expires (a delay, never a loss or a second run).
* A state write is fenced by the lock it was made under, so its repeat is rejected when the
  first attempt already went through (an end write unlocked the job; a ``touch()`` moved the
  lock). A write that comes back "not written" is therefore checked against the stored job
  (a rare path: a lost lock, a removed job): when the stored state is the one written, by
  this writer, it was written, by an attempt whose reply was lost (ours, or a driver's own
  retry, which we cannot see).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agenda_decl._clock import truncate_ms
from agenda_decl._model import JobParameters
from agenda_decl.connectors.retry import Attempt

#: The state fields compared to recognise a write already stored (with ``last_modified_by``).
_STATE_FIELDS = ("locked_at", "last_run_at", "last_finished_at", "failed_at", "fail_count")


def moved_by(attempt: Attempt) -> timedelta:
    """How far a claim's clock-derived arguments move on in ``attempt``: the time spent since
    the first try when it repeats one whose outcome is unknown, else nothing."""
    return attempt.elapsed if attempt.repeated else timedelta(0)


def moved_on(value: datetime | None, by: timedelta) -> datetime | None:
    """``value`` plus ``by`` (``None`` stays ``None``: the store's clock decides)."""
    return None if value is None else value + by


def state_already_written(
    stored: JobParameters[Any] | None, job: JobParameters[Any], last_modified_by: str | None
) -> bool:
    """Whether ``stored`` carries the state fields of ``job`` as this writer wrote them (at
    the millisecond: every store keeps instants at least that precisely)."""
    if stored is None or stored.name != job.name or last_modified_by is None:
        return False
    if stored.last_modified_by != last_modified_by:
        return False
    return all(_same(getattr(stored, field), getattr(job, field)) for field in _STATE_FIELDS)


def _same(stored: Any, written: Any) -> bool:
    if isinstance(stored, datetime) and isinstance(written, datetime):
        return truncate_ms(stored) == truncate_ms(written)
    return bool(stored == written)
