"""``agenda-decl jobs pause | resume NAME [--key K]``: how an operator's pause meets ``apply``
is :mod:`agenda_decl.config.pause`'s (plan shows it, apply keeps it)."""

from __future__ import annotations

from typing import Any

from agenda_decl._model import JobParameters
from agenda_decl.agenda import Agenda
from agenda_decl.cli.commands.job_actions import job_ref, run_on_agenda
from agenda_decl.cli.context import EXIT_OK, CommandContext
from agenda_decl.errors import JobNotFoundError
from agenda_decl.operations import (
    OperationRefusedError,
    PauseResult,
    declared_disabled,
    jobs_of_name,
    pause,
    pause_mark,
    resume,
    schedule_job,
)

__all__ = ["cmd_pause", "cmd_resume"]


async def _targets(
    agenda: Agenda, context: CommandContext, verb: str
) -> list[JobParameters[Any]]:
    args = context.args
    if args.key is not None:
        return [await schedule_job(agenda, context.config, args.name, args.key)]
    jobs: list[JobParameters[Any]] = list(
        await jobs_of_name(agenda, args.name, config=context.config))
    if not jobs:
        raise JobNotFoundError(f"no job named {args.name!r} in storage to {verb}")
    return jobs


def cmd_pause(context: CommandContext) -> int:
    args = context.args

    async def work(agenda: Agenda) -> int:
        jobs = await _targets(agenda, context, "pause")
        mark = pause_mark(agenda, args.by, args.reason)
        result = await pause(agenda, jobs, mark)
        hint = f"agenda-decl jobs resume {args.name}" + (f" --key {args.key}" if args.key else "")
        _report(context, "paused", result, extra={"paused_by": mark.by, "at": mark.at},
                summary=f"{mark.describe()}; apply keeps it paused, {hint} runs it again.")
        if result.changed and args.key is None and not context.wants_json:
            context.output.print(f"Jobs of {args.name} created from now on still run "
                                 f"(workers with --exclude {args.name} run none).")
        return EXIT_OK

    return run_on_agenda(context, work)


def cmd_resume(context: CommandContext) -> int:
    async def work(agenda: Agenda) -> int:
        jobs = await _targets(agenda, context, "resume")
        declared = declared_disabled(context.config)
        if context.args.key is not None:
            _refuse_declared_disabled(context, declared)
        result = await resume(agenda, jobs, declared_disabled=declared)
        _report(context, "resumed", result, extra={}, summary="")
        return EXIT_OK

    return run_on_agenda(context, work)


def _refuse_declared_disabled(context: CommandContext, declared: set[tuple[str, str, str]]
                              ) -> None:
    args = context.args
    if (context.config.owner, args.name, args.key) in declared:
        raise OperationRefusedError(
            f"the schedule {args.key!r} of job {args.name!r} is declared disabled in "
            "agenda.yaml: remove 'disabled: true' there and run agenda-decl apply")


def _report(context: CommandContext, verb: str, result: PauseResult, *,
            extra: dict[str, Any], summary: str) -> None:
    if context.wants_json:
        context.output.json({
            verb: len(result.changed), **extra,
            "jobs": [job_ref(job) for job in result.changed],
            "left": [{**job_ref(job), "why": why} for job, why in result.left],
        })
        return
    for job in result.changed:
        context.output.print(f"{verb} job {job.id} ({job.name})")
    for job, why in result.left:
        context.output.print(f"left job {job.id} ({job.name}): {why}")
    tail = f": {summary}" if summary and result.changed else "."
    context.output.print(f"{verb.capitalize()} {len(result.changed)} job(s){tail}")
