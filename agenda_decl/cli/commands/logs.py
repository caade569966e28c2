"""``agenda-decl logs``: the job log of the storage (Agenda 6.2's, as Node, Agendash and
agenda-decl workers write it), newest entries last; a failure's traceback under its line.

It reads whatever the store holds, also when this file's ``logging`` is off (a Node worker may
log to the same store), and creates nothing: a store without a log reads as empty.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC
from typing import Any

import attrs

from agenda_decl._job_log import JobLogEntry, JobLogQuery, JobLogQueryResult
from agenda_decl.agenda import Agenda
from agenda_decl.cli.context import (
    EXIT_ERROR,
    EXIT_OK,
    CommandContext,
    CommandFailed,
    build_command_agenda,
    load_checked_config,
    with_ready_agenda,
)
from agenda_decl.cli.output import Output

__all__ = ["cmd_logs"]

_COLUMNS = ("TIME (UTC)", "LEVEL", "EVENT", "NAME", "JOB ID", "MESSAGE")


def cmd_logs(context: CommandContext) -> int:
    load_checked_config(context)
    agenda = build_command_agenda(context, read_only=True)
    args = context.args

    async def work() -> int:
        result = await _read(context, agenda, args)
        entries = list(reversed(result.entries))  # the newest page, oldest first
        if args.json:
            context.output.json({"total": result.total,
                                 "entries": [_entry_json(e) for e in entries]})
        else:
            _print(context.output, entries, result.total, logging_on=agenda.backend.logging)
        return EXIT_OK

    return asyncio.run(with_ready_agenda(context, agenda, work))


async def _read(context: CommandContext, agenda: Agenda, args: argparse.Namespace
                ) -> JobLogQueryResult:
    logger = agenda.backend.logger
    if logger is None:
        context.report("agenda", f"the {agenda.backend.name} storage has no job log")
        raise CommandFailed(EXIT_ERROR)
    return await logger.get_logs(JobLogQuery(
        job_id=args.job, job_name=args.name, level=args.level or None,
        event=args.event or None, from_date=args.since, limit=args.limit or None,
    ))


def _entry_json(entry: JobLogEntry) -> dict[str, Any]:
    return attrs.asdict(entry)


def _print(output: Output, entries: list[JobLogEntry], total: int, *, logging_on: bool) -> None:
    if not entries:
        hint = "" if logging_on else (" (this file's storage has logging off: set "
                                      "backend.storage.logging: true to write the job log)")
        output.print(("No log entries." if total == 0
                      else f"No log entries on this page ({total} in all).") + hint)
        return
    rows = [_row(entry) for entry in entries]
    widths = [max(len(row[i]) for row in (_COLUMNS, *rows)) for i in range(len(_COLUMNS) - 1)]
    for row, entry in zip((_COLUMNS, *rows), (None, *entries), strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        output.print("  ".join([*cells, row[-1]]).rstrip())
        if entry is not None and entry.error and "\n" in entry.error:
            for line in entry.error.splitlines():
                output.print(f"    {line}".rstrip())
    if total > len(entries):
        output.print(f"({len(entries)} of {total} shown, the newest; --limit 0 shows all)")


def _row(entry: JobLogEntry) -> tuple[str, ...]:
    message = entry.message
    if entry.duration is not None:
        message += f" ({entry.duration} ms)"
    return (
        entry.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        entry.level, entry.event, entry.job_name, entry.job_id or "-", message,
    )
