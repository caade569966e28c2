"""The goals of issue 14 (items 1-4 and 6), each judged met / not met on a run's medians."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .results import OURS, Results
from .scale import Point, key, points
from .settings import LABELS, Settings, Sizes

#: "Another name's jobs cost nothing": within this factor of the claim without them (the
#: run-to-run noise of a 2-core machine; 1.5x is the backlog goal's own bound).
NOTHING = 1.2
#: "Memory stays flat": RSS after all the jobs within this factor of RSS after the first ones.
FLAT = 1.2


@attrs.frozen
class Goal:
    item: str
    text: str
    observed: str
    met: bool | None  # None: not measured in this run

    @property
    def status(self) -> str:
        return {True: "met", False: "**not met**", None: "not measured"}[self.met]


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


def _at_least(limit: float) -> Callable[[float], bool]:
    return lambda value: value >= limit


def _one(results: Results, item: str, text: str, backend: str, metric: str,
         test: Callable[[float], bool], unit: str) -> Goal:
    value = results.get(OURS, backend, metric)
    if value is None:
        return Goal(item, text, "-", None)
    return Goal(item, text, f"{value:,.2f} {unit}" if unit == "ms" else f"{value:,.0f} {unit}",
                test(value))


def headline(results: Results) -> list[Goal]:
    rows = []
    for backend, label, p50, p99, drain in (("postgres", "PostgreSQL", 2.5, 6.0, 4_000),
                                            ("redis", "Redis", 1.5, 4.0, 6_000)):
        rows += [
            _one(results, "1", f"{label} enqueue call p50 <= 1.0 ms", backend,
                 "enqueue_call_p50_ms", _at_most(1.0), "ms"),
            _one(results, "1", f"{label} enqueue -> start p50 <= {p50} ms", backend,
                 "e2s_p50_ms", _at_most(p50), "ms"),
            _one(results, "1", f"{label} enqueue -> start p99 <= {p99} ms", backend,
                 "e2s_p99_ms", _at_most(p99), "ms"),
            _one(results, "1", f"{label} drain >= {drain:,} jobs/s", backend, "drain_jobs_s",
                 _at_least(drain), "jobs/s"),
        ]
    rows.append(_one(results, "1", "SQLite drain >= 10,000 jobs/s", "sqlite", "drain_jobs_s",
                     _at_least(10_000), "jobs/s"))
    for backend, label in (("postgres", "PostgreSQL"), ("redis", "Redis")):
        rows.append(_one(results, "2", f"{label} bulk enqueue >= 20,000 jobs/s", backend,
                         "bulk_jobs_s", _at_least(20_000), "jobs/s"))
    rows.append(_one(results, "6", "SQLite enqueue -> start between two processes p50 <= 50 ms",
                     "sqlite", "xproc_p50_ms", _at_most(50), "ms"))
    return rows


def _ratio(results: Results, backend: str, metric: str, point: Point, base: Point,
           limit: float, *, higher_is_better: bool = False) -> tuple[str, bool | None]:
    value = results.get(OURS, backend, key(point, metric))
    reference = results.get(OURS, backend, key(base, metric))
    if value is None or reference is None or reference == 0 or value == 0:
        return "-", None
    ratio = reference / value if higher_is_better else value / reference
    return f"{ratio:.2f}x", ratio <= limit


def scale(results: Results, sizes: Sizes, backends: tuple[str, ...]) -> list[Goal]:
    *backlogs, completed, other = points(sizes)
    base, largest = backlogs[0], backlogs[-1]
    rows = []
    for backend in backends:
        checks = [
            (f"claim at {largest.label} within 1.5x of {base.label}", "claim_ms", largest, 1.5,
             False),
            (f"drain rate at {largest.label} within 1.5x of {base.label}", "drain_jobs_s",
             largest, 1.5, True),
            (f"claim with {completed.completed:,} completed within 1.5x", "claim_ms", completed,
             1.5, False),
            (f"claim with {other.other:,} of another name within {NOTHING}x (costs nothing)",
             "claim_ms", other, NOTHING, False),
        ]
        for text, metric, point, limit, higher in checks:
            observed, met = _ratio(results, backend, metric, point, base, limit,
                                   higher_is_better=higher)
            rows.append(Goal("3", f"{LABELS[backend]}: {text}", observed, met))
    return rows


def workers(results: Results, sizes: Sizes, backends: tuple[str, ...]) -> list[Goal]:
    rows = []
    for backend in backends:
        found = [results.get(OURS, backend, f"duplicates@{n}") for n in sizes.workers]
        lost = [results.get(OURS, backend, f"missing@{n}") for n in sizes.workers]
        measured = [n for n in found + lost if n is not None]
        rows.append(Goal("4", f"{LABELS[backend]}: no duplicates, no job left, with "
                         f"{'/'.join(map(str, sizes.workers))} processes",
                         f"{sum(measured):.0f} duplicate or missing runs" if measured else "-",
                         (sum(measured) == 0) if measured else None))
        first = results.get(OURS, backend, "rss_mb@first")
        last = results.get(OURS, backend, "rss_mb@last")
        a, b = sizes.memory_jobs
        rows.append(Goal(
            "4", f"{LABELS[backend]}: worker RSS after {b:,} jobs within {FLAT}x of after {a:,}",
            f"{first:.0f} -> {last:.0f} MiB" if first and last else "-",
            (last <= FLAT * first) if first and last else None))
    return rows


def every(results: Results, settings: Settings) -> list[Goal]:
    """Every goal, in the issue's order of items."""
    backends = settings.backends
    return sorted(headline(results) + scale(results, settings.sizes, backends)
                  + workers(results, settings.sizes, backends), key=lambda goal: goal.item)
