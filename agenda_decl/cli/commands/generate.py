"""``agenda-decl generate``: write (or ``--check``) the module of typed job handles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agenda_decl.cli.context import EXIT_ERROR, EXIT_OK, CommandContext, load_checked_config

if TYPE_CHECKING:
    from agenda_decl.config.codegen import Generated

__all__ = ["cmd_generate"]


def cmd_generate(context: CommandContext) -> int:
    from agenda_decl.config.codegen import generate

    config = load_checked_config(context)
    args = context.args
    result = generate(config, context.path, output=args.output, check=args.check)
    if args.check:
        return _report_check(context, result)
    verb = "wrote" if result.stale else "unchanged:"
    context.output.print(f"{verb} {_shown_path(result.path)} ({result.handles} job handles)")
    return EXIT_OK


def _report_check(context: CommandContext, result: Generated) -> int:
    """``generate --check``: 0 when the file matches the config, else 1 with a diff."""
    shown = _shown_path(result.path)
    if not result.stale:
        context.output.print(f"{shown} is up to date ({result.handles} job handles)")
        return EXIT_OK
    what = ("is missing" if result.previous is None
            else f"is stale (it does not match {context.path})")
    context.output.error(f"{shown} {what}; run: agenda-decl generate -c {context.path}")
    if result.previous is not None:
        context.output.write_err("\n".join(result.diff()) + "\n")
    return EXIT_ERROR


def _shown_path(path: Path) -> str:
    """``path`` relative to the current directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
