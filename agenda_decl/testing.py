"""Helpers for testing code that uses agenda-decl: an in-memory store (from
``backends.memory``), a clock you move by hand, and a recorder of scheduler events.

The in-memory repository runs through the same conformance suite as the real backends, so
what passes against it behaves the same on SQLite, PostgreSQL, Redis and MongoDB.

    clock = FakeClock()
    agenda = Agenda(backend=InMemoryBackend(), clock=clock, process_every="1 second")
    events = EventRecorder(agenda)
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from agenda_decl._clock import truncate_ms, utcnow
from agenda_decl.backends.memory import InMemoryBackend, InMemoryJobLogger, InMemoryJobRepository
from agenda_decl.runtime.events import RemoteJob

if TYPE_CHECKING:
    from agenda_decl.agenda import Agenda

__all__ = [
    "EventRecorder",
    "FakeClock",
    "InMemoryBackend",
    "InMemoryJobLogger",
    "InMemoryJobRepository",
    "RecordedEvent",
]


class FakeClock:
    """A clock that moves only when told to. Starts at ``start`` (default: a fixed instant)."""

    is_system = False

    def __init__(self, start: datetime | None = None) -> None:
        self._now = truncate_ms(start or datetime(2026, 1, 5, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | int) -> datetime:
        """Move forward by a timedelta or a number of milliseconds; return the new now."""
        step = delta if isinstance(delta, timedelta) else timedelta(milliseconds=delta)
        self._now = truncate_ms(self._now + step)
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = truncate_ms(instant)


# -- event capture ---------------------------------------------------------------------------


@attrs.define(kw_only=True, frozen=True)
class RecordedEvent:
    event: str
    job_name: str | None
    job_id: str | None
    data: Any
    error: str | None
    at: datetime


class EventRecorder:
    """Records the job events of an :class:`Agenda` (start, success, fail, complete, retry)."""

    EVENTS = ("start", "success", "fail", "complete", "retry", "retry exhausted")

    def __init__(self, agenda: Agenda, clock: Callable[[], datetime] = utcnow) -> None:
        self.events: list[RecordedEvent] = []
        self._clock = clock
        self._changed = asyncio.Event()
        for event in self.EVENTS:
            agenda.on(event, self._listener(event))

    def _listener(self, event: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            # One shape per event (agenda_decl.runtime.events): (error, job) or (job, ...).
            error, job = (args[0], args[1]) if event in ("fail", "retry exhausted") else (
                None, args[0])
            if isinstance(job, RemoteJob):
                return  # another worker's job, relayed: not one of this Agenda's
            self.events.append(
                RecordedEvent(
                    event=event,
                    job_name=job.attrs.name,
                    job_id=job.attrs.id,
                    data=copy.deepcopy(job.attrs.data),
                    error=str(error) if error else None,
                    at=self._clock(),
                )
            )
            self._changed.set()

        return record

    def of(self, event: str, job_name: str | None = None) -> list[RecordedEvent]:
        return [
            e for e in self.events if e.event == event and job_name in (None, e.job_name)
        ]

    async def wait_for(
        self, event: str, count: int = 1, *, job_name: str | None = None, timeout: float = 10
    ) -> list[RecordedEvent]:
        """Wait until ``count`` events of this kind were recorded (raises on timeout)."""
        async with asyncio.timeout(timeout):
            while len(self.of(event, job_name)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(event, job_name)
