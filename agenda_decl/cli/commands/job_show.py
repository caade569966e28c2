"""``agenda-decl jobs show ID``: every stored field of one job, its data, its computed state,
who paused it, and its last failure (with the traceback once the job log keeps it)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import attrs

from agenda_decl.cli.context import (
    EXIT_OK,
    CommandContext,
    build_command_agenda,
    load_checked_config,
    with_ready_agenda,
)
from agenda_decl.cli.output import Output, iso
from agenda_decl.config.pause import PauseMark
from agenda_decl.operations import found_by_ids, job_details, last_error_entry, state_of

__all__ = ["cmd_show"]


def cmd_show(context: CommandContext) -> int:
    load_checked_config(context)
    agenda = build_command_agenda(context, read_only=True)

    async def work() -> int:
        (job,) = await found_by_ids(agenda, [context.args.id])
        assert job.id is not None
        entry = await last_error_entry(agenda, job.id)
        shown = job_details(job, state_of(job, agenda), context.config, entry)
        if context.wants_json:
            context.output.json(shown)
        else:
            _print_job(context.output, shown)
        return EXIT_OK

    return asyncio.run(with_ready_agenda(context, agenda, work))


def _print_job(output: Output, shown: dict[str, Any]) -> None:
    failure = shown.pop("last_failure")
    data = shown.pop("data")
    if shown["paused"] is not None:
        shown["paused"] = PauseMark(**shown["paused"]).describe()
    width = max(len(name) for name in shown) + 2
    for name, value in shown.items():
        output.print(f"{name + ':':<{width}}{_text(value)}")
    output.print("data:")
    for line in json.dumps(data, indent=2, ensure_ascii=False, default=str).splitlines():
        output.print(f"  {line}")
    _print_failure(output, failure)


def _print_failure(output: Output, failure: dict[str, Any] | None) -> None:
    if failure is None:
        output.print("last failure: none")
        return
    when = _text(failure["failed_at"])
    now = "" if failure["last_run_failed"] else " (a later run succeeded)"
    output.print(f"last failure: {when}, {failure['fail_count']} failure(s) in all{now}")
    output.print(f"  reason: {failure['reason'] or '-'}")
    traceback = failure["traceback"]
    if traceback is None:
        output.print("  traceback: none in the job log")
        return
    output.print("  traceback:")
    for line in str(traceback).splitlines():
        output.print(f"    {line}")


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if hasattr(value, "isoformat"):
        return iso(value)
    if isinstance(value, dict | list) or attrs.has(type(value)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
