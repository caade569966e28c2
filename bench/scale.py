"""Claims against a large backlog (issue 14, item 3): a fresh store is filled through the bulk
enqueue. Measured:

- ``claim_ms``: the store's own cost, the p50 of ``scale_claims`` claims of C jobs each made one
  after the other through the repository (``get_next_jobs_to_run``) with nothing else running,
  once the store has settled. PostgreSQL plans a claim from the table's statistics, which a
  bulk load leaves stale until autovacuum's ANALYZE (up to a minute later): its claims are
  timed right after the load too (``cold_claim_ms``), then the table is vacuumed and analyzed
  as autovacuum would do, then ``claim_ms``;
- then one worker (concurrency C, its process's channel on) runs the next ``scale_drained``
  jobs: ``drain_jobs_s``, and ``worker_claim_p50_ms``, the claims as the busy worker sees them
  (its ``claim`` events that got jobs: the event loop's waits included).

The points: ``backlogs`` due jobs each; the smallest backlog beside ``completed`` finished jobs
of the same name; the smallest backlog beside ``other`` due jobs of a name the worker does
not run."""

from __future__ import annotations

import time
from datetime import timedelta

import attrs

from agenda_decl import Agenda, ClaimReport

from .common import Countdown, percentiles
from .settings import Sizes
from .stores import fill, fresh_store, settle


@attrs.frozen
class Point:
    """One store to measure: ``due`` jobs to run, beside ``completed`` finished ones of the
    same name and ``other`` due jobs of another name."""

    due: int
    completed: int = 0
    other: int = 0

    @property
    def label(self) -> str:
        extra = (f" + {self.completed:,} completed" if self.completed else "") + (
            f" + {self.other:,} of another name" if self.other else "")
        return f"{self.due:,} due{extra}"


def points(sizes: Sizes) -> list[Point]:
    base = sizes.backlogs[0]
    return [*(Point(due) for due in sizes.backlogs), Point(base, completed=sizes.completed),
            Point(base, other=sizes.other)]


def key(point: Point, metric: str) -> str:
    """The metric's name in Results: ``claim_p50_ms@1,000,000 due`` and the like."""
    return f"{metric}@{point.label}"


async def measure(kind: str, sizes: Sizes, point: Point) -> dict[str, float]:
    async with fresh_store(kind, local_channel=True) as store:
        if point.completed:
            await fill(store, "noop", point.completed, sizes.batch, completed=True)
        await fill(store, "noop", point.due, sizes.batch)
        if point.other:
            await fill(store, "other", point.other, sizes.batch)
        worker = store.agenda(process_every="1 second", max_concurrency=sizes.concurrency)
        await worker.ready()
        figures = {}
        if kind == "postgres":
            cold = await store_claims(worker, sizes.scale_claims, sizes.concurrency)
            figures[key(point, "cold_claim_ms")] = percentiles(cold)["p50"]
            await settle(store)
        direct = await store_claims(worker, sizes.scale_claims, sizes.concurrency)
        claimed_ahead = (len(figures) + 1) * sizes.scale_claims * sizes.concurrency
        claims: list[float] = []
        target = min(sizes.scale_drained, point.due - claimed_ahead)
        if target <= 0:
            raise ValueError(f"{point.label}: the claims took every due job; "
                             "make scale_claims smaller or the backlogs larger")
        countdown = Countdown(target)

        def claimed(report: ClaimReport) -> None:
            if report.claimed and report.error is None:
                claims.append(report.seconds * 1000)

        worker.on("claim", claimed)
        worker.define("noop", countdown.handler, concurrency=sizes.concurrency)
        started = time.perf_counter()
        await worker.start()
        await countdown.wait()
        rate = target / (time.perf_counter() - started)
        await worker.stop()
    return {**figures, key(point, "claim_ms"): percentiles(direct)["p50"],
            key(point, "worker_claim_p50_ms"): percentiles(claims)["p50"],
            key(point, "drain_jobs_s"): rate}


async def store_claims(agenda: Agenda, count: int, limit: int) -> list[float]:
    """``count`` claims of up to ``limit`` due jobs, one after the other: ms each."""
    repository = agenda.repository
    times = []
    for _ in range(count):
        now = agenda.clock.now()
        started = time.perf_counter()
        claimed = await repository.get_next_jobs_to_run(
            "noop", now, now - timedelta(minutes=10), limit, last_modified_by="bench")
        times.append((time.perf_counter() - started) * 1000)
        if len(claimed) != limit:
            raise RuntimeError(f"a claim got {len(claimed)} jobs of {limit}")
    return times
