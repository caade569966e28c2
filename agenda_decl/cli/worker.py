"""``agenda-decl run``: a worker. It loads the handlers, processes jobs and prints one line per
job start, success and failure (``-v``: a failure's traceback too).

Shutdown: SIGTERM or SIGINT drains (no new jobs are claimed; running ones get
``--drain-timeout`` to finish). A second signal, or a drain that overruns its timeout, gives
the running jobs up and exits at once with 128 + the signal's number (130 SIGINT, 143
SIGTERM), even with plain ``def`` handlers still running in their threads; 1 when no signal
was involved (an ``--exit-after`` drain that timed out). A closed stdout drains as SIGTERM
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
from datetime import datetime
from typing import Any, NoReturn

from agenda_decl._job_log import format_failure
from agenda_decl._secrets import shown
from agenda_decl.agenda import Agenda
from agenda_decl.cli.context import (
    EXIT_ERROR,
    EXIT_OK,
    CommandContext,
    build_command_agenda,
    load_checked_config,
)
from agenda_decl.cli.output import Output, iso
from agenda_decl.config.model import AgendaConfig
from agenda_decl.job import Job

__all__ = ["ShutdownSignals", "cmd_run"]

#: How long closing the connections may take once the running jobs are given up on (after a
#: second signal, or the drain timeout): a store that does not answer must not keep a stopping
#: worker alive.
ABORT_GRACE_S = 3.0


def cmd_run(context: CommandContext) -> int:
    config = load_checked_config(context)
    agenda = build_command_agenda(context, import_handlers=True)
    return asyncio.run(_run_worker(context, agenda, config))


async def _run_worker(context: CommandContext, agenda: Agenda, config: AgendaConfig) -> int:
    output, args = context.output, context.args
    with ShutdownSignals(output, args.drain_timeout) as signals:
        _print_job_events(agenda, output, verbose=getattr(args, "verbose", False))
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


class ShutdownSignals:
    """SIGTERM/SIGINT: the first sets ``stop`` (drain), a second sets ``abort`` (stop now;
    a third, or closing the connections for longer than :data:`ABORT_GRACE_S`, exits at once;
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

    def __enter__(self) -> ShutdownSignals:
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
            drain_timeout / 1000 + ABORT_GRACE_S, self.exit_abandoning, None, None)

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
                ABORT_GRACE_S, self.exit_abandoning, None, signum)
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


def _announce_worker(agenda: Agenda, config: AgendaConfig, output: Output) -> None:
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


def _print_job_events(agenda: Agenda, output: Output, *, verbose: bool = False) -> None:
    """One line per job start, success and failure of this worker; with ``verbose`` (``-v``)
    a failure's traceback follows its line, indented (masked and bounded as in the job
    log)."""

    def line(event: str, job: Job[Any], extra: str = "") -> None:
        stamp = iso(agenda.clock.now())
        output.print(f"{stamp} {event:<7} {job.attrs.name} id={job.attrs.id}{extra}")

    def on_start(*args: Any) -> None:
        job = _local_job(args)
        if job is not None:
            line("start", job)

    def on_success(*args: Any) -> None:
        job = _local_job(args)
        if job is not None:
            line("success", job, _took(job, job.attrs.last_finished_at))

    def on_fail(*args: Any) -> None:
        job = _local_job(args)
        if job is None:
            return
        error = next((arg for arg in args if isinstance(arg, BaseException)), None)
        reason = f"{type(error).__name__}: {error}" if error is not None else job.attrs.fail_reason
        line("fail", job, f"{_took(job, job.attrs.failed_at)} error: {reason}")
        if verbose and error is not None:
            for text in format_failure(error).splitlines():
                output.print(f"    {text}".rstrip())

    agenda.on("start", on_start)
    agenda.on("success", on_success)
    agenda.on("fail", on_fail)


def _took(job: Job[Any], end: datetime | None) -> str:
    """`` 12 ms``: how long the run took, when it is known."""
    start = job.attrs.last_run_at
    if start is None or end is None:
        return ""
    return f" {round((end - start).total_seconds() * 1000)} ms"


def _local_job(args: tuple[Any, ...]) -> Job[Any] | None:
    """The local job of an event (events relayed from other workers carry a notification)."""
    return next((arg for arg in args if isinstance(arg, Job)), None)
