"""A worker's health, for container probes (``/healthz``): is it polling the store?

========== ===== ==========================================================================
status     HTTP  when
========== ===== ==========================================================================
ok         200   the last poll of the store succeeded, within 3 polls (+ 5 s) of now
starting   503   connected, no poll has completed yet
waiting    503   waiting for the store at start (``--wait-for-store``)
unhealthy  503   the last poll failed (the store is unreachable), or none succeeded lately
draining   503   shutting down: no new jobs are claimed
========== ===== ==========================================================================

The notification channel is reported but does not make a worker unhealthy: polling goes on
without it (notifications only make workers react sooner).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from agenda_decl._secrets import mask_text
from agenda_decl.agenda import Agenda
from agenda_decl.runtime.events import PollReport

__all__ = ["Phase", "WorkerHealth"]

Phase = Literal["starting", "waiting", "running", "draining"]
#: A poll may be late by this much on top of three poll intervals.
_SLACK_S = 5.0


class WorkerHealth:
    """Tracks the polls of ``agenda``; :meth:`report` answers a probe (read from any
    thread)."""

    def __init__(self, agenda: Agenda) -> None:
        self._agenda = agenda
        self.phase: Phase = "starting"
        self._last_ok: datetime | None = None
        self._last_ok_monotonic: float | None = None
        self._last_error: str | None = None
        self._waiting_error: str | None = None
        agenda.on("poll", self._on_poll)

    def _on_poll(self, report: PollReport) -> None:
        if report.error is None:
            self._last_ok, self._last_ok_monotonic = report.at, time.monotonic()
            self._last_error = None
        else:
            self._last_error = mask_text(str(report.error) or type(report.error).__name__)

    def waiting(self, error: BaseException) -> None:
        """Waiting for the store at start; ``error`` is why the last attempt failed."""
        self.phase = "waiting"
        self._waiting_error = mask_text(str(error))

    def report(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for ``/healthz``."""
        age = (None if self._last_ok_monotonic is None
               else time.monotonic() - self._last_ok_monotonic)
        status = self._status(age)
        channel = self._agenda.channel
        return (200 if status == "ok" else 503), {
            "status": status,
            "store": {"reachable": self._reachable(), "error": self._error()},
            "channel": {"state": channel.state if channel is not None else None},
            "last_successful_poll": (self._last_ok.isoformat(timespec="milliseconds")
                                     .replace("+00:00", "Z") if self._last_ok else None),
            "seconds_since_poll": None if age is None else round(age, 3),
            "poll_every_seconds": self._agenda.process_every / 1000,
        }

    def _status(self, age: float | None) -> str:
        if self.phase != "running":
            return self.phase
        if self._last_error is not None:
            return "unhealthy"
        if age is None:
            return "starting"
        stale = 3 * self._agenda.process_every / 1000 + _SLACK_S
        return "ok" if age <= stale else "unhealthy"

    def _reachable(self) -> bool | None:
        if self.phase == "waiting":
            return False
        if self._last_error is not None:
            return False
        return True if self._last_ok is not None else None

    def _error(self) -> str | None:
        return self._waiting_error if self.phase == "waiting" else self._last_error
