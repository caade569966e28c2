"""The commands of ``agenda-decl``, by name: each takes the command's context and returns the
exit code."""

from __future__ import annotations

from collections.abc import Callable

from agenda_decl.cli.commands.dashboard import cmd_dashboard
from agenda_decl.cli.commands.generate import cmd_generate
from agenda_decl.cli.commands.jobs import cmd_jobs
from agenda_decl.cli.commands.logs import cmd_logs
from agenda_decl.cli.commands.plan import cmd_apply, cmd_plan
from agenda_decl.cli.commands.validate import cmd_validate
from agenda_decl.cli.context import CommandContext
from agenda_decl.cli.worker import cmd_run

__all__ = ["COMMANDS"]

COMMANDS: dict[str, Callable[[CommandContext], int]] = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "apply": cmd_apply,
    "run": cmd_run,
    "generate": cmd_generate,
    "jobs": cmd_jobs,
    "logs": cmd_logs,
    "dashboard": cmd_dashboard,
}
