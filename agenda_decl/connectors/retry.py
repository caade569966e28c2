"""Riding out an outage of a store, the same way for every driver.

An operation that fails because the store cannot be reached (the driver's connector decides
which errors mean that) is tried again, with exponential backoff and jitter, until
``retry_for`` has passed since its first attempt started; then the caller gets one
:class:`~agenda_decl.errors.BackendUnavailableError` that names the store, without its
password: ``PostgreSQL at postgresql://app:***@db/jobs unreachable for 30 s: ...``.

Only operations that are safe to repeat go through here: a repeat after an attempt whose
outcome is unknown (the connection died after the server did the work, before the reply)
must not do the work twice. Each store makes its writes so (client-made ids, upserts, fenced
updates) and says how in its repository.

Logging stays quiet during an outage: one warning when a store stops answering and one line
when it answers again, at most every :data:`LOG_EVERY` seconds per store; the errors past the
bound go to the caller (the scheduler reports them as ``error`` events).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from agenda_decl._secrets import mask_text
from agenda_decl.errors import BackendUnavailableError
from agenda_decl.timing import Duration, parse_duration

__all__ = ["DEFAULT_RETRY_FOR", "Attempt", "Retrying"]

log = logging.getLogger("agenda_decl.connectors")

T = TypeVar("T")

#: How long an operation is retried through an outage by default (a backend's ``retry_for``).
DEFAULT_RETRY_FOR: Duration = "30 seconds"
#: The first pause between attempts, and the longest (seconds); each pause is drawn between
#: half and all of the current delay, which doubles after every failed attempt.
FIRST_DELAY, MAX_DELAY = 0.05, 1.0
#: The least time between two log lines about one store's outage (seconds).
LOG_EVERY = 30.0


class Attempt:
    """One try of an operation: its number (1 for the first) and the time since the first
    try started (a claim moves its clock-derived arguments on by it)."""

    __slots__ = ("_deadline", "_started", "number")

    def __init__(self, number: int, started: float, deadline: float) -> None:
        self.number = number
        self._started = started
        self._deadline = deadline

    @property
    def elapsed(self) -> timedelta:
        """Time since the first attempt started."""
        return timedelta(seconds=time.monotonic() - self._started)

    @property
    def remaining(self) -> float:
        """Seconds left before the operation gives up (0 once past the bound)."""
        return max(0.0, self._deadline - time.monotonic())

    @property
    def repeated(self) -> bool:
        """Whether an earlier attempt failed: its outcome is unknown (it may have been done)."""
        return self.number > 1


class Retrying:
    """The outage policy of one store connection.

    ``store`` ("PostgreSQL") and ``where`` (the connection string, masked here again) name the
    store in messages; ``transient(error)`` says whether an error means "unreachable, try
    again". ``retry_for`` is a duration (ms, ``timedelta`` or text, as everywhere); 0 turns
    retrying off (one attempt, whose connection error is still reported as
    ``BackendUnavailableError``).
    """

    def __init__(
        self,
        *,
        store: str,
        where: str,
        transient: Callable[[BaseException], bool],
        retry_for: Duration = DEFAULT_RETRY_FOR,
    ) -> None:
        self.store = store
        self.where = mask_text(where)
        self._transient = transient
        self.retry_for = parse_duration(retry_for, field="retry_for") / 1000
        self._warned_at: float | None = None
        self._recovered_at: float | None = None
        #: Attempts that failed and were repeated (for tests and metrics).
        self.retries = 0

    def __repr__(self) -> str:
        return f"Retrying({self.store} at {self.where}, retry_for={self.retry_for:g} s)"

    def transient(self, error: BaseException) -> bool:
        return self._transient(error)

    async def run(self, operation: Callable[[Attempt], Awaitable[T]]) -> T:
        """``operation(attempt)`` until it succeeds, raises an error that is not transient, or
        ``retry_for`` has passed (then ``BackendUnavailableError``)."""
        started = time.monotonic()
        deadline = started + self.retry_for
        delay = FIRST_DELAY
        number = 1
        while True:
            try:
                result = await operation(Attempt(number, started, deadline))
            except Exception as error:
                if not self._transient(error):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self.unavailable(error) from None
                self._outage(error)
                self.retries += 1
                pause = delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
                await asyncio.sleep(min(pause, remaining))
                delay = min(delay * 2, MAX_DELAY)
                number += 1
                continue
            if number > 1:
                self._recovered(time.monotonic() - started)
            return result

    def unavailable(self, error: BaseException) -> BackendUnavailableError:
        """The one error of an operation that gave up on ``error``."""
        reason = mask_text(str(error).strip() or type(error).__name__)
        bound = f" for {self.retry_for:g} s" if self.retry_for else ""
        return BackendUnavailableError(
            f"{self.store} at {self.where} unreachable{bound}: {type(error).__name__}: {reason}"
        )

    def _outage(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < LOG_EVERY:
            return
        self._warned_at = now
        reason = mask_text(str(error).strip() or type(error).__name__)
        log.warning("%s at %s not answering (%s: %s): retrying for up to %g s", self.store,
                    self.where, type(error).__name__, reason, self.retry_for)

    def _recovered(self, seconds: float) -> None:
        now = time.monotonic()
        if self._recovered_at is not None and now - self._recovered_at < LOG_EVERY:
            return
        self._recovered_at = now
        log.info("%s at %s answers again (an operation succeeded after %.1f s)", self.store,
                 self.where, seconds)
