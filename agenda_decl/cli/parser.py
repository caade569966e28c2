"""The command line: the commands, their options, and the types of option values.

argparse's own usage errors exit 2, which is also the "changes pending" answer of ``plan
--detailed-exitcode``; here they are raised as :class:`UsageError`, which ``main`` reports
with exit code 1. Durations on the command line need a unit (``--exit-after "10 seconds"``):
a bare number is refused, where the Python API would read it as milliseconds.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta
from typing import NoReturn, TypeAlias

from agenda_decl import __version__, timing
from agenda_decl._clock import utcnow
from agenda_decl._job_log import LOG_EVENTS, LOG_LEVELS
from agenda_decl._model import JOB_STATES
from agenda_decl.errors import AgendaError

__all__ = ["DEFAULT_CONFIG", "UsageError", "build_parser", "parse_duration"]

DEFAULT_CONFIG = "agenda.yaml"
_BARE_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def parse_duration(text: str) -> int:
    """A command-line duration in ms. A bare number is refused: the Python API reads it as
    milliseconds, which on a command line (``--exit-after 5``) is rarely what was meant."""
    text = text.strip()
    if _BARE_NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} needs a unit; did you mean '{text} seconds'?")
    try:
        return timing.parse_duration(text)
    except AgendaError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: expected a number with a unit, e.g. '30 seconds', "
            "'500 ms' or '2 minutes'") from None


def _python_file(text: str) -> str:
    if not text.endswith(".py"):
        raise argparse.ArgumentTypeError(f"expected a path to a .py file, got {text!r}")
    return text


def _page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0 = all), got {text!r}")
    return value


class UsageError(Exception):
    """A command line argparse refuses; ``usage`` is the usage text of the (sub)command."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _RaisingParser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of exiting 2 (see the module docstring)."""

    def error(self, message: str) -> NoReturn:
        # "argument --exit-after: ..." -> "--exit-after: ...": the option first, as
        # config errors put the field first.
        raise UsageError(message.removeprefix("argument "), self.format_usage())


_Commands: TypeAlias = "argparse._SubParsersAction[_RaisingParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = _RaisingParser(
        prog="agenda-decl",
        description="A typed job queue and scheduler driven by agenda.yaml.",
        epilog="Exit codes: 0 ok, 1 error (a usage error too), 2 storage differs from the file "
        "(plan --detailed-exitcode).",
    )
    parser.add_argument("--version", action="version", version=f"agenda-decl {__version__}")
    parser.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, metavar="FILE",
        help=f"the config file (default: ./{DEFAULT_CONFIG})",
    )
    # -c after the command too (``agenda-decl plan -c x.yaml``), without resetting it there.
    config_option = _RaisingParser(add_help=False)
    config_option.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, metavar="FILE",
        help=f"the config file (default: ./{DEFAULT_CONFIG})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in (_add_validate, _add_plan, _add_apply, _add_run, _add_generate,
                        _add_jobs, _add_logs):
        add_command(commands, config_option)
    return parser


def _add_validate(commands: _Commands, config_option: _RaisingParser) -> None:
    validate = commands.add_parser(
        "validate", parents=[config_option], help="check the file (no database needed)",
        description="Check the config file: syntax, types, durations, cron, time zones, "
        "payload classes (imported) and schedule data. Connects to nothing and imports no "
        "handler.",
    )
    validate.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_plan(commands: _Commands, config_option: _RaisingParser) -> None:
    plan = commands.add_parser(
        "plan", parents=[config_option], help="show what apply would change",
        description="Compare the declared schedules with storage and show what apply would "
        "create, update or delete, with the next three fire times. Writes nothing.",
    )
    plan.add_argument("--prune", action="store_true",
                      help="plan deleting this file's jobs that are no longer declared")
    plan.add_argument("--detailed-exitcode", action="store_true",
                      help="exit 0 when storage matches the file, 2 when it does not (changes "
                      "to apply, or orphaned jobs only --prune deletes), 1 on error")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")


