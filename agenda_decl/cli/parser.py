"""The command line: the commands, their options, and the types of option values.

argparse's own usage errors exit 2, which is also the "changes pending" answer of ``plan
--detailed-exitcode``; here they are raised as :class:`UsageError`, which ``main`` reports
with exit code 1. Durations on the command line need a unit (``--exit-after "10 seconds"``):
a bare number is refused, where the Python API would read it as milliseconds.
"""

from __future__ import annotations

import argparse

from agenda_decl import __version__
from agenda_decl.cli.arguments import (
    Commands,
    RaisingParser,
    UsageError,
    parse_duration,
    port,
    positive_int,
    python_file,
)
from agenda_decl.cli.jobs_parser import add_jobs
from agenda_decl.cli.logs_parser import add_logs

__all__ = ["DEFAULT_CONFIG", "UsageError", "build_parser", "parse_duration"]

DEFAULT_CONFIG = "agenda.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = RaisingParser(
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
    config_option = RaisingParser(add_help=False)
    config_option.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, metavar="FILE",
        help=f"the config file (default: ./{DEFAULT_CONFIG})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in (_add_validate, _add_plan, _add_apply, _add_run, _add_generate,
                        add_jobs, add_logs, _add_dashboard):
        add_command(commands, config_option)
    return parser


def _add_validate(commands: Commands, config_option: RaisingParser) -> None:
    validate = commands.add_parser(
        "validate", parents=[config_option], help="check the file (no database needed)",
        description="Check the config file: syntax, types, durations, cron, time zones, "
        "payload classes (imported) and schedule data. Connects to nothing and imports no "
        "handler.",
    )
    validate.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_plan(commands: Commands, config_option: RaisingParser) -> None:
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


def _add_apply(commands: Commands, config_option: RaisingParser) -> None:
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


def _add_run(commands: Commands, config_option: RaisingParser) -> None:
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
    run.add_argument("--wait-for-store", type=parse_duration, default=0, metavar="DURATION",
                     help="at start, retry an unreachable store for up to this long (a line "
                     "per attempt) instead of exiting at once, e.g. '60s'")
    run.add_argument("--concurrency", type=positive_int, metavar="N",
                     help="jobs running at once in this worker (default: "
                     "scheduler.max_concurrency)")
    run.add_argument("--only", nargs="+", metavar="NAME",
                     help="run only jobs of these names")
    run.add_argument("--exclude", nargs="+", metavar="NAME",
                     help="do not run jobs of these names")
    run.add_argument("--metrics-port", type=port, metavar="PORT",
                     help="serve Prometheus metrics on /metrics and a health check on "
                     "/healthz at this port (needs agenda-decl[metrics])")
    run.add_argument("--metrics-host", default="0.0.0.0", metavar="HOST",
                     help="the address the metrics port listens on (default: 0.0.0.0, every "
                     "interface, for container probes)")
    run.add_argument("--log-format", choices=("text", "json"), default="text",
                     help="json: one JSON object per line (event, job id, name, duration, "
                     "error)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="print the traceback of each failure under its line")


def _add_generate(commands: Commands, config_option: RaisingParser) -> None:
    generate = commands.add_parser(
        "generate", parents=[config_option], help="write the module of typed job handles",
        description="Write the module of typed job handles (codegen.output, relative to the "
        "config file; default agenda_jobs.py) that application code imports. Needs no "
        "database and imports nothing.",
    )
    generate.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 when the file is missing or stale")
    generate.add_argument("--output", metavar="PATH", type=python_file,
                          help="write here instead of codegen.output")


def _add_dashboard(commands: Commands, config_option: RaisingParser) -> None:
    dashboard = commands.add_parser(
        "dashboard", parents=[config_option], help="serve a web dashboard of the jobs",
        description="Serve a web page over the store: an overview per job name, the jobs "
        "(filters, sorting, paging), each job's fields, data, history and traceback with "
        "actions (retry, run now, pause, resume, delete; each confirmed), and the schedules "
        "of the file beside their stored jobs. Needs agenda-decl[dashboard]. Binding another "
        "address than 127.0.0.1 needs AGENDA_DECL_DASHBOARD_TOKEN, or "
        "AGENDA_DECL_DASHBOARD_USER and AGENDA_DECL_DASHBOARD_PASSWORD, in the environment.",
    )
    dashboard.add_argument("--host", default="127.0.0.1", metavar="HOST",
                           help="the address to listen on (default: 127.0.0.1, this machine "
                           "only)")
    dashboard.add_argument("--port", type=port, default=8080, metavar="PORT",
                           help="the port (default: 8080; 0: any free one)")
    dashboard.add_argument("--read-only", action="store_true",
                           help="offer no actions and refuse every POST")
