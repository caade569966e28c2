"""Pausing and resuming jobs (``agenda-decl jobs pause|resume``).

A pause disables the jobs; on a job of a schedule it also records who paused it, when and
why (:mod:`agenda_decl.config.pause`), which ``plan`` shows and ``apply`` keeps: a deploy
never resumes a job an operator paused. Other jobs are only disabled (``apply`` never touches
them). Pausing a name pauses the jobs of that name that exist now; jobs created afterwards
run: to stop a name entirely, run workers with ``--exclude NAME``.

Resuming clears both. A repeating job whose next run passed while it was paused runs at its
next time counted from now: a cron or ``at`` job at its next tick, an ``every`` job at once if
its interval has passed since its last run (one run, not one per missed interval).
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import attrs

from agenda_decl import timing
from agenda_decl._model import JobParameters, RemoveJobsOptions
from agenda_decl.agenda import Agenda
from agenda_decl.config.model import AgendaConfig
from agenda_decl.config.pause import (
    PauseMark,
    is_schedule_job,
    pause_of,
    with_pause,
    without_pause,
)
from agenda_decl.job import Job
from agenda_decl.operations.targets import plain, repeats, schedule_of

__all__ = ["PauseResult", "declared_disabled", "default_operator", "pause", "pause_mark", "resume"]


@attrs.define(kw_only=True)
class PauseResult:
    """The jobs a pause (or resume) changed, and those it left as they were, with why."""

    changed: list[JobParameters[Any]] = attrs.field(factory=list)
    #: (job, why it was left alone)
    left: list[tuple[JobParameters[Any], str]] = attrs.field(factory=list)


def default_operator() -> str:
    """``user@host``: who runs the command, as the environment tells."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def pause_mark(agenda: Agenda, by: str | None, reason: str | None) -> PauseMark:
    at = agenda.clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return PauseMark(by=by or default_operator(), at=at, reason=reason or None)


async def pause(
    agenda: Agenda, jobs: Sequence[JobParameters[Any]], mark: PauseMark
) -> PauseResult:
    """Disable ``jobs``, marking those of schedules with ``mark`` (module docstring)."""
    result = PauseResult()
    others: list[JobParameters[Any]] = []
    for job in jobs:
        current = pause_of(job)
        if current is not None:
            result.left.append((job, f"already {current.describe()}"))
        elif is_schedule_job(job):
            params = attrs.evolve(plain(job), disabled=True, data=with_pause(job.data, mark))
            result.changed.append(await _save(agenda, params))
        elif job.disabled:
            result.left.append((job, "already disabled"))
        else:
            others.append(job)
    await _set_disabled(agenda, others, True)
    result.changed.extend(attrs.evolve(plain(job), disabled=True) for job in others)
    return result


async def resume(
    agenda: Agenda, jobs: Sequence[JobParameters[Any]], *,
    declared_disabled: Collection[tuple[str, str, str]] = (),
) -> PauseResult:
    """Enable ``jobs`` and clear their pause (module docstring). A job of a schedule that
    ``declared_disabled`` lists as (owner, job name, key) stays disabled: its file says so."""
    result = PauseResult()
    now = agenda.clock.now()
    bulk: list[JobParameters[Any]] = []
    for job in jobs:
        if not job.disabled:
            result.left.append((job, "not paused"))
        elif _schedule_identity(job) in declared_disabled:
            result.left.append((job, "its schedule is declared disabled in agenda.yaml"))
        elif is_schedule_job(job) or repeats(job):
            params = attrs.evolve(plain(job), disabled=False, data=without_pause(job.data),
                                  next_run_at=_resumed_next_run(job, now))
            result.changed.append(await _save(agenda, params))
        else:
            bulk.append(job)
    await _set_disabled(agenda, bulk, False)
    result.changed.extend(attrs.evolve(plain(job), disabled=False) for job in bulk)
    return result


def declared_disabled(config: AgendaConfig) -> set[tuple[str, str, str]]:
    """(owner, job name, key) of every schedule the file declares ``disabled``: what
    :func:`resume` leaves disabled."""
    return {(config.owner, schedule.job, schedule.schedule_key)
            for schedule in config.schedules if schedule.disabled}


def _schedule_identity(job: JobParameters[Any]) -> tuple[str, str, str] | None:
    schedule = schedule_of(job)
    return None if schedule is None else (schedule[0], job.name, schedule[1])


def _resumed_next_run(job: JobParameters[Any], now: datetime) -> datetime | None:
    if not repeats(job) or job.next_run_at is None or job.next_run_at >= now:
        return job.next_run_at
    return timing.compute_next_run_at(plain(job), now)


async def _set_disabled(agenda: Agenda, jobs: Sequence[JobParameters[Any]],
                        disabled: bool) -> None:
    by_name: dict[str, list[str]] = {}
    for job in jobs:
        assert job.id is not None
        by_name.setdefault(job.name, []).append(job.id)
    for name, ids in by_name.items():
        options = RemoveJobsOptions(ids=ids, name=name)
        await (agenda.disable(options) if disabled else agenda.enable(options))


async def _save(agenda: Agenda, params: JobParameters[Any]) -> JobParameters[Any]:
    saved = await Job(agenda, params).save()
    return saved.attrs
