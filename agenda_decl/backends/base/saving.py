"""The save-job rules every store applies: where a debounced save puts ``next_run_at``, when a
re-saved ``single`` job keeps its pending schedule, and which saves only insert."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs

from agenda_decl._model import JobParameters


@attrs.define(kw_only=True, frozen=True)
class DebounceOutcome:
    next_run_at: datetime | None
    debounce_started_at: datetime | None


def debounce_outcome(
    incoming: JobParameters[Any], existing: JobParameters[Any] | None, now: datetime
) -> DebounceOutcome:
    """Where a debounced save puts ``next_run_at`` (Agenda v6's algorithm, in one place)."""
    options = incoming.unique_opts.debounce if incoming.unique_opts else None
    assert options is not None
    delay = timedelta(milliseconds=options.delay)
    if existing is None:
        if options.strategy == "leading":
            return DebounceOutcome(next_run_at=incoming.next_run_at, debounce_started_at=now)
        return DebounceOutcome(next_run_at=now + delay, debounce_started_at=now)
    started = existing.debounce_started_at or now
    if options.strategy == "leading":
        return DebounceOutcome(next_run_at=existing.next_run_at, debounce_started_at=started)
    if options.max_wait is not None and now - started >= timedelta(milliseconds=options.max_wait):
        return DebounceOutcome(next_run_at=now, debounce_started_at=None)
    return DebounceOutcome(next_run_at=now + delay, debounce_started_at=started)


def single_next_run_at(
    incoming: datetime | None, stored: datetime | None, now: datetime, *, same_timing: bool = True
) -> datetime | None:
    """A re-``every()`` with the same timing keeps a pending schedule: a due incoming time does
    not replace it (Agenda's ``$setOnInsert``). When the timing (``_model.TIMING_FIELDS``)
    differs from the stored one, the incoming time wins: the job follows its new schedule."""
    if same_timing and incoming is not None and incoming <= now and stored is not None:
        return stored
    return incoming


def is_debounced(job: JobParameters[Any]) -> bool:
    return bool(job.unique_opts and job.unique_opts.debounce)


def is_insert_only(job: JobParameters[Any]) -> bool:
    return bool(job.unique_opts and job.unique_opts.insert_only and not is_debounced(job))
