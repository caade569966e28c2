"""Apply: carry out a :class:`~agenda_decl.config.plan.Plan`, writing only what differs (a
second apply writes nothing).

Given a config, :func:`apply` plans and carries the plan out at once. Given a plan (shown to
someone first, as ``agenda-decl apply`` does), it first reads the owner's managed jobs again
and compares their fingerprint with the one the plan recorded: if another apply, a paused or
deleted job, or an edit changed them in between, it refuses with :class:`StalePlanError`
before writing anything, rather than planning again behind the caller's back. What workers
write while running the jobs (next and last run, locks, failures) does not make a plan stale:
apply takes those from storage as it writes (a kept ``next_run_at``, the last run an
``every`` schedule counts from).

Two appliers racing on one store converge without a lock: after writing, each lists the
owner's jobs again and, for any declared schedule held by more than one job, keeps the one
with the smallest id and deletes the others (both pick the same one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from agenda_decl._model import JobId, JobParameters, RemoveJobsOptions
from agenda_decl._secrets import shown
from agenda_decl.agenda import Agenda
from agenda_decl.config.errors import StalePlanError
from agenda_decl.config.model import AgendaConfig
from agenda_decl.config.plan import (
    ACTIONS,
    Change,
    JobWrite,
    Orphan,
    Plan,
    delete_change,
    first_run,
    plan_with_stored,
)
from agenda_decl.config.stored import (
    by_identity,
    delete_filter,
    fingerprint,
    job_id,
    managed_jobs,
)
from agenda_decl.job import Job

__all__ = ["ApplyResult", "OnChange", "apply"]


@attrs.define(kw_only=True, frozen=True)
class ApplyResult:
    #: The plan carried out (with ``prune``, the one whose orphans became deletes).
    plan: Plan
    #: The changes written, in order, including duplicates removed after the writes.
    done: tuple[Change, ...]
    created: int
    updated: int
    deleted: int
    unchanged: int
    #: Duplicates left by a concurrent apply and removed here.
    duplicates_removed: int
    orphaned: tuple[Orphan, ...]

    @property
    def changed(self) -> bool:
        return bool(self.done)


OnChange = Callable[[Change], object]


async def apply(
    agenda: Agenda,
    plan_or_config: Plan | AgendaConfig,
    *,
    prune: bool = False,
    on_change: OnChange | None = None,
    base_dir: Path | None = None,
) -> ApplyResult:
    """Carry out a plan (or the plan of a config, made here); return what was done.

    A :class:`Plan` is carried out as it is, provided storage still holds what it was made on
    (else :class:`StalePlanError`, and nothing is written). A config is planned first, which
    validates every schedule before the first write; ``base_dir`` is where its payload
    classes are imported from. ``prune`` (or a plan made with it) also deletes this owner's
    jobs that are no longer declared. Only what differs is written, so a second apply writes
    nothing. ``on_change(change)`` is called after each write (for progress output).
    """
    if isinstance(plan_or_config, Plan):
        planned = plan_or_config
        stored = await _stored_as_planned(agenda, planned)
        now = agenda.clock.now()
    else:
        planned, stored = await plan_with_stored(agenda, plan_or_config, prune=prune,
                                                 base_dir=base_dir)
        now = planned.now
    if prune:
        planned = planned.pruned()
    return await _carry_out(agenda, planned, stored, now, on_change)


async def _stored_as_planned(agenda: Agenda, planned: Plan) -> list[JobParameters[Any]]:
    stored = await managed_jobs(agenda, planned.owner)
    if fingerprint(stored) != planned.fingerprint:
        raise StalePlanError(
            f"storage changed since the plan was made (the jobs of owner "
            f"{shown(planned.owner)!r} are not the ones it was made on); nothing was written. "
            "Run plan again."
        )
    return stored


async def _carry_out(
    agenda: Agenda, planned: Plan, stored: Sequence[JobParameters[Any]], now: datetime,
    on_change: OnChange | None,
) -> ApplyResult:
    current = {job_id(job): job for job in stored}
    done: list[Change] = []
    for change in planned.changes:
        written = await _write(agenda, planned.owner, change, current, now)
        if written is not None:
            done.append(written)
            _notify(on_change, written)
    counts = {action: sum(1 for c in done if c.action == action) for action in ACTIONS}
    removed = await _remove_duplicates(agenda, planned.config, wrote=bool(done))
    for change in removed:
        done.append(change)
        _notify(on_change, change)
    return ApplyResult(
        plan=planned,
        done=tuple(done),
        created=counts["create"],
        updated=counts["update"],
        deleted=counts["delete"],
        unchanged=planned.count("unchanged"),
        duplicates_removed=len(removed),
        orphaned=planned.orphaned,
    )


def _notify(on_change: OnChange | None, change: Change) -> None:
    if on_change is not None:
        on_change(change)


async def _write(
    agenda: Agenda, owner: str, change: Change, current: Mapping[JobId, JobParameters[Any]],
    now: datetime,
) -> Change | None:
    if change.action == "unchanged":
        return None
    if change.action == "delete":
        assert change.id is not None
        removed = await agenda.cancel(RemoveJobsOptions(id=change.id,
                                                        data=delete_filter(owner, change.key)))
        return change if removed else None
    assert change.write is not None
    stored = current.get(change.id) if change.id is not None else None
    params = change.write.job(change.id, _next_run_at(change.write, stored, now))
    saved = await Job(agenda, params).save()
    return attrs.evolve(change, id=saved.attrs.id)


def _next_run_at(
    write: JobWrite, stored: JobParameters[Any] | None, now: datetime
) -> datetime | None:
    """The stored next run when the plan keeps it, else the first run of the declared timing
    after the stored job's last run (plan's module docstring)."""
    if write.next_run == "keep" and stored is not None:
        return stored.next_run_at
    return first_run(write.job(None, None), write.kind, skip_immediate=write.skip_immediate,
                     last_run_at=stored.last_run_at if stored is not None else None, now=now)


async def _remove_duplicates(agenda: Agenda, config: AgendaConfig, *, wrote: bool) -> list[Change]:
    """After the writes: for a declared key held by several jobs (two applies created it at
    once), keep the smallest id and delete the others. Every applier picks the same one."""
    if not wrote:  # what was read at plan time had no duplicates of declared keys
        return []
    declared = {(schedule.job, schedule.schedule_key) for schedule in config.schedules}
    removed: list[Change] = []
    for identity, group in by_identity(await managed_jobs(agenda, config.owner)).items():
        if identity not in declared:
            continue
        for job in group[1:]:  # smallest id first: every applier keeps the same one
            change = delete_change(job, identity[1], "duplicate")
            options = RemoveJobsOptions(id=change.id, data=delete_filter(config.owner,
                                                                         change.key))
            if await agenda.cancel(options):
                removed.append(change)
    return removed
