"""Asking before a command changes storage: on a terminal, a question answered ``yes``;
without one, a refusal that names the option to pass instead (``--yes``)."""

from __future__ import annotations

import sys

from agenda_decl.cli.context import CommandContext

__all__ = ["confirm"]


def confirm(
    context: CommandContext, question: str, *, action: str, flag: str = "--yes",
    on_stderr: bool = True,
) -> bool:
    """Whether the user confirmed ``question`` (``Delete 3 job(s)?``). Without a terminal
    on stdin, reports ``not_confirmed`` and returns False: ``action`` (``delete``) names what
    was refused, ``flag`` the option that skips the question. The question goes to stderr
    (``on_stderr``), so stdout keeps only the result (JSON with ``--json``)."""
    if not sys.stdin.isatty():
        context.report(
            "not_confirmed",
            f"refusing to {action} without confirmation: stdin is not a terminal. "
            f"Pass {flag} to {action} non-interactively.",
        )
        return False
    prompt = f"{question} Type 'yes' to confirm: "
    if on_stderr:
        context.output.write_err(prompt)
    else:
        context.output.print(prompt, end="")
    try:
        answer = sys.stdin.readline().strip().lower()
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer not in ("y", "yes"):
        context.report("not_confirmed", f"{action} cancelled; nothing was written.")
        return False
    return True
