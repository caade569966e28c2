"""What ``agenda-decl run`` sets up around the Agenda: which jobs this worker runs
(``--only``, ``--exclude``), waiting for the store at start (``--wait-for-store``), the
metrics and health endpoint (``--metrics-port``) and the retention of completed jobs
(``scheduler.retention``)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import attrs

from agenda_decl import timing
from agenda_decl.agenda import Agenda
from agenda_decl.cli.context import CommandContext, CommandFailed
from agenda_decl.cli.output import ErrorEventPrinter, one_line
from agenda_decl.cli.shutdown import seconds
from agenda_decl.cli.worker_log import WorkerLog
from agenda_decl.config.model import AgendaConfig
from agenda_decl.config.source import remember_source, source_of
from agenda_decl.errors import BackendUnavailableError
from agenda_decl.monitoring import MISSING_EXTRA, WorkerHealth, WorkerMetrics
from agenda_decl.monitoring.server import MonitoringServer
from agenda_decl.operations import purge_completed

__all__ = ["keep_retention", "select_jobs", "start_monitoring", "wait_for_store"]

#: The pause between attempts to reach the store grows from 1 s to this.
_MAX_RETRY_PAUSE_S = 5.0


def select_jobs(context: CommandContext) -> AgendaConfig:
    """The loaded config with the handlers of the jobs this worker does not run left out:
    they are declared (known, never run here) and their modules are not imported."""
    config: AgendaConfig = context.config
    only, exclude = context.args.only or [], context.args.exclude or []
    unknown = [name for name in [*only, *exclude] if name not in config.jobs]
    if unknown:
        option = "--only" if unknown[0] in only else "--exclude"
        context.report("usage", f"{option}: no job named {unknown[0]!r} in the file (jobs: "
                                f"{', '.join(config.jobs) or 'none'})")
        raise CommandFailed
    if not only and not exclude:
        return config
    runs = (set(only) or set(config.jobs)) - set(exclude)
    jobs = {name: job if name in runs else attrs.evolve(job, handler=None)
            for name, job in config.jobs.items()}
    selected = attrs.evolve(config, jobs=jobs)
    source = source_of(config)
    if source is not None:
        remember_source(selected, source)
    context.config = selected
    return selected


async def wait_for_store(
    agenda: Agenda, log: WorkerLog, errors: ErrorEventPrinter, *, wait_ms: int,
    stop: asyncio.Event, health: WorkerHealth | None,
) -> bool:
    """Connect to the store, retrying for up to ``wait_ms`` with a line per failed attempt;
    False when the worker was stopped meanwhile. Past ``wait_ms`` the last error is raised."""
    deadline = time.monotonic() + wait_ms / 1000
    attempt, pause = 0, 1.0
    while True:
        attempt += 1
        try:
            await agenda.ready()
            return True
        except BackendUnavailableError as error:
            errors.drop_causes_of(error)  # said here, once per attempt
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if health is not None:
                health.waiting(error)
            wait = min(pause, left)
            log.say("waiting_for_store",
                    f"store not reachable (attempt {attempt}): {one_line(str(error))}; "
                    f"retrying in {wait:.3g}s (up to {seconds(wait_ms)} in all)",
                    attempt=attempt, error=one_line(str(error)))
            try:
                await asyncio.wait_for(stop.wait(), wait)
                return False
            except TimeoutError:
                pause = min(pause * 2, _MAX_RETRY_PAUSE_S)


def start_monitoring(
    context: CommandContext, agenda: Agenda, log: WorkerLog
) -> tuple[MonitoringServer, WorkerHealth] | None:
    """Serve ``/metrics`` and ``/healthz`` on ``--metrics-port`` (None without one)."""
    args = context.args
    if args.metrics_port is None:
        return None
    try:
        metrics = WorkerMetrics(agenda)
    except ImportError:
        context.report("config", f"--metrics-port: {MISSING_EXTRA}")
        raise CommandFailed from None
    health = WorkerHealth(agenda)
    try:
        server = MonitoringServer(metrics, health, asyncio.get_running_loop(),
                                  args.metrics_host, args.metrics_port)
    except OSError as error:
        context.report("usage", f"--metrics-port: cannot listen on {args.metrics_host}:"
                                f"{args.metrics_port}: {error.strerror or error}")
        raise CommandFailed from None
    server.start()
    log.say("metrics", f"metrics on http://{args.metrics_host}:{server.port}/metrics, "
                       "health on /healthz", port=server.port)
    return server, health


async def keep_retention(agenda: Agenda, config: AgendaConfig, log: WorkerLog) -> None:
    """Delete completed jobs of the file's names older than ``scheduler.retention.completed``
    now and every ``check_every`` (run as a task; cancelled when the worker drains)."""
    retention = config.scheduler.retention
    if retention is None or retention.completed is None:
        return
    older = timing.parse_duration(retention.completed)
    every = timing.parse_duration(retention.check_every) / 1000
    while True:
        try:
            count = await purge_completed(agenda, timedelta(milliseconds=older),
                                          names=sorted(config.jobs))
        except Exception as error:  # the store may be down for a while: try again later
            await agenda.emit_error(error)
        else:
            if count:
                log.say("retention", f"retention: deleted {count} completed job(s) that "
                                     f"finished more than {seconds(older)} ago", deleted=count)
        await asyncio.sleep(every)
