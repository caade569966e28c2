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
(see :func:`_report`), so that a script reading stdout always gets JSON; the text stays on
stderr for whoever watches the terminal or the log.

Durations on the command line need a unit (``--exit-after "10 seconds"``): a bare number is
refused, where the Python API would read it as milliseconds.

Nothing secret is printed, by one rule (``agenda_decl._secrets``): connection strings appear
with only their password masked, values the file took from the environment as the file wrote
them (``${TOKEN}``), and every line written (log records and drivers' error messages too)
passes through a filter that masks the password of each connection string and ``password=``
field in it, where it sits.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import attrs

from agenda_decl import __version__, timing
from agenda_decl._model import (
    JOB_STATES,
    JobsQueryOptions,
    JobsResult,
    JobWithState,
    SortDirection,
    SortKey,
)
from agenda_decl._secrets import mask_text, shown
from agenda_decl.agenda import Agenda
from agenda_decl.config.errors import ConfigError
from agenda_decl.errors import AgendaError
from agenda_decl.job import Job

if TYPE_CHECKING:
    from agenda_decl.config.codegen import Generated

DEFAULT_CONFIG = "agenda.yaml"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
#: What a shell reports for a command that SIGPIPE ended (128 + 13): stdout's reader went
#: away before the output was written (``| head``).
EXIT_STDOUT_CLOSED = 141
_BARE_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


# -- output -----------------------------------------------------------------------------------


class Output:
    """stdout/stderr; every line passes through :meth:`mask` (a driver's message may quote a
    connection string)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        #: The last log messages written (masked), so an error event is not printed twice.
        self.logged: collections.deque[str] = collections.deque(maxlen=20)
        #: Whether stdout's reader went away (``agenda-decl jobs | head -2``).
        self.stdout_closed = False
        #: Called once when it does (a worker then drains).
        self.on_stdout_closed: Callable[[], None] | None = None

    def mask(self, text: str) -> str:
        """The password of each connection string and ``password=`` field masked."""
        return mask_text(text)

    def print(self, text: str = "", *, end: str = "\n") -> None:
        try:
            self.out.write(self.mask(text) + end)
            self.out.flush()
        except BrokenPipeError:
            self.stdout_gone()

    def stdout_gone(self) -> None:
        """The reader of stdout has gone: the rest of the output is discarded without a
        message, as a command that SIGPIPE ends says nothing either. stdout's descriptor is
        pointed at the null device (Python's "Note on SIGPIPE"), so neither a later write nor
        the flush at exit raises again."""
        if self.stdout_closed:
            return
        self.stdout_closed = True
        with contextlib.suppress(OSError, ValueError):  # not a real file (a test's StringIO)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)
        if self.on_stdout_closed is not None:
            self.on_stdout_closed()

    def error(self, text: str) -> None:
        for line in self.mask(text).splitlines() or [""]:
            self.err.write(f"agenda-decl: {line}\n" if line else "\n")
        self.err.flush()

    def json(self, value: Any) -> None:
        self.print(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if attrs.has(type(value)):
        return attrs.asdict(value)
    return str(value)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _MaskingFilter(logging.Filter):
    def __init__(self, output: Output) -> None:
        super().__init__()
        self.output = output

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.output.mask(record.getMessage())
        record.args = None
        self.output.logged.append(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.output.mask(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        return True


@contextlib.contextmanager
def _logging_to(output: Output, level: int) -> Iterator[None]:
    """Log records of agenda_decl (and drivers) to stderr, masked, for the command's life."""
    handler = logging.StreamHandler(output.err)
    handler.setFormatter(logging.Formatter("agenda-decl: %(levelname)s: %(message)s"))
    handler.addFilter(_MaskingFilter(output))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


# -- the parser -------------------------------------------------------------------------------


def _duration(text: str) -> int:
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


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0 = all), got {text!r}")
    return value


class _UsageError(Exception):
    """A command line argparse refuses; ``usage`` is the usage text of the (sub)command."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which is also the "changes pending" answer of
    ``plan --detailed-exitcode``: a typo in a CI script would read as pending changes. Errors
    are raised instead, and :func:`main` reports them with exit code 1."""

    def error(self, message: str) -> NoReturn:
        # "argument --exit-after: ..." -> "--exit-after: ...": the option first, as
        # config errors put the field first.
        raise _UsageError(message.removeprefix("argument "), self.format_usage())


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, metavar="FILE",
        help=f"the config file (default: ./{DEFAULT_CONFIG})",
    )
    parser = _Parser(
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate", parents=[common], help="check the file (no database needed)",
        description="Check the config file: syntax, types, durations, cron, time zones, "
        "payload classes (imported) and schedule data. Connects to nothing and imports no "
        "handler.",
    )
    validate.add_argument("--json", action="store_true", help="print the result as JSON")

    plan = commands.add_parser(
        "plan", parents=[common], help="show what apply would change",
        description="Compare the declared schedules with storage and show what apply would "
        "create, update or delete, with the next three fire times. Writes nothing.",
    )
    plan.add_argument("--prune", action="store_true",
                      help="plan deleting this file's jobs that are no longer declared")
    plan.add_argument("--detailed-exitcode", action="store_true",
                      help="exit 0 when storage matches the file, 2 when it does not (changes "
                      "to apply, or orphaned jobs only --prune deletes), 1 on error")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")

    apply = commands.add_parser(
        "apply", parents=[common], help="make storage match the declared schedules",
        description="Create, update (and with --prune delete) the repeating jobs of the "
        "declared schedules. Asks for confirmation on a terminal; without a terminal it "
        "needs --yes.",
    )
    apply.add_argument("--prune", action="store_true",
                       help="delete this file's jobs whose schedule is no longer declared")
    apply.add_argument("-y", "--yes", "--auto-approve", dest="yes", action="store_true",
                       help="apply without asking")
    apply.add_argument("--json", action="store_true", help="print the result as JSON")

    run = commands.add_parser(
        "run", parents=[common], help="run a worker",
        description="Import the handlers, process jobs and print one line per job start, "
        "success and failure. SIGTERM or SIGINT drains: no new jobs are claimed and running "
        "ones get --drain-timeout to finish (a second signal stops at once).",
    )
    run.add_argument("--drain-timeout", type=_duration, default=30_000, metavar="DURATION",
                     help="how long running jobs may take to finish on shutdown (default: 30 "
                     "seconds)")
    run.add_argument("--exit-after", type=_duration, default=None, metavar="DURATION",
                     help="drain and exit after this long (for demos), e.g. '10 seconds'")

    generate = commands.add_parser(
        "generate", parents=[common], help="write the module of typed job handles",
        description="Write the module of typed job handles (codegen.output, relative to the "
        "config file; default agenda_jobs.py) that application code imports. Needs no "
        "database and imports nothing.",
    )
    generate.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 when the file is missing or stale")
    generate.add_argument("--output", metavar="PATH", type=_python_file,
                          help="write here instead of codegen.output")

    jobs = commands.add_parser(
        "jobs", parents=[common], help="list jobs and their state",
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
    jobs.add_argument("--limit", type=_limit, default=100,
                      help="show at most this many (default 100; 0 = all)")
    jobs.add_argument("--json", action="store_true", help="print the jobs as JSON")
    return parser


# -- commands ---------------------------------------------------------------------------------


class _Failure(Exception):
    """An expected failure whose message is already written; carries the exit code."""

    def __init__(self, code: int = EXIT_ERROR) -> None:
        super().__init__(code)
        self.code = code


@attrs.define
class _Context:
    args: argparse.Namespace
    output: Output
    path: Path
    errors: _ErrorSink
    config: Any = None

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent

    def report(self, kind: str, message: str, problems: list[dict[str, Any]] | None = None,
               *, human: str | None = None) -> None:
        """An error of the command (see :func:`_report`). validate's JSON keeps its own shape
        as well: ``valid`` and ``issues`` beside ``error``."""
        extra = ({"valid": False, "issues": problems or []}
                 if self.args.command == "validate" else {})
        _report(self.output, bool(getattr(self.args, "json", False)), kind, message, problems,
                human=human, extra=extra)


def _report(
    output: Output, as_json: bool, kind: str, message: str,
    problems: list[dict[str, Any]] | None = None, *, human: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """An error: its text on stderr (``human``, else ``message``) and, with ``--json``, also
    on stdout as one JSON object, so that a script reading stdout never gets nothing:
    ``{"error": {"kind": ..., "message": ..., "problems": [...]}}``. ``problems`` are the
    config problems, each with file, line, column, path and message."""
    output.error(human if human is not None else message)
    if as_json:
        output.json({**(extra or {}), "error": {
            "kind": kind, "message": output.mask(message), "problems": problems or []}})


def _load(context: _Context, *, import_payload_classes: bool = False) -> Any:
    """The config file, checked; ``import_payload_classes`` for the commands that need the
    classes anyway (validate, plan, apply), so a class that cannot be imported is reported at
    its ``payload:`` value."""
    from agenda_decl.config.load import load_config

    if not context.path.is_file():
        context.report("config", f"config file not found: {context.path}", [
            {"file": str(context.path), "line": None, "column": None, "path": "",
             "message": "file not found"}])
        raise _Failure
    config = load_config(context.path, import_payload_classes=import_payload_classes)
    context.config = config
    return config


def _agenda(
    context: _Context, *, import_handlers: bool = False, read_only: bool = False
) -> Agenda:
    """The Agenda of the file; ``read_only`` for the commands that only look (plan, jobs):
    they create nothing in storage, and a store that does not exist yet reads as empty."""
    from agenda_decl.config.build import build_agenda

    agenda = build_agenda(context.config, import_handlers=import_handlers,
                          base_dir=context.base_dir, read_only=read_only)
    agenda.on("error", context.errors.add)
    return agenda


class _ErrorSink:
    """The agenda's ``error`` events. Until :meth:`go_live` they are held back: when
    connecting fails, the same error comes back as the command's own error and is printed
    once; otherwise the held ones are printed as warnings (a channel that could not connect,
    so the scheduler polls)."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.held: list[BaseException] = []
        self.live = False

    def add(self, error: BaseException) -> None:
        if not self.live:
            self.held.append(error)
            return
        text = self.output.mask(str(error))
        if not any(text in logged for logged in self.output.logged):  # said already
            self.output.error(f"warning: {_one_line(text)}")

    def go_live(self) -> None:
        self.live = True
        held, self.held = self.held, []
        for error in held:
            self.add(error)

    def drop_causes_of(self, final: BaseException) -> None:
        text = str(final)
        self.held = [error for error in self.held
                     if error is not final.__cause__ and str(error) not in text]


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text).strip()


async def _closing(
    context: _Context, agenda: Agenda, work: Callable[[], Awaitable[int]]
) -> int:
    try:
        await agenda.ready()
        context.errors.go_live()
        return await work()
    finally:
        with contextlib.suppress(Exception):
            await agenda.stop()


def cmd_validate(context: _Context) -> int:
    from agenda_decl.config.load import redacted

    output = context.output
    config = _load(context, import_payload_classes=True)
    _check_offline(context)
    if context.args.json:
        output.json({"valid": True, "config": redacted(config)})
        return EXIT_OK
    printable = redacted(config)
    storage = printable.get("backend", {}).get("storage", {})
    notifications = (printable.get("backend", {}).get("notifications") or {}).get("type")
    output.print(f"{context.path}: valid.")
    output.print(f"  owner:         {shown(config.owner)}")
    output.print(f"  storage:       {_describe_store(storage)}")
    output.print(f"  notifications: {notifications or 'the storage channel, if it has one'}")
    output.print(f"  jobs:          {len(config.jobs)} ({', '.join(config.jobs) or 'none'})")
    output.print(f"  schedules:     {len(config.schedules)}")
    return EXIT_OK


def _describe_store(storage: Mapping[str, Any]) -> str:
    kind = storage.get("type", "?")
    where = storage.get("path") or storage.get("connection_string") or storage.get("address")
    return f"{kind} ({where})" if where else str(kind)


def _check_offline(context: _Context) -> None:
    """What validate adds to loading, all problems at once: the drivers the backend needs are
    installed, and the schedule checks of plan, without a database. Payload classes are
    imported (as plan does); handlers are not (they may need the application's environment)."""
    from agenda_decl.config.drivers import missing_drivers
    from agenda_decl.config.reconcile import check_schedules

    issues = missing_drivers(context.config)
    try:
        check_schedules(context.config, base_dir=context.base_dir)
    except ConfigError as error:
        issues += error.issues
    if issues:
        raise ConfigError(sorted(issues, key=lambda issue: (issue.line, issue.column)))


def cmd_plan(context: _Context) -> int:
    from agenda_decl.config import plan_output, reconcile

    _load(context, import_payload_classes=True)
    agenda = _agenda(context, read_only=True)
    args = context.args

    async def work() -> int:
        result = await reconcile.plan(agenda, context.config, prune=args.prune,
                                      base_dir=context.base_dir)
        if args.json:
            context.output.json(plan_output.plan_to_json(result))
        else:
            context.output.print(plan_output.format_plan(result), end="")
        if args.detailed_exitcode and not result.in_sync:
            return EXIT_CHANGES
        return EXIT_OK

    return asyncio.run(_closing(context, agenda, work))


def cmd_apply(context: _Context) -> int:
    from agenda_decl.config import plan_output, reconcile

    _load(context, import_payload_classes=True)
    agenda = _agenda(context)
    args = context.args
    output = context.output

    async def work() -> int:
        planned = await reconcile.plan(agenda, context.config, prune=args.prune,
                                       base_dir=context.base_dir)
        if not args.json:
            output.print(plan_output.format_plan(planned, show_unchanged=False), end="")
        if planned.has_changes and not args.yes:
            if not _confirm(context):
                return EXIT_ERROR
        elif not planned.has_changes and not args.json:
            return EXIT_OK

        def progress(change: reconcile.Change) -> None:
            if not args.json:
                output.print(f"  done: {plan_output.format_change(change)}")

        result = await reconcile.apply(agenda, planned, on_change=progress,
                                       base_dir=context.base_dir)
        if args.json:
            output.json({
                "changed": result.changed,
                "created": result.created, "updated": result.updated,
                "deleted": result.deleted, "unchanged": result.unchanged,
                "duplicates_removed": result.duplicates_removed,
                "done": [plan_output.change_to_json(change, context.config)
                         for change in result.done],
                "orphaned": [attrs.asdict(orphan) for orphan in result.orphaned],
            })
        else:
            output.print(plan_output.format_apply_result(result), end="")
        return EXIT_OK

    return asyncio.run(_closing(context, agenda, work))


def _confirm(context: _Context) -> bool:
    output = context.output
    if not sys.stdin.isatty():
        context.report(
            "not_confirmed",
            "refusing to apply without confirmation: stdin is not a terminal. "
            "Pass --yes (or --auto-approve) to apply non-interactively.",
        )
        return False
    output.print("Apply these changes? Type 'yes' to confirm: ", end="")
    try:
        answer = sys.stdin.readline().strip().lower()
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer not in ("y", "yes"):
        context.report("not_confirmed", "apply cancelled; nothing was written.")
        return False
    return True


def cmd_jobs(context: _Context) -> int:
    _load(context)
    agenda = _agenda(context, read_only=True)
    args = context.args

    async def work() -> int:
        result = await _query_jobs(agenda, args)
        if args.json:
            context.output.json({"total": result.total, "jobs": [
                _job_json(job, context.config) for job in result.jobs]})
        else:
            _print_jobs(context.output, result.jobs, result.total)
        return EXIT_OK

    return asyncio.run(_closing(context, agenda, work))


async def _query_jobs(agenda: Agenda, args: argparse.Namespace) -> JobsResult:
    sort: dict[SortKey, SortDirection] = {"name": "asc", "next_run_at": "asc"}
    if not (args.disabled and args.state):
        return await agenda.query_jobs(JobsQueryOptions(
            name=args.name, state="paused" if args.disabled else args.state,
            include_disabled=not args.enabled, limit=args.limit, sort=sort,
        ))
    # A state and --disabled: the store filters one of them (its "paused" filter selects the
    # disabled jobs, usually few); the state is matched here, then the page is cut.
    disabled = await agenda.query_jobs(JobsQueryOptions(name=args.name, state="paused",
                                                        sort=sort))
    jobs = [job for job in disabled.jobs if job.state == args.state]
    return JobsResult(jobs=jobs[: args.limit or None], total=len(jobs))


def _job_json(job: JobWithState[Any], config: Any) -> dict[str, Any]:
    data = job.data if isinstance(job.data, Mapping) else None
    field = _shown_field(job, config)
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "disabled": job.disabled,
        "next_run_at": job.next_run_at,
        "last_run_at": job.last_run_at,
        "last_finished_at": job.last_finished_at,
        "failed_at": job.failed_at,
        "fail_count": job.fail_count or 0,
        "fail_reason": job.fail_reason,
        "priority": field("priority", job.priority),
        "type": job.type,
        "repeat_interval": field("repeat_interval", job.repeat_interval),
        "repeat_timezone": field("repeat_timezone", job.repeat_timezone),
        "repeat_at": field("repeat_at", job.repeat_at),
        "managed_by": _managed_by(job, config),
        "schedule_key": data.get("__schedule_key__") if data else None,
        "data": _shown_job_data(job, config),
    }


def _schedule_key(job: JobWithState[Any], config: Any) -> str | None:
    """The key of the schedule of this file that ``job`` belongs to, if it is one of them."""
    from agenda_decl.config.payload import MANAGED_BY_KEY, SCHEDULE_KEY_KEY

    data = job.data
    if not isinstance(data, Mapping) or data.get(MANAGED_BY_KEY) != config.owner:
        return None
    return str(data.get(SCHEDULE_KEY_KEY))


def _shown_job_data(job: JobWithState[Any], config: Any) -> Any:
    """The data of a job of one of this file's schedules prints as the file would: the
    values at positions it fills from the environment as their ``${VAR}`` reference."""
    from agenda_decl.config.load import shown_data
    from agenda_decl.config.payload import MANAGED_BY_KEY

    key = _schedule_key(job, config)
    if key is None:
        return job.data
    # The owner marker is scheduler.name: printed as the file has it.
    return {**shown_data(config, job.name, key, job.data), MANAGED_BY_KEY: shown(config.owner)}


def _managed_by(job: JobWithState[Any], config: Any) -> Any:
    if _schedule_key(job, config) is not None:
        return shown(config.owner)
    return job.data.get("__managed_by__") if isinstance(job.data, Mapping) else None


def _shown_field(job: JobWithState[Any], config: Any) -> Callable[[str, Any], Any]:
    """The same for the fields its schedule's options set (``every``, ``timezone``, ...)."""
    from agenda_decl.config.load import shown_field

    key = _schedule_key(job, config)
    if key is None:
        return lambda _name, value: value
    return lambda name, value: shown_field(config, job.name, key, name, value)


def _print_jobs(output: Output, jobs: list[JobWithState[Any]], total: int) -> None:
    if not jobs:
        output.print("No jobs." if total == 0 else f"No jobs on this page ({total} in all).")
        return
    header = ("ID", "NAME", "STATE", "DISABLED", "NEXT RUN (UTC)", "LAST RUN (UTC)", "FAILS")
    rows = [
        (
            str(job.id),
            job.name,
            job.state,
            "yes" if job.disabled else "no",
            _short_time(job.next_run_at),
            _short_time(job.last_run_at),
            str(job.fail_count or 0),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        output.print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip())
    if total > len(jobs):
        output.print(f"({len(jobs)} of {total} shown; --limit 0 shows all)")


def _short_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- generate ---------------------------------------------------------------------------------


def cmd_generate(context: _Context) -> int:
    from agenda_decl.config.codegen import generate

    config = _load(context)
    args = context.args
    result = generate(config, context.path, output=args.output, check=args.check)
    if args.check:
        return _report_check(context, result)
    verb = "wrote" if result.stale else "unchanged:"
    context.output.print(f"{verb} {_shown_path(result.path)} ({result.handles} job handles)")
    return EXIT_OK


def _report_check(context: _Context, result: Generated) -> int:
    """``generate --check``: 0 when the file matches the config, else 1 with a diff."""
    shown = _shown_path(result.path)
    if not result.stale:
        context.output.print(f"{shown} is up to date ({result.handles} job handles)")
        return EXIT_OK
    what = ("is missing" if result.previous is None
            else f"is stale (it does not match {context.path})")
    context.output.error(f"{shown} {what}; run: agenda-decl generate -c {context.path}")
    if result.previous is not None:
        context.output.err.write("\n".join(result.diff()) + "\n")
    return EXIT_ERROR


def _shown_path(path: Path) -> str:
    """``path`` relative to the current directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# -- run --------------------------------------------------------------------------------------


def cmd_run(context: _Context) -> int:
    config = _load(context)
    agenda = _agenda(context, import_handlers=True)
    return asyncio.run(_run_worker(context, agenda, config))


async def _run_worker(context: _Context, agenda: Agenda, config: Any) -> int:
    output, args = context.output, context.args
    with _ShutdownSignals(output, args.drain_timeout) as signals:
        _report_job_events(agenda, output)
        await agenda.start()
        context.errors.go_live()
        _announce_worker(agenda, config, output)
        await _wait_for_stop(signals.stop, args.exit_after, output)
        signals.bound_drain(args.drain_timeout)
        result = await agenda.drain(timeout=args.drain_timeout, abort=signals.abort)
        if result.timed_out or result.aborted:
            signals.exit_abandoning(result.running, None if result.timed_out else signals.second)
    output.print(f"stopped: {result.completed} job(s) finished while draining.")
    return EXIT_OK


#: How long closing the connections may take once the running jobs are given up on (after a
#: second signal, or the drain timeout): a store that does not answer must not keep a stopping
#: worker alive.
_ABORT_GRACE_S = 3.0


class _ShutdownSignals:
    """SIGTERM/SIGINT: the first sets ``stop`` (drain), a second sets ``abort`` (stop now;
    a third, or closing the connections for longer than ``_ABORT_GRACE_S``, exits at once;
    so does a drain that overruns its timeout by that much). A closed stdout sets ``stop``
    too: a worker whose output nobody reads (``run | head``) drains rather than running on
    unseen. The handlers are removed on leaving, however the worker ends."""

    def __init__(self, output: Output, drain_timeout: int) -> None:
        self.stop, self.abort = asyncio.Event(), asyncio.Event()
        self._output, self._drain_timeout = output, drain_timeout
        self._installed: list[int] = []
        #: The signal that started the drain, and the one that cut it short.
        self.first: signal.Signals | None = None
        self.second: signal.Signals | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def __enter__(self) -> _ShutdownSignals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self._on_signal, signal.Signals(signum))
                self._installed.append(signum)
        self._output.on_stdout_closed = functools.partial(self._stop_soon, loop)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        self._output.on_stdout_closed = None
        if self._deadline is not None:
            self._deadline.cancel()

    def bound_drain(self, drain_timeout: int) -> None:
        """drain() stops waiting for the jobs after ``drain_timeout``, but then closes the
        connections, which a store that does not answer can hold up: past the timeout and
        the grace for closing, the worker exits anyway."""
        self._deadline = asyncio.get_running_loop().call_later(
            drain_timeout / 1000 + _ABORT_GRACE_S, self.exit_abandoning, None, None)

    def _stop_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        # Through the loop: safe whichever thread was printing.
        loop.call_soon_threadsafe(self.stop.set)

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.second is not None:  # a third: closing the connections takes too long
            self.exit_abandoning(None, signum)
        if self.stop.is_set():
            self.second = signum
            self.abort.set()  # drain() returns at once and closes the connections
            asyncio.get_running_loop().call_later(
                _ABORT_GRACE_S, self.exit_abandoning, None, signum)
            return
        self.first = signum
        self._output.print(f"{signum.name}: draining (no new jobs; up to "
                           f"{_seconds(self._drain_timeout)} for running ones)")
        self.stop.set()

    def exit_abandoning(self, running: int | None, by: signal.Signals | None) -> NoReturn:
        """One line on stderr, then exit. ``by`` is the signal that cut the drain short (None:
        the drain timed out). The exit code is 128 + the number of the signal that ended the
        worker, as a shell reports a process a signal ended; 1 when none did (a drain that
        --exit-after started timed out)."""
        if by is None:
            why, code = "drain timed out", EXIT_ERROR if self.first is None else 128 + self.first
        elif self.first is None:  # --exit-after or a closed stdout started the drain
            why, code = f"stopped by {by.name} while draining", 128 + by
        else:
            why, code = f"stopped by a second signal ({by.name})", 128 + by
        if running == 0:
            _exit_now(self._output, f"{why}: no job was running", code)
        jobs = ("any jobs still running were" if running is None
                else f"{running} job(s) still running were")
        _exit_now(self._output, f"{why}: {jobs} abandoned; their locks stay until lock_lifetime "
                  "runs out, then another worker runs them (this run counts as a failed attempt)",
                  code)


def _exit_now(output: Output, text: str, code: int) -> NoReturn:
    """End the process without waiting for the handlers still running. The thread of a plain
    ``def`` handler cannot be stopped, and the interpreter waits for it at exit (where a
    further Ctrl-C ends in a traceback). Leaving it is safe: the worker ends as a killed one
    does (SIGKILL, which the lock expiry is made and tested for), after drain() has released
    the jobs it had claimed but not started and closed the connections. ``atexit`` hooks do
    not run; buffered output would be lost, so it is flushed first."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()  # a handler's own print()s
        output.out.flush()
    with contextlib.suppress(OSError, ValueError):
        output.error(text)
    os._exit(code)


def _announce_worker(agenda: Agenda, config: Any, output: Output) -> None:
    runnable = agenda.runnable_names()
    idle = sorted(set(agenda.definitions) - set(runnable))
    owner = shown(config.owner)
    # The worker's name starts with the owner (build._worker_name): that part as the owner.
    name = f"{owner}{agenda.name[len(config.owner):]}"
    output.print(
        f'worker "{name}" running {len(runnable)} job type(s): '
        f"{', '.join(runnable) or 'none'} (storage: {agenda.backend.name}; "
        f"owner: {owner}). SIGTERM/Ctrl-C drains."
    )
    if idle:
        output.print(f"no handler here for: {', '.join(idle)} (not run by this worker)")


async def _wait_for_stop(stop: asyncio.Event, exit_after: int | None, output: Output) -> None:
    if exit_after is None:
        await stop.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), exit_after / 1000)
    if not stop.is_set():
        output.print(f"--exit-after {_seconds(exit_after)} reached: draining")
        stop.set()  # a signal now cuts the drain short, as a second one does


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


def _report_job_events(agenda: Agenda, output: Output) -> None:
    """One line per job start, success and failure of this worker."""

    def line(event: str, job: Job[Any], extra: str = "") -> None:
        stamp = _iso(agenda.clock.now())
        output.print(f"{stamp} {event:<7} {job.attrs.name} id={job.attrs.id}{extra}")

    def duration(job: Job[Any], end: datetime | None) -> str:
        start = job.attrs.last_run_at
        if start is None or end is None:
            return ""
        return f" {round((end - start).total_seconds() * 1000)} ms"

    def on_start(*args: Any) -> None:
        job = _job_in(args)
        if job is not None:
            line("start", job)

    def on_success(*args: Any) -> None:
        job = _job_in(args)
        if job is not None:
            line("success", job, duration(job, job.attrs.last_finished_at))

    def on_fail(*args: Any) -> None:
        job = _job_in(args)
        if job is None:
            return
        error = next((arg for arg in args if isinstance(arg, BaseException)), None)
        reason = f"{type(error).__name__}: {error}" if error is not None else job.attrs.fail_reason
        line("fail", job, f"{duration(job, job.attrs.failed_at)} error: {reason}")

    agenda.on("start", on_start)
    agenda.on("success", on_success)
    agenda.on("fail", on_fail)


def _job_in(args: tuple[Any, ...]) -> Job[Any] | None:
    """The local job of an event (events relayed from other workers carry a notification)."""
    return next((arg for arg in args if isinstance(arg, Job)), None)


# -- main -------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[_Context], int]] = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "apply": cmd_apply,
    "run": cmd_run,
    "generate": cmd_generate,
    "jobs": cmd_jobs,
}


