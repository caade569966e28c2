from __future__ import annotations

import pytest

from agenda_decl import backoff
from agenda_decl.backoff import BackoffContext


def delays(
    strategy: backoff.BackoffStrategy, attempts: int, message: str = "x"
) -> list[int | None]:
    error = RuntimeError(message)
    return [
        strategy(BackoffContext(attempt=a, error=error, job_name="j", job_data=None))
        for a in range(1, attempts + 1)
    ]


def test_constant() -> None:
    assert delays(backoff.constant(delay=1000, max_retries=3), 4) == [1000, 1000, 1000, None]
    assert delays(backoff.constant(delay=5000, max_delay=2000), 1) == [2000]
    assert delays(backoff.constant(delay="2 seconds"), 1) == [2000]


def test_linear() -> None:
    assert delays(backoff.linear(delay=1000, increment=1000, max_retries=4), 5) == [
        1000, 2000, 3000, 4000, None,
    ]
    assert delays(backoff.linear(delay=500), 3) == [500, 1000, 1500]
    assert delays(backoff.linear(delay=1000, increment=2000, max_delay=3000), 3) == [
        1000, 3000, 3000,
    ]


def test_exponential() -> None:
    assert delays(backoff.exponential(delay=100, factor=2, max_retries=5), 6) == [
        100, 200, 400, 800, 1600, None,
    ]
    assert delays(backoff.exponential(delay=100, max_delay=500, max_retries=5), 5) == [
        100, 200, 400, 500, 500,
    ]


def test_combine_and_when() -> None:
    first_two = backoff.when(lambda c: c.attempt <= 2, backoff.constant(delay=100, max_retries=9))
    custom = backoff.exponential(delay=1000, max_retries=4)
    assert delays(backoff.combine(first_two, custom), 5) == [100, 100, 4000, 8000, None]
    on_timeout = backoff.when(lambda c: "timeout" in str(c.error), backoff.constant(delay=1000))
    assert delays(on_timeout, 1, "connection timeout") == [1000]
    assert delays(on_timeout, 1, "bad request") == [None]


def test_presets() -> None:
    assert delays(backoff.aggressive(), 4) == [100, 200, 400, None]
    (first,) = delays(backoff.standard(), 1)
    assert first is not None
    assert 900 <= first <= 1100
    assert delays(backoff.relaxed(), 5)[-1] is None


def test_jitter_stays_near_the_delay() -> None:
    values = delays(backoff.constant(delay=1000, max_retries=200, jitter=0.5), 200)
    assert all(v is not None and 500 <= v <= 1500 for v in values)
    assert len(set(values)) > 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="-1"):
        backoff.constant(max_retries=-1)
    with pytest.raises(ValueError, match="'soon'"):
        backoff.constant(delay="soon")
