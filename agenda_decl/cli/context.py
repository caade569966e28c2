"""What every command works with: the parsed arguments, the output, the config file it loads
and the Agenda built from it, the exit codes."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from agenda_decl.agenda import Agenda
from agenda_decl.cli.output import ErrorEventPrinter, Output, report_error
from agenda_decl.config.model import AgendaConfig

__all__ = [
    "EXIT_CHANGES",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_STDOUT_CLOSED",
    "CommandContext",
    "CommandFailed",
    "build_command_agenda",
    "load_checked_config",
    "with_ready_agenda",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
#: What a shell reports for a command that SIGPIPE ended (128 + 13): stdout's reader went
#: away before the output was written (``| head``).
EXIT_STDOUT_CLOSED = 141


class CommandFailed(Exception):
    """An expected failure whose message is already written; carries the exit code."""

    def __init__(self, code: int = EXIT_ERROR) -> None:
        super().__init__(code)
        self.code = code


@attrs.define
class CommandContext:
    args: argparse.Namespace
    output: Output
    path: Path
    errors: ErrorEventPrinter
    #: The loaded file (set by :func:`load_checked_config`).
    config: Any = None

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent

    @property
    def wants_json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def report(self, kind: str, message: str, problems: list[dict[str, Any]] | None = None,
               *, human: str | None = None) -> None:
        """An error of the command (see :func:`report_error`). validate's JSON keeps its own
        shape as well: ``valid`` and ``issues`` beside ``error``."""
        extra = ({"valid": False, "issues": problems or []}
                 if self.args.command == "validate" else {})
        report_error(self.output, self.wants_json, kind, message, problems, human=human,
                     extra=extra)


def load_checked_config(
    context: CommandContext, *, import_payload_classes: bool = False
) -> AgendaConfig:
    """The config file, checked; ``import_payload_classes`` for the commands that need the
    classes anyway (validate, plan, apply), so a class that cannot be imported is reported at
    its ``payload:`` value."""
    from agenda_decl.config.load import load_config

    if not context.path.is_file():
        context.report("config", f"config file not found: {context.path}", [
            {"file": str(context.path), "line": None, "column": None, "path": "",
             "message": "file not found"}])
        raise CommandFailed
    config = load_config(context.path, import_payload_classes=import_payload_classes)
    context.config = config
    return config


def build_command_agenda(
    context: CommandContext, *, import_handlers: bool = False, read_only: bool = False
) -> Agenda:
    """The Agenda of the file; ``read_only`` for the commands that only look (plan, jobs):
    they create nothing in storage, and a store that does not exist yet reads as empty."""
    from agenda_decl.config.build import build_agenda

    agenda = build_agenda(context.config, import_handlers=import_handlers,
                          base_dir=context.base_dir, read_only=read_only)
    agenda.on("error", context.errors.add)
    return agenda


async def with_ready_agenda(
    context: CommandContext, agenda: Agenda, work: Callable[[], Awaitable[int]]
) -> int:
    """Connect, run ``work``, and stop the agenda however it ends."""
    try:
        await agenda.ready()
        context.errors.go_live()
        return await work()
    finally:
        with contextlib.suppress(Exception):
            await agenda.stop()
