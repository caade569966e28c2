"""``agenda-decl jobs retry | run-now | cancel | delete | purge``: acting on stored jobs.

Each finds its jobs first and refuses, writing nothing, when one cannot be found (exit 1,
error kind ``not_found``); deleting asks for confirmation (``--yes`` without a terminal). The
decisions (what retry does to ``fail_count``, how run-now keeps a schedule) are
:mod:`agenda_decl.operations.actions`'.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from agenda_decl._model import JobParameters
from agenda_decl.agenda import Agenda
from agenda_decl.cli.commands.job_view import short_time
from agenda_decl.cli.confirm import confirm
from agenda_decl.cli.context import (
    EXIT_ERROR,
    EXIT_OK,
    CommandContext,
    build_command_agenda,
    load_checked_config,
    with_ready_agenda,
)
from agenda_decl.cli.output import iso
from agenda_decl.errors import JobNotFoundError
from agenda_decl.operations import (
    found_by_ids,
    jobs_of_name,
    purge_completed,
    remove,
    retry,
    run_now,
    schedule_job,
    schedule_of,
    state_of,
)

__all__ = ["cmd_cancel", "cmd_delete", "cmd_purge", "cmd_retry", "cmd_run_now", "job_ref",
           "run_on_agenda"]

#: How many jobs a confirmation question lists.
_LISTED = 10


def run_on_agenda(
    context: CommandContext, work: Callable[[Agenda], Awaitable[int]], *,
    read_only: bool = False,
) -> int:
    """Load the file, build its Agenda and run ``work`` on it once connected."""
    load_checked_config(context)
    agenda = build_command_agenda(context, read_only=read_only)
    return asyncio.run(with_ready_agenda(context, agenda, lambda: work(agenda)))


def job_ref(job: JobParameters[Any]) -> dict[str, Any]:
    return {"id": job.id, "name": job.name}


def cmd_retry(context: CommandContext) -> int:
    args = context.args
    if bool(args.ids) == bool(args.name or args.failed) or (args.name and not args.failed) or (
            args.failed and not args.name):
        context.report("usage", "jobs retry takes job ids, or --name NAME --failed")
        return EXIT_ERROR

    async def work(agenda: Agenda) -> int:
        jobs = (await found_by_ids(agenda, args.ids) if args.ids else await jobs_of_name(
            agenda, args.name, state="failed", config=context.config))
        retried = await retry(agenda, jobs)
        if context.wants_json:
            context.output.json({"retried": len(retried), "jobs": [job_ref(j) for j in retried]})
            return EXIT_OK
        for job in retried:
            context.output.print(f"retried job {job.id} ({job.name}): runs now "
                                 f"(fail_count {job.fail_count or 0} kept)")
        if not retried:
            context.output.print(f"No failed jobs of {args.name}.")
        else:
            context.output.print(f"Retried {len(retried)} job(s).")
        return EXIT_OK

    return run_on_agenda(context, work)


def cmd_run_now(context: CommandContext) -> int:
    args = context.args

    async def work(agenda: Agenda) -> int:
        job = await _run_now_target(agenda, context, args.target, args.key)
        done = await run_now(agenda, job)
        if context.wants_json:
            context.output.json({"how": done.how, **job_ref(done.job),
                                 "next_run_at": done.job.next_run_at,
                                 "of": {**job_ref(done.of), "next_run_at": done.of.next_run_at}})
        elif done.how == "copy":
            context.output.print(
                f"enqueued job {done.job.id} ({done.job.name}), a one-off copy of job "
                f"{done.of.id} with its data, due now; the schedule's next run stays "
                f"{short_time(done.of.next_run_at)} UTC")
        else:
            context.output.print(f"job {done.job.id} ({done.job.name}) runs now")
        return EXIT_OK

    return run_on_agenda(context, work)


async def _run_now_target(
    agenda: Agenda, context: CommandContext, target: str, key: str | None
) -> JobParameters[Any]:
    """The job of the declared schedule ``target`` (a job name; ``key`` when it has several),
    else the stored job with id ``target``."""
    config = context.config
    if key is not None or any(schedule.job == target for schedule in config.schedules):
        return await schedule_job(agenda, config, target, key)
    try:
        (job,) = await found_by_ids(agenda, [target])
    except JobNotFoundError:
        scheduled = sorted({schedule.job for schedule in config.schedules})
        raise JobNotFoundError(
            f"{target!r} is neither a job with a schedule in agenda.yaml (those with one: "
            f"{', '.join(scheduled) or 'none'}) nor the id of a stored job") from None
    return job


def cmd_cancel(context: CommandContext) -> int:
    async def work(agenda: Agenda) -> int:
        jobs = await found_by_ids(agenda, context.args.ids)
        return await _delete(context, agenda, jobs, f"Delete {len(jobs)} job(s)?")

    return run_on_agenda(context, work)


def cmd_delete(context: CommandContext) -> int:
    args = context.args

    async def work(agenda: Agenda) -> int:
        jobs = await jobs_of_name(agenda, args.name, state=args.state, config=context.config)
        which = f"{args.name}" + (f" in state {args.state}" if args.state else "")
        if not jobs:
            if context.wants_json:
                context.output.json({"deleted": 0, "jobs": []})
            else:
                context.output.print(f"No jobs of {which}.")
            return EXIT_OK
        return await _delete(context, agenda, jobs, f"Delete {len(jobs)} job(s) of {which}?")

    return run_on_agenda(context, work)


async def _delete(
    context: CommandContext, agenda: Agenda, jobs: Sequence[JobParameters[Any]], question: str
) -> int:
    listing = [f"  {job.id} {job.name} ({state_of(job, agenda)})" for job in jobs[:_LISTED]]
    if len(jobs) > _LISTED:
        listing.append(f"  ... and {len(jobs) - _LISTED} more")
    notes = _schedule_notes(jobs)
    if not context.args.yes:
        context.output.write_err("\n".join([*listing, *notes]) + "\n")
        if not confirm(context, question, action="delete"):
            return EXIT_ERROR
    deleted = await remove(agenda, jobs)
    if context.wants_json:
        context.output.json({"deleted": deleted, "jobs": [job_ref(job) for job in jobs]})
    else:
        for note in notes if context.args.yes else ():
            context.output.error(note.strip())
        context.output.print(f"Deleted {deleted} job(s).")
    return EXIT_OK


def _schedule_notes(jobs: Sequence[JobParameters[Any]]) -> list[str]:
    scheduled = [job for job in jobs if schedule_of(job) is not None]
    if not scheduled:
        return []
    return [f"  note: {len(scheduled)} of them stand for schedules of an agenda.yaml: its "
            "next apply creates them again (jobs pause stops a schedule instead)"]


def cmd_purge(context: CommandContext) -> int:
    args = context.args

    async def work(agenda: Agenda) -> int:
        names = [args.name] if args.name else sorted(context.config.jobs)
        count = await purge_completed(agenda, timedelta(milliseconds=args.older_than),
                                      names=names, dry_run=args.dry_run)
        before = agenda.clock.now() - timedelta(milliseconds=args.older_than)
        if context.wants_json:
            key = "would_delete" if args.dry_run else "deleted"
            context.output.json({key: count, "finished_before": iso(before), "names": names})
        else:
            verb = "Would delete" if args.dry_run else "Deleted"
            context.output.print(f"{verb} {count} completed job(s) that finished before "
                                 f"{iso(before)} (names: {', '.join(names) or 'none'}).")
        return EXIT_OK

    return run_on_agenda(context, work, read_only=args.dry_run)
