"""Handlers of the demo jobs declared in ``agenda.yaml`` and ``examples/configs/*.yaml``.

Each prints one line saying what it does (one write, flushed: plain ``def`` handlers run in
worker threads, and the demo's output is read through a pipe). A handler takes the Job; its
``attrs.data`` holds the payload (plus agenda-decl's ownership marker for declared schedules);
the typed handles of ``examples/agenda_jobs.py`` read it as a payload class.
"""

from __future__ import annotations

import sys
from typing import Any

from agenda_decl import Job
from examples import agenda_jobs

__all__ = ["cleanup", "heartbeat", "report", "send_welcome"]


def say(line: str) -> None:
    sys.stdout.write(f"  {line}\n")
    sys.stdout.flush()


async def send_welcome(job: Job[dict[str, Any]]) -> None:
    """Reads its payload typed, through the generated handle (``examples/agenda_jobs.py``)."""
    payload = agenda_jobs.send_welcome.payload(job)  # a SendWelcomePayload
    say(f"send-welcome: welcome mail to {payload.email} (plan {payload.plan})")


def heartbeat(job: Job[dict[str, Any]]) -> None:
    """A plain function: it runs in a worker thread."""
    say(f"heartbeat: {job.attrs.data['service']} is alive")


async def report(job: Job[dict[str, Any]]) -> None:
    data = job.attrs.data
    recipients = ", ".join(data.get("recipients") or []) or "nobody"
    say(f"report: {data.get('format', 'pdf')} report for {recipients}")


async def cleanup(job: Job[dict[str, Any]]) -> None:
    say(f"cleanup: removing files older than {job.attrs.data.get('older_than_days', 30)} days")
