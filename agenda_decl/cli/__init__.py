"""The ``agenda-decl`` command: validate, plan, apply, run, generate handles for and inspect an
``agenda.yaml``.

Exit codes:

* 0 success;
* 1 an error: a broken file, an unreachable backend, a refused or cancelled apply, a worker
  whose ``--exit-after`` drain timed out with jobs still running, a usage error such as an
  unknown option (never 2, unlike argparse's default);
* 2 with ``plan --detailed-exitcode`` when storage does not match the file (changes to apply,
  or orphaned jobs that only ``--prune`` deletes);
* 128 + the signal's number (130 SIGINT, 143 SIGTERM, as a shell reports a process a signal
  ended) when a worker stopped by a signal left jobs running: a second signal, or the first
  one's drain timing out. The worker exits at once, even with plain ``def`` handlers still
  running in their threads;
* 141 (128 + SIGPIPE) when stdout's reader went away (``agenda-decl jobs | head -2``): the
  rest of the output is dropped without a message, and a worker drains as on SIGTERM.

Errors go to stderr, one line each, without a traceback (set ``AGENDA_DECL_DEBUG=1`` to get
one for an unexpected error). With ``--json`` every error is also one JSON object on stdout
(see :func:`~agenda_decl.cli.output.report_error`), so that a script reading stdout always
gets JSON; the text stays on stderr for whoever watches the terminal or the log.

Nothing secret is printed, by one rule (``agenda_decl._secrets``) applied in one place
(:mod:`~agenda_decl.cli.output`): connection strings appear with only their password masked,
values the file took from the environment as the file wrote them (``${TOKEN}``), and every
line written (log records and drivers' error messages too) passes through a filter that masks
the password of each connection string and ``password=`` field in it, where it sits.

The package: :mod:`.parser` (the command line), :mod:`.commands` (one module per command
group), :mod:`.worker` (``run``), :mod:`.output` (everything printed) and :mod:`.context`
(what a command works with).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import attrs

from agenda_decl.cli.commands import COMMANDS
from agenda_decl.cli.context import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_STDOUT_CLOSED,
    CommandContext,
    CommandFailed,
)
from agenda_decl.cli.output import (
    ErrorEventPrinter,
    Output,
    logging_to,
    one_line,
    report_error,
)
from agenda_decl.cli.parser import UsageError, build_parser
from agenda_decl.config.errors import ConfigError
from agenda_decl.errors import AgendaError, JobNotFoundError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """The console script ``agenda-decl``; returns the exit code."""
    output = Output()
    try:
        code = _main(argv, output)
    except BrokenPipeError:  # stdout written by argparse (--help), not through Output
        output.stdout_gone()
        code = EXIT_OK
    return EXIT_STDOUT_CLOSED if output.stdout_closed and code == EXIT_OK else code


def _main(argv: list[str] | None, output: Output) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        output.write_err(error.usage)
        report_error(output, _wants_json(sys.argv[1:] if argv is None else argv), "usage",
                     str(error))
        return EXIT_ERROR
    except SystemExit as done:  # --help and --version, printed: their code is 0
        output.out.flush()  # a closed stdout shows here, not as a complaint at exit
        return done.code if isinstance(done.code, int) else EXIT_ERROR
    context = CommandContext(args=args, output=output, path=Path(args.config),
                             errors=ErrorEventPrinter(output))
    with logging_to(output, logging.WARNING):
        return _run_command(context)


def _wants_json(argv: list[str]) -> bool:
    """Whether a command line that argparse refused asked for JSON (``--json``, or a prefix of
    it, which argparse accepts)."""
    return any(len(arg) > 3 and "--json".startswith(arg) for arg in argv)


def _run_command(context: CommandContext) -> int:
    try:
        return COMMANDS[context.args.command](context)
    except CommandFailed as failure:
        return failure.code
    except AgendaError as error:
        context.errors.drop_causes_of(error)
        context.errors.go_live()
        _report_agenda_error(context, error)
        return EXIT_ERROR
    except KeyboardInterrupt:
        context.report("interrupted", "interrupted")
        return 130
    except Exception as error:
        _report_unexpected(context, error)
        return EXIT_ERROR


def _report_agenda_error(context: CommandContext, error: AgendaError) -> None:
    if isinstance(error, ConfigError):
        context.report("config", str(error), [attrs.asdict(issue) for issue in error.issues])
    elif isinstance(error, JobNotFoundError):
        context.report("not_found", one_line(str(error)))
    else:
        kind = "backend" if isinstance(error, ConnectionError) else "agenda"
        context.report(kind, one_line(str(error)))


def _report_unexpected(context: CommandContext, error: Exception) -> None:
    message = f"{type(error).__name__}: {error}"
    if os.environ.get("AGENDA_DECL_DEBUG"):
        import traceback

        human = traceback.format_exc()
    else:
        human = f"unexpected error: {message} (set AGENDA_DECL_DEBUG=1 for a traceback)"
    context.report("unexpected", message, human=human)
