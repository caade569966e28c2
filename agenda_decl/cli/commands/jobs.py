"""``agenda-decl jobs``: the jobs in storage with their computed state and last failure,
filtered and paged; ``jobs ACTION`` hands over to the action's command."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from agenda_decl._model import (
    JobsQueryOptions,
    JobsResult,
    JobState,
    JobStateFilter,
    JobWithState,
    SortDirection,
    SortKey,
)
from agenda_decl.agenda import Agenda
from agenda_decl.cli.commands.job_actions import (
    cmd_cancel,
    cmd_delete,
    cmd_purge,
    cmd_retry,
    cmd_run_now,
)
from agenda_decl.cli.commands.job_pause import cmd_pause, cmd_resume
from agenda_decl.cli.commands.job_show import cmd_show
from agenda_decl.cli.commands.job_view import FAILURE_CHARS, short_time
from agenda_decl.cli.context import (
    EXIT_ERROR,
    EXIT_OK,
    CommandContext,
    build_command_agenda,
    load_checked_config,
    with_ready_agenda,
)
from agenda_decl.cli.output import Output
from agenda_decl.operations import job_json, last_failure

__all__ = ["cmd_jobs"]

_COLUMNS = ("ID", "NAME", "STATE", "DISABLED", "NEXT RUN (UTC)", "LAST RUN (UTC)", "FAILS",
            "LAST FAILURE")

_ACTIONS: dict[str, Callable[[CommandContext], int]] = {
    "show": cmd_show,
    "retry": cmd_retry,
    "run-now": cmd_run_now,
    "cancel": cmd_cancel,
    "delete": cmd_delete,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "purge": cmd_purge,
}


def cmd_jobs(context: CommandContext) -> int:
    args = context.args
    if args.jobs_command is not None:
        return _ACTIONS[args.jobs_command](context)
    if args.page is not None and args.page > 1 and args.limit == 0:
        context.report("usage", "--page needs a page size: --limit N (N > 0)")
        return EXIT_ERROR
    load_checked_config(context)
    agenda = build_command_agenda(context, read_only=True)

    async def work() -> int:
        skip = args.skip if args.page is None else (args.page - 1) * args.limit
        result = await _query_jobs(agenda, args, skip)
        if args.json:
            context.output.json({"total": result.total, "total_exact": result.total_exact,
                                 "skip": skip, "jobs": [
                job_json(job, job.state, context.config) for job in result.jobs]})
        else:
            _print_jobs(context.output, result, skip)
        return EXIT_OK

    return asyncio.run(with_ready_agenda(context, agenda, work))


async def _query_jobs(agenda: Agenda, args: argparse.Namespace, skip: int) -> JobsResult:
    sort: dict[SortKey, SortDirection] = {"name": "asc", "next_run_at": "asc"}
    state: JobState | None = "failed" if args.failed else args.state
    if not (args.disabled and state):
        wanted: JobStateFilter | None = "paused" if args.disabled else state
        return await agenda.query_jobs(JobsQueryOptions(
            name=args.name, state=wanted, search=args.search,
            include_disabled=not args.enabled, skip=skip, limit=args.limit, sort=sort,
        ))
    # A state and --disabled: the store filters one of them (its "paused" filter selects the
    # disabled jobs, usually few); the state is matched here, then the page is cut.
    disabled = await agenda.query_jobs(JobsQueryOptions(
        name=args.name, state="paused", search=args.search, sort=sort))
    jobs = [job for job in disabled.jobs if job.state == state]
    end = skip + args.limit if args.limit else None
    return JobsResult(jobs=jobs[skip:end], total=len(jobs))


def _print_jobs(output: Output, result: JobsResult, skip: int) -> None:
    jobs, total = result.jobs, result.total
    # a lower bound (Redis stops counting a filter's matches past a bound) says so
    counted = f"{total}" if result.total_exact else f"at least {total}"
    if not jobs:
        output.print("No jobs." if total == 0 else f"No jobs on this page ({counted} in all).")
        return
    rows = [_row(job) for job in jobs]
    widths = [max(len(row[i]) for row in (_COLUMNS, *rows)) for i in range(len(_COLUMNS))]
    for row in (_COLUMNS, *rows):
        output.print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip())
    last = skip + len(jobs)
    if total > len(jobs):
        more = f"--skip {last} for the next page, " if last < total else ""
        output.print(f"({skip + 1}-{last} of {counted} shown; {more}--limit 0 for all)")


def _row(job: JobWithState[Any]) -> tuple[str, ...]:
    return (
        str(job.id),
        job.name,
        job.state,
        "yes" if job.disabled else "no",
        short_time(job.next_run_at),
        short_time(job.last_run_at),
        str(job.fail_count or 0),
        _cut(last_failure(job)),
    )


def _cut(reason: str | None) -> str:
    if reason is None:
        return "-"
    line = " ".join(reason.split())
    return line if len(line) <= FAILURE_CHARS else line[: FAILURE_CHARS - 3] + "..."
