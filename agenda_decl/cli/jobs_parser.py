"""The command line of ``agenda-decl jobs``: listing jobs, and the actions on them (show, retry,
run-now, cancel, delete, pause, resume, purge).

``--json`` is an option of ``jobs`` and of each action, given before or after the action's
name (``jobs --json show 7`` and ``jobs show 7 --json`` alike).
"""

from __future__ import annotations

import argparse

from agenda_decl._model import JOB_STATES
from agenda_decl.cli.arguments import Commands, RaisingParser, page_size, parse_duration

__all__ = ["JOB_ACTIONS", "add_jobs"]

#: The actions of ``agenda-decl jobs``.
JOB_ACTIONS = ("show", "retry", "run-now", "cancel", "delete", "pause", "resume", "purge")


def add_jobs(commands: Commands, config_option: RaisingParser) -> None:
    jobs = commands.add_parser(
        "jobs", parents=[config_option], help="list jobs and act on them",
        description="List the jobs in storage with their computed state (repeating: an "
        "interval, cron or time of day), whether they are disabled (a flag of its own: a "
        "disabled job keeps its state) and their last failure; or act on jobs: show, retry, "
        "run-now, cancel, delete, pause, resume, purge.",
    )
    _add_list_options(jobs)
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=False)
    # --json after an action's name too, without resetting one given before it.
    json_option = RaisingParser(add_help=False)
    json_option.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="print the result as JSON")
    parents = [config_option, json_option]
    for add_action in (_add_show, _add_retry, _add_run_now, _add_cancel, _add_delete,
                       _add_pause, _add_resume, _add_purge):
        add_action(actions, parents)


def _add_list_options(jobs: argparse.ArgumentParser) -> None:
    jobs.add_argument("--name", help="only jobs of this name")
    states = jobs.add_mutually_exclusive_group()
    states.add_argument("--state", choices=JOB_STATES,
                        help="only jobs in this computed state (the STATE column)")
    states.add_argument("--failed", action="store_true",
                        help="only jobs whose last run failed (--state failed)")
    enabled = jobs.add_mutually_exclusive_group()
    enabled.add_argument("--disabled", action="store_true",
                         help="only disabled jobs (the DISABLED column; any state)")
    enabled.add_argument("--enabled", action="store_true", help="only jobs not disabled")
    jobs.add_argument("--search", metavar="TEXT",
                      help="only jobs whose name contains TEXT (any case)")
    jobs.add_argument("--limit", type=page_size, default=100,
                      help="show at most this many (default 100; 0 = all)")
    paging = jobs.add_mutually_exclusive_group()
    paging.add_argument("--skip", type=page_size, default=0, metavar="N",
                        help="leave out the first N jobs")
    paging.add_argument("--page", type=_page_number, metavar="N",
                        help="show page N (1 = the first --limit jobs)")
    jobs.add_argument("--json", action="store_true", help="print the jobs as JSON")


def _page_number(text: str) -> int:
    value = page_size(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a page number >= 1, got {text!r}")
    return value


def _add_show(actions: Commands, parents: list[RaisingParser]) -> None:
    show = actions.add_parser(
        "show", parents=parents, help="every field of one job",
        description="Every stored field of one job, its data, its computed state, who paused "
        "it, and its last failure.")
    show.add_argument("id", metavar="ID")


def _add_retry(actions: Commands, parents: list[RaisingParser]) -> None:
    retry = actions.add_parser(
        "retry", parents=parents, help="run failed jobs again now",
        description="Run failed jobs again now: by id, or every failed job of a name "
        "(--name N --failed). fail_count is kept: the job's backoff counts on from it, so a "
        "job past its retry limit gets this one run.")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--name", help="every failed job of this name (with --failed)")
    retry.add_argument("--failed", action="store_true",
                       help="with --name: the jobs of that name whose last run failed")


def _add_run_now(actions: Commands, parents: list[RaisingParser]) -> None:
    run_now = actions.add_parser(
        "run-now", parents=parents, help="run a schedule (or a job by id) once now",
        description="Run a declared schedule once now without changing its schedule: a "
        "one-off copy of its job (same data) is enqueued, due now; the schedule's next run "
        "stays. NAME is the schedule's job (and --key its key when the job has several), or "
        "the id of a stored job (a one-off job is moved to now).")
    run_now.add_argument("target", metavar="NAME|ID")
    run_now.add_argument("--key", help="the schedule's key (default: the job name)")


def _add_cancel(actions: Commands, parents: list[RaisingParser]) -> None:
    cancel = actions.add_parser(
        "cancel", parents=parents, help="delete jobs by id",
        description="Delete jobs by id, after a confirmation (--yes without a terminal).")
    cancel.add_argument("ids", nargs="+", metavar="ID")
    _add_yes(cancel)


def _add_delete(actions: Commands, parents: list[RaisingParser]) -> None:
    delete = actions.add_parser(
        "delete", parents=parents, help="delete the jobs of a name",
        description="Delete every job of a name (in a computed state, with --state), after "
        "a confirmation that shows the count (--yes without a terminal).")
    delete.add_argument("--name", required=True, help="the jobs' name")
    delete.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    _add_yes(delete)


def _add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-y", "--yes", action="store_true", help="delete without asking")


def _add_pause(actions: Commands, parents: list[RaisingParser]) -> None:
    pause = actions.add_parser(
        "pause", parents=parents, help="pause the jobs of a name or a schedule",
        description="Disable the jobs of a name (or, with --key, one schedule's job), "
        "recording on schedules' jobs who paused them and when: plan shows it, and apply "
        "keeps them paused until 'jobs resume'. Jobs of the name created later still run "
        "(run workers with --exclude NAME to stop a name entirely).")
    pause.add_argument("name", metavar="NAME")
    pause.add_argument("--key", help="only the job of this schedule key of agenda.yaml")
    pause.add_argument("--by", help="who pauses (default: $USER@host)")
    pause.add_argument("--reason", help="why, shown by plan and jobs show")


def _add_resume(actions: Commands, parents: list[RaisingParser]) -> None:
    resume = actions.add_parser(
        "resume", parents=parents, help="resume the jobs of a name or a schedule",
        description="Enable the jobs of a name (or, with --key, one schedule's job) and clear "
        "the pause. A repeating job whose next run passed while paused runs at its next time "
        "from now (one run, not one per missed time). A schedule declared disabled in "
        "agenda.yaml stays disabled.")
    resume.add_argument("name", metavar="NAME")
    resume.add_argument("--key", help="only the job of this schedule key of agenda.yaml")


def _add_purge(actions: Commands, parents: list[RaisingParser]) -> None:
    purge = actions.add_parser(
        "purge", parents=parents, help="delete completed jobs older than a duration",
        description="Delete completed jobs (one-off jobs that ran and succeeded) that "
        "finished longer ago than --older-than, of this file's job names (or --name). "
        "scheduler.retention in agenda.yaml makes workers do the same periodically.")
    purge.add_argument("--completed", action="store_true", required=True,
                       help="completed jobs (the only kind purged)")
    purge.add_argument("--older-than", type=parse_duration, required=True, metavar="DURATION",
                       help="how long ago they finished, e.g. '7d' or '12 hours'")
    purge.add_argument("--name", help="only jobs of this name (any name in storage)")
    purge.add_argument("--dry-run", action="store_true", help="count them, delete nothing")
