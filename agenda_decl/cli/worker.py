"""``agenda-decl run``: a worker. It loads the handlers (of the jobs it runs: ``--only``,
``--exclude``), waits for the store if asked (``--wait-for-store``), processes jobs and prints
one line per job start, success and failure (``--log-format json``: one JSON object per line),
serves metrics and a health check (``--metrics-port``), deletes completed jobs past
``scheduler.retention``, and traces job runs when opentelemetry-api is installed. ``-v``
prints a failure's traceback under its line.

Shutdown is :mod:`agenda_decl.cli.shutdown`'s: the first SIGTERM/SIGINT drains, a second
one (or a drain that overruns ``--drain-timeout``) exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib

from agenda_decl._secrets import shown
from agenda_decl.agenda import Agenda
from agenda_decl.cli.context import (
    EXIT_OK,
    CommandContext,
    build_command_agenda,
    load_checked_config,
)
from agenda_decl.cli.shutdown import ShutdownSignals, seconds
from agenda_decl.cli.worker_log import WorkerLog
from agenda_decl.cli.worker_setup import (
    keep_retention,
    select_jobs,
    start_monitoring,
    wait_for_store,
)
from agenda_decl.config.model import AgendaConfig
from agenda_decl.monitoring import WorkerHealth, install_tracing

__all__ = ["ShutdownSignals", "cmd_run"]


def cmd_run(context: CommandContext) -> int:
    load_checked_config(context)
    config = select_jobs(context)
    agenda = build_command_agenda(context, import_handlers=True)
    if context.args.concurrency is not None:
        agenda.max_concurrency = context.args.concurrency
    log = WorkerLog(context.output, agenda, json=context.args.log_format == "json",
                    verbose=getattr(context.args, "verbose", False))
    return asyncio.run(_run_worker(context, agenda, config, log))


async def _run_worker(
    context: CommandContext, agenda: Agenda, config: AgendaConfig, log: WorkerLog
) -> int:
    monitoring = start_monitoring(context, agenda, log)
    install_tracing(agenda)
    try:
        return await _work(context, agenda, config, log, monitoring[1] if monitoring else None)
    finally:
        if monitoring is not None:
            monitoring[0].stop()


async def _work(
    context: CommandContext, agenda: Agenda, config: AgendaConfig, log: WorkerLog,
    health: WorkerHealth | None,
) -> int:
    args = context.args
    with ShutdownSignals(context.output, args.drain_timeout, log.say) as signals:
        log.follow_jobs()
        if not await wait_for_store(agenda, log, context.errors, wait_ms=args.wait_for_store,
                                    stop=signals.stop, health=health):
            log.say("stopped", "stopped while waiting for the store")
            return EXIT_OK
        await agenda.start()
        if health is not None:
            health.phase = "running"
        context.errors.go_live()
        _announce_worker(agenda, config, log)
        retention = asyncio.create_task(keep_retention(agenda, config, log))
        await _wait_for_stop(signals.stop, args.exit_after, log)
        if health is not None:
            health.phase = "draining"
        retention.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retention
        signals.bound_drain(args.drain_timeout)
        result = await agenda.drain(timeout=args.drain_timeout, abort=signals.abort)
        if result.timed_out or result.aborted:
            signals.exit_abandoning(result.running, None if result.timed_out else signals.second)
    log.say("stopped", f"stopped: {result.completed} job(s) finished while draining.",
            completed=result.completed)
    return EXIT_OK


def _announce_worker(agenda: Agenda, config: AgendaConfig, log: WorkerLog) -> None:
    runnable = agenda.runnable_names()
    idle = sorted(set(agenda.definitions) - set(runnable))
    owner = shown(config.owner)
    # The worker's name starts with the owner (build._worker_name): that part as the owner.
    name = f"{owner}{agenda.name[len(config.owner):]}"
    log.say("worker_started",
            f'worker "{name}" running {len(runnable)} job type(s): '
            f"{', '.join(runnable) or 'none'} (storage: {agenda.backend.name}; "
            f"owner: {owner}; concurrency: {agenda.max_concurrency}). SIGTERM/Ctrl-C drains.",
            worker=name, jobs=runnable, concurrency=agenda.max_concurrency)
    if idle:
        log.say("not_run_here", f"no handler here for: {', '.join(idle)} (not run by this "
                                "worker)", jobs=idle)


async def _wait_for_stop(stop: asyncio.Event, exit_after: int | None, log: WorkerLog) -> None:
    if exit_after is None:
        await stop.wait()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), exit_after / 1000)
    if not stop.is_set():
        log.say("draining", f"--exit-after {seconds(exit_after)} reached: draining")
        stop.set()  # a signal now cuts the drain short, as a second one does
