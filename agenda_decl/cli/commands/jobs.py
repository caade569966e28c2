"""``agenda-decl jobs``: the jobs in storage with their computed state.

A job of one of this file's schedules prints as the file would: its data and the fields its
schedule's options set show values taken from the environment as their ``${VAR}`` reference.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from agenda_decl._model import JobsQueryOptions, JobsResult, JobWithState, SortDirection, SortKey
from agenda_decl._secrets import shown
from agenda_decl.agenda import Agenda
from agenda_decl.cli.context import (
    EXIT_OK,
    CommandContext,
    build_command_agenda,
    load_checked_config,
    with_ready_agenda,
)
from agenda_decl.cli.output import Output
from agenda_decl.config.load import shown_data, shown_field
from agenda_decl.config.payload import MANAGED_BY_KEY, SCHEDULE_KEY_KEY

__all__ = ["cmd_jobs"]

_COLUMNS = ("ID", "NAME", "STATE", "DISABLED", "NEXT RUN (UTC)", "LAST RUN (UTC)", "FAILS")


def cmd_jobs(context: CommandContext) -> int:
    load_checked_config(context)
    agenda = build_command_agenda(context, read_only=True)
    args = context.args

    async def work() -> int:
        result = await _query_jobs(agenda, args)
        if args.json:
            context.output.json({"total": result.total, "jobs": [
                _job_json(job, context.config) for job in result.jobs]})
        else:
            _print_jobs(context.output, result.jobs, result.total)
        return EXIT_OK

    return asyncio.run(with_ready_agenda(context, agenda, work))


async def _query_jobs(agenda: Agenda, args: argparse.Namespace) -> JobsResult:
    sort: dict[SortKey, SortDirection] = {"name": "asc", "next_run_at": "asc"}
    if not (args.disabled and args.state):
        return await agenda.query_jobs(JobsQueryOptions(
            name=args.name, state="paused" if args.disabled else args.state,
            include_disabled=not args.enabled, limit=args.limit, sort=sort,
        ))
    # A state and --disabled: the store filters one of them (its "paused" filter selects the
    # disabled jobs, usually few); the state is matched here, then the page is cut.
    disabled = await agenda.query_jobs(JobsQueryOptions(name=args.name, state="paused",
                                                        sort=sort))
    jobs = [job for job in disabled.jobs if job.state == args.state]
    return JobsResult(jobs=jobs[: args.limit or None], total=len(jobs))


def _job_json(job: JobWithState[Any], config: Any) -> dict[str, Any]:
    data = job.data if isinstance(job.data, Mapping) else None
    field = _shown_field(job, config)
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "disabled": job.disabled,
        "next_run_at": job.next_run_at,
        "last_run_at": job.last_run_at,
        "last_finished_at": job.last_finished_at,
        "failed_at": job.failed_at,
        "fail_count": job.fail_count or 0,
        "fail_reason": job.fail_reason,
        "priority": field("priority", job.priority),
        "type": job.type,
        "repeat_interval": field("repeat_interval", job.repeat_interval),
        "repeat_timezone": field("repeat_timezone", job.repeat_timezone),
        "repeat_at": field("repeat_at", job.repeat_at),
        "managed_by": _managed_by(job, config),
        "schedule_key": data.get(SCHEDULE_KEY_KEY) if data else None,
        "data": _shown_job_data(job, config),
    }


def _schedule_key(job: JobWithState[Any], config: Any) -> str | None:
    """The key of the schedule of this file that ``job`` belongs to, if it is one of them."""
    data = job.data
    if not isinstance(data, Mapping) or data.get(MANAGED_BY_KEY) != config.owner:
        return None
    return str(data.get(SCHEDULE_KEY_KEY))


def _shown_job_data(job: JobWithState[Any], config: Any) -> Any:
    """The data of a job of one of this file's schedules, as the file would print it."""
    key = _schedule_key(job, config)
    if key is None:
        return job.data
    # The owner marker is scheduler.name: printed as the file has it.
    return {**shown_data(config, job.name, key, job.data), MANAGED_BY_KEY: shown(config.owner)}


def _managed_by(job: JobWithState[Any], config: Any) -> Any:
    if _schedule_key(job, config) is not None:
        return shown(config.owner)
    return job.data.get(MANAGED_BY_KEY) if isinstance(job.data, Mapping) else None


def _shown_field(job: JobWithState[Any], config: Any) -> Callable[[str, Any], Any]:
    """The same for the fields its schedule's options set (``every``, ``timezone``, ...)."""
    key = _schedule_key(job, config)
    if key is None:
        return lambda _name, value: value
    return lambda name, value: shown_field(config, job.name, key, name, value)


def _print_jobs(output: Output, jobs: list[JobWithState[Any]], total: int) -> None:
    if not jobs:
        output.print("No jobs." if total == 0 else f"No jobs on this page ({total} in all).")
        return
    rows = [_row(job) for job in jobs]
    widths = [max(len(row[i]) for row in (_COLUMNS, *rows)) for i in range(len(_COLUMNS))]
    for row in (_COLUMNS, *rows):
        output.print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip())
    if total > len(jobs):
        output.print(f"({len(jobs)} of {total} shown; --limit 0 shows all)")


def _row(job: JobWithState[Any]) -> tuple[str, ...]:
    return (
        str(job.id),
        job.name,
        job.state,
        "yes" if job.disabled else "no",
        _short_time(job.next_run_at),
        _short_time(job.last_run_at),
        str(job.fail_count or 0),
    )


def _short_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
