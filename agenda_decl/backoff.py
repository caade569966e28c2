"""Retry strategies: functions from a failure to the delay (ms) before the next attempt.

    agenda.define("flaky", handler, backoff=backoff.exponential(delay=1000, max_retries=5))

A strategy returns ``None`` when retries are exhausted. With ``max_retries=N`` the handler
runs at most N+1 times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from agenda_decl.timing import Duration, parse_duration

__all__ = [
    "BackoffContext",
    "BackoffStrategy",
    "aggressive",
    "combine",
    "constant",
    "exponential",
    "linear",
    "relaxed",
    "standard",
    "when",
]


@attrs.define(kw_only=True, frozen=True)
class BackoffContext:
    #: 1-based: the job's ``fail_count`` after this failure.
    attempt: int
    error: BaseException
    job_name: str
    job_data: Any


BackoffStrategy = Callable[[BackoffContext], int | None]


def _jittered(delay: float, jitter: float) -> int:
    if jitter <= 0:
        return round(delay)
    spread = delay * jitter * random.uniform(-1, 1)  # noqa: S311 - jitter, not crypto
    return max(0, round(delay + spread))


def _strategy(
    formula: Callable[[int], float],
    *,
    max_retries: int,
    max_delay: Duration | None,
    jitter: float,
) -> BackoffStrategy:
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
    cap = math.inf if max_delay is None else parse_duration(max_delay, field="max_delay")

    def strategy(context: BackoffContext) -> int | None:
        if context.attempt > max_retries:
            return None
        return _jittered(min(formula(context.attempt), cap), jitter)

    return strategy


def constant(
    *,
    delay: Duration = 1000,
    max_retries: int = 3,
    max_delay: Duration | None = None,
    jitter: float = 0,
) -> BackoffStrategy:
    """The same delay before every retry."""
    ms = parse_duration(delay, field="delay")
    return _strategy(lambda _: ms, max_retries=max_retries, max_delay=max_delay, jitter=jitter)


def linear(
    *,
    delay: Duration = 1000,
    increment: Duration | None = None,
    max_retries: int = 3,
    max_delay: Duration | None = None,
    jitter: float = 0,
) -> BackoffStrategy:
    """``delay + increment * (attempt - 1)``; ``increment`` defaults to ``delay``."""
    ms = parse_duration(delay, field="delay")
    step = ms if increment is None else parse_duration(increment, field="increment")
    return _strategy(
        lambda attempt: ms + step * (attempt - 1),
        max_retries=max_retries,
        max_delay=max_delay,
        jitter=jitter,
    )


def exponential(
    *,
    delay: Duration = 1000,
    factor: float = 2,
    max_retries: int = 3,
    max_delay: Duration | None = None,
    jitter: float = 0,
) -> BackoffStrategy:
    """``delay * factor ** (attempt - 1)``."""
    ms = parse_duration(delay, field="delay")
    return _strategy(
        lambda attempt: ms * factor ** (attempt - 1),
        max_retries=max_retries,
        max_delay=max_delay,
        jitter=jitter,
    )


def combine(*strategies: BackoffStrategy) -> BackoffStrategy:
    """The first non-``None`` answer of the strategies, in order."""

    def strategy(context: BackoffContext) -> int | None:
        for candidate in strategies:
            delay = candidate(context)
            if delay is not None:
                return delay
        return None

    return strategy


def when(condition: Callable[[BackoffContext], bool], then: BackoffStrategy) -> BackoffStrategy:
    """Retry with ``then`` only when ``condition`` holds (e.g. for timeouts only)."""
    return lambda context: then(context) if condition(context) else None


def aggressive() -> BackoffStrategy:
    """100, 200, 400 ms."""
    return exponential(delay=100, factor=2, max_retries=3)


def standard() -> BackoffStrategy:
    """About 1, 2, 4, 8, 16 s."""
    return exponential(delay=1000, factor=2, max_retries=5, jitter=0.1)


def relaxed() -> BackoffStrategy:
    """About 5, 15, 45, 135 s."""
    return exponential(delay=5000, factor=3, max_retries=4, jitter=0.1)