def _add_apply(commands: _Commands, config_option: _RaisingParser) -> None:
    apply = commands.add_parser(
        "apply", parents=[config_option], help="make storage match the declared schedules",
        description="Create, update (and with --prune delete) the repeating jobs of the "
        "declared schedules. Asks for confirmation on a terminal; without a terminal it "
        "needs --yes.",
    )
    apply.add_argument("--prune", action="store_true",
                       help="delete this file's jobs whose schedule is no longer declared")
    apply.add_argument("-y", "--yes", "--auto-approve", dest="yes", action="store_true",
                       help="apply without asking")
    apply.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_run(commands: _Commands, config_option: _RaisingParser) -> None:
    run = commands.add_parser(
        "run", parents=[config_option], help="run a worker",
        description="Import the handlers, process jobs and print one line per job start, "
        "success and failure. SIGTERM or SIGINT drains: no new jobs are claimed and running "
        "ones get --drain-timeout to finish (a second signal stops at once).",
    )
    run.add_argument("--drain-timeout", type=parse_duration, default=30_000,
                     metavar="DURATION", help="how long running jobs may take to finish on "
                     "shutdown (default: 30 seconds)")
    run.add_argument("--exit-after", type=parse_duration, default=None, metavar="DURATION",
                     help="drain and exit after this long (for demos), e.g. '10 seconds'")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="print the traceback of each failure under its line")


def _add_generate(commands: _Commands, config_option: _RaisingParser) -> None:
    generate = commands.add_parser(
        "generate", parents=[config_option], help="write the module of typed job handles",
        description="Write the module of typed job handles (codegen.output, relative to the "
        "config file; default agenda_jobs.py) that application code imports. Needs no "
        "database and imports nothing.",
    )
    generate.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 when the file is missing or stale")
    generate.add_argument("--output", metavar="PATH", type=_python_file,
                          help="write here instead of codegen.output")


def _add_jobs(commands: _Commands, config_option: _RaisingParser) -> None:
    jobs = commands.add_parser(
        "jobs", parents=[config_option], help="list jobs and their state",
        description="List the jobs in storage with their computed state (repeating: an "
        "interval, cron or time of day) and whether they are disabled (a flag of its own: a "
        "disabled job keeps its state).",
    )
    jobs.add_argument("--name", help="only jobs of this name")
    jobs.add_argument("--state", choices=JOB_STATES,
                      help="only jobs in this computed state (the STATE column)")
    enabled = jobs.add_mutually_exclusive_group()
    enabled.add_argument("--disabled", action="store_true",
                         help="only disabled jobs (the DISABLED column; any state)")
    enabled.add_argument("--enabled", action="store_true", help="only jobs not disabled")
    jobs.add_argument("--limit", type=_page_size, default=100,
                      help="show at most this many (default 100; 0 = all)")
    jobs.add_argument("--json", action="store_true", help="print the jobs as JSON")


# -- agenda-decl logs ---------------------------------------------------------------------------


def _since(text: str) -> datetime:
    """``--since``: a duration back from now ('2 hours') or a date ('2026-01-05', ISO 8601,
    'yesterday', '30 minutes ago')."""
    if _BARE_NUMBER.fullmatch(text.strip()):
        parse_duration(text)  # refused: "needs a unit"
    try:
        return utcnow() - timedelta(milliseconds=parse_duration(text))
    except argparse.ArgumentTypeError:
        pass
    try:
        return timing.parse_date(text, field="--since")
    except AgendaError:
        raise argparse.ArgumentTypeError(
            f"invalid {text!r}: a duration back from now ('2 hours') or a date ('2026-01-05', "
            "'2026-01-05T10:00:00Z', 'yesterday')") from None


def _add_logs(commands: _Commands, config_option: _RaisingParser) -> None:
    logs = commands.add_parser(
        "logs", parents=[config_option], help="show the job log (starts, failures, retries)",
        description="Show the newest entries of the job log (Agenda 6.2's, shared with Node "
        "workers and Agendash), oldest first, a failure's traceback under its line. Reads "
        "the storage only (also with logging off in this file); creates nothing.",
    )
    logs.add_argument("--job", metavar="ID", help="only entries of this job")
    logs.add_argument("--name", help="only entries of jobs of this name")
    logs.add_argument("--level", action="append", choices=LOG_LEVELS,
                      help="only entries of this level (repeat for several)")
    logs.add_argument("--event", action="append", choices=LOG_EVENTS,
                      help="only entries of this event (repeat for several)")
    logs.add_argument("--since", type=_since, metavar="WHEN",
                      help="only entries since then: a duration back ('2 hours') or a date")
    logs.add_argument("--limit", type=_page_size, default=50,
                      help="show at most this many, the newest (default 50; 0 = all)")
    logs.add_argument("--json", action="store_true", help="print the entries as JSON")
