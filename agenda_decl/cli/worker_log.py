"""What a worker prints: one line per job start, success and failure of this worker, and its
own events (started, draining, stopped, waiting for the store, retention). As text (the
default) or, with ``--log-format json``, one JSON object per line: ``ts``, ``level``,
``event``, and for a job ``job_id``, ``name``, ``duration_ms`` and ``error``; every line
passes through the output's masking."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agenda_decl._job_log import format_failure
from agenda_decl.agenda import Agenda
from agenda_decl.cli.output import Output, iso, json_line
from agenda_decl.job import Job

__all__ = ["WorkerLog"]


class WorkerLog:
    def __init__(self, output: Output, agenda: Agenda, *, json: bool,
                 verbose: bool = False) -> None:
        self.output, self.agenda, self.json = output, agenda, json
        #: ``-v``: a failure's traceback too (masked and bounded as in the job log).
        self.verbose = verbose
        output.json_lines = json

    def say(self, event: str, message: str, **fields: Any) -> None:
        """A line about the worker itself (``message`` is the text form)."""
        if self.json:
            self.output.print(json_line(level="info", event=event, message=message, **fields))
        else:
            self.output.print(message)

    def job(self, event: str, job: Job[Any], *, end: datetime | None = None,
            error: str | None = None, traceback: str | None = None) -> None:
        """A job's ``start``, ``success`` or ``fail``; ``end`` for the duration, ``traceback``
        printed only with ``-v``."""
        duration = _duration_ms(job, end)
        traceback = traceback if self.verbose else None
        if self.json:
            self.output.print(json_line(
                level="error" if event == "fail" else "info", event=event,
                job_id=job.attrs.id, name=job.attrs.name, duration_ms=duration, error=error,
                **({"traceback": traceback} if traceback else {})))
            return
        took = "" if duration is None else f" {duration} ms"
        failure = f" error: {error}" if error is not None else ""
        stamp = iso(self.agenda.clock.now())
        self.output.print(f"{stamp} {event:<7} {job.attrs.name} id={job.attrs.id}{took}"
                          f"{failure}")
        for text in (traceback or "").splitlines():
            self.output.print(f"    {text}".rstrip())

    def follow_jobs(self) -> None:
        """Print the start, success and failure of every job this worker runs (events
        relayed from other workers are left out)."""

        def on_start(*args: Any) -> None:
            job = _local_job(args)
            if job is not None:
                self.job("start", job)

        def on_success(*args: Any) -> None:
            job = _local_job(args)
            if job is not None:
                self.job("success", job, end=job.attrs.last_finished_at)

        def on_fail(*args: Any) -> None:
            job = _local_job(args)
            if job is None:
                return
            error = next((arg for arg in args if isinstance(arg, BaseException)), None)
            reason = (f"{type(error).__name__}: {error}" if error is not None
                      else job.attrs.fail_reason)
            self.job("fail", job, end=job.attrs.failed_at, error=reason,
                     traceback=format_failure(error) if error is not None else None)

        self.agenda.on("start", on_start)
        self.agenda.on("success", on_success)
        self.agenda.on("fail", on_fail)


def _duration_ms(job: Job[Any], end: datetime | None) -> int | None:
    """How long the run took, when it is known."""
    start = job.attrs.last_run_at
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000)


def _local_job(args: tuple[Any, ...]) -> Job[Any] | None:
    """The local job of an event (events relayed from other workers carry a notification)."""
    return next((arg for arg in args if isinstance(arg, Job)), None)