def main(argv: list[str] | None = None) -> int:
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
    except _UsageError as error:
        output.err.write(output.mask(error.usage))
        _report(output, _wants_json(sys.argv[1:] if argv is None else argv), "usage",
                str(error))
        return EXIT_ERROR
    except SystemExit as done:  # --help and --version, printed: their code is 0
        output.out.flush()  # a closed stdout shows here, not as a complaint at exit
        return done.code if isinstance(done.code, int) else EXIT_ERROR
    context = _Context(args=args, output=output, path=Path(args.config),
                       errors=_ErrorSink(output))
    with _logging_to(output, logging.WARNING):
        return _run_command(context)


def _wants_json(argv: list[str]) -> bool:
    """Whether a command line that argparse refused asked for JSON (``--json``, or a prefix of
    it, which argparse accepts)."""
    return any(len(arg) > 3 and "--json".startswith(arg) for arg in argv)


def _run_command(context: _Context) -> int:
    try:
        return COMMANDS[context.args.command](context)
    except _Failure as failure:
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


def _report_agenda_error(context: _Context, error: AgendaError) -> None:
    if isinstance(error, ConfigError):
        context.report("config", str(error), [attrs.asdict(issue) for issue in error.issues])
    else:
        kind = "backend" if isinstance(error, ConnectionError) else "agenda"
        context.report(kind, _one_line(str(error)))


def _report_unexpected(context: _Context, error: Exception) -> None:
    message = f"{type(error).__name__}: {error}"
    if os.environ.get("AGENDA_DECL_DEBUG"):
        import traceback

        human = traceback.format_exc()
    else:
        human = f"unexpected error: {message} (set AGENDA_DECL_DEBUG=1 for a traceback)"
    context.report("unexpected", message, human=human)


if __name__ == "__main__":
    sys.exit(main())
