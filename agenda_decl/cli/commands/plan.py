"""``agenda-decl plan`` and ``agenda-decl apply``: compare the declared schedules with storage,
and make storage match them.

``apply`` shows the plan, asks for confirmation on a terminal (``--yes`` without one), then
plans and writes in one go (``config.apply.apply`` given the config): what it writes is what
storage needs at that moment, so two applies of one file at once both succeed and converge.
(The Python API's ``apply(agenda, plan)`` is the one that refuses a plan made on another
stored state.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from agenda_decl.cli.confirm import confirm
from agenda_decl.cli.context import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    CommandContext,
    build_command_agenda,
    load_checked_config,
    with_ready_agenda,
)
from agenda_decl.config import plan_output
from agenda_decl.config.apply import ApplyResult, apply
from agenda_decl.config.plan import Change, plan

__all__ = ["cmd_apply", "cmd_plan"]


def cmd_plan(context: CommandContext) -> int:
    load_checked_config(context, import_payload_classes=True)
    agenda = build_command_agenda(context, read_only=True)
    args = context.args

    async def work() -> int:
        result = await plan(agenda, context.config, prune=args.prune,
                            base_dir=context.base_dir)
        if args.json:
            context.output.json(plan_output.plan_to_json(result))
        else:
            context.output.print(plan_output.format_plan(result), end="")
        if args.detailed_exitcode and not result.in_sync:
            return EXIT_CHANGES
        return EXIT_OK

    return asyncio.run(with_ready_agenda(context, agenda, work))


def cmd_apply(context: CommandContext) -> int:
    load_checked_config(context, import_payload_classes=True)
    agenda = build_command_agenda(context)
    args = context.args
    output = context.output

    def progress(change: Change) -> None:
        if not args.json:
            output.print(f"  done: {plan_output.format_change(change)}")

    async def work() -> int:
        planned = await plan(agenda, context.config, prune=args.prune,
                             base_dir=context.base_dir)
        if not args.json:
            output.print(plan_output.format_plan(planned, show_unchanged=False), end="")
        if planned.has_changes and not args.yes:
            if not confirm(context, "Apply these changes?", action="apply",
                           flag="--yes (or --auto-approve)", on_stderr=False):
                return EXIT_ERROR
        elif not planned.has_changes and not args.json:
            return EXIT_OK
        result = await apply(agenda, context.config, prune=args.prune, on_change=progress,
                             base_dir=context.base_dir)
        if args.json:
            output.json(_apply_json(result, context.config))
        else:
            output.print(plan_output.format_apply_result(result), end="")
        return EXIT_OK

    return asyncio.run(with_ready_agenda(context, agenda, work))


def _apply_json(result: ApplyResult, config: Any) -> dict[str, Any]:
    return {
        "changed": result.changed,
        "created": result.created, "updated": result.updated,
        "deleted": result.deleted, "unchanged": result.unchanged,
        "duplicates_removed": result.duplicates_removed,
        "done": [plan_output.change_to_json(change, config) for change in result.done],
        "orphaned": [attrs.asdict(orphan) for orphan in result.orphaned],
    }
