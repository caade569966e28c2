"""bench/RESULTS.md: the machine, the versions, every figure side by side with the
agenda-decl / Agenda ratios, and the goals of issue 14 met or not."""

from __future__ import annotations

from collections.abc import Iterable

from . import goals
from .results import FLOOR, NODE, OURS, PROCRASTINATE, Results
from .scale import key, points
from .settings import LABELS, Settings

#: Headline rows: metric, label.
HEADLINE = (
    ("drain_jobs_s", "drain, jobs/s"),
    ("enqueue_concurrent_jobs_s", "enqueue, C concurrent producers, jobs/s"),
    ("enqueue_seq_jobs_s", "enqueue, sequential awaits, jobs/s"),
    ("enqueue_call_p50_ms", "enqueue call p50, ms"),
    ("e2s_p50_ms", "enqueue -> handler start p50, ms"),
    ("e2s_p95_ms", "enqueue -> handler start p95, ms"),
    ("e2s_p99_ms", "enqueue -> handler start p99, ms"),
    ("bulk_jobs_s", "bulk enqueue, jobs/s"),
)


def number(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if metric.endswith("_ms") else f"{value:,.0f}"


def table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}"


def headline(results: Results, backend: str) -> list[str]:
    """The backend's headline figures of every system measured on it, with the ratio of
    agenda-decl to Agenda when both were."""
    systems = [system for system in (OURS, NODE, PROCRASTINATE, FLOOR)
               if results.runs.get(system, {}).get(backend)]
    both = OURS in systems and NODE in systems
    rows = []
    for metric, label in HEADLINE:
        values = [results.get(system, backend, metric) for system in systems]
        if all(value is None for value in values):
            continue
        row = [label, *(number(value, metric) for value in values)]
        if both:
            row.insert(3, ratio(results.get(OURS, backend, metric),
                                results.get(NODE, backend, metric)))
        rows.append(row)
    head = ["", *systems]
    if both:
        head.insert(3, "agenda-decl / Agenda")
    return [f"### {LABELS[backend]}", "", *table(head, rows), ""]


def scale_table(results: Results, settings: Settings, backend: str) -> list[str]:
    every = points(settings.sizes)
    base = every[0]
    rows = []
    for point in every:
        claim = results.get(OURS, backend, key(point, "claim_ms"))
        base_claim = results.get(OURS, backend, key(base, "claim_ms"))
        row = [point.label, number(claim, "_ms"), ratio(claim, base_claim),
               number(results.get(OURS, backend, key(point, "worker_claim_p50_ms")), "_ms"),
               number(results.get(OURS, backend, key(point, "drain_jobs_s")), "")]
        if backend == "postgres":
            row.insert(3, number(results.get(OURS, backend, key(point, "cold_claim_ms")), "_ms"))
        rows.append(row)
    head = ["store", f"claim of {settings.sizes.concurrency} jobs, p50 ms", f"/ {base.label}",
            "worker's claim p50, ms", "drain, jobs/s"]
    if backend == "postgres":
        head.insert(3, "the claim right after the bulk load (stale statistics), p50 ms")
    return [f"### {LABELS[backend]}", "", *table(head, rows), ""]


def workers_table(results: Results, settings: Settings) -> list[str]:
    rows = []
    for backend in settings.backends:
        for n in settings.sizes.workers:
            rate = results.get(OURS, backend, f"workers_jobs_s@{n}")
            if rate is None:
                continue
            rows.append([LABELS[backend], str(n), number(rate, ""),
                         number(results.get(OURS, backend, f"duplicates@{n}"), ""),
                         number(results.get(OURS, backend, f"missing@{n}"), "")])
    return table(["store", "worker processes", "jobs/s", "duplicate runs", "jobs not run"], rows)


def memory_table(results: Results, settings: Settings) -> list[str]:
    a, b = settings.sizes.memory_jobs
    rows = [[LABELS[backend], number(results.get(OURS, backend, "rss_mb@first"), ""),
             number(results.get(OURS, backend, "rss_mb@last"), "")]
            for backend in settings.backends]
    return table(["store", f"RSS after {a:,} jobs, MiB", f"RSS after {b:,} jobs, MiB"], rows)


def method(settings: Settings) -> list[str]:
    s = settings.sizes
    return [
        f"Each figure is the median of {settings.repeat} run(s), each run on a fresh table, "
        "key prefix or file, removed afterwards (procrastinate: a fresh database); the "
        "PostgreSQL server gets a CHECKPOINT before each measurement, so that none pays for "
        f"the writes of the one before. Headline: N = {s.drain_jobs:,} no-op jobs enqueued "
        f"by C = {s.concurrency} concurrent producers, then drained by one worker (max and "
        "job concurrency C, process_every 1 s, channel on), from start() to the last "
        "handler; the enqueue call "
        f"p50 over {s.calls:,} sequential awaits; enqueue -> start: an idle worker, a "
        f"producer in a second process, {s.samples} enqueues {s.gap_ms} ms apart "
        "(both read CLOCK_MONOTONIC); the drivers alone (floor) run that workload with no job "
        "system: one round trip stores and announces a one-row job, one more claims it "
        "(bench/floor.py), what any system pays on this machine before its own code; bulk: "
        f"{s.bulk_jobs:,} jobs in batches of {s.batch:,}. Scale: the backlog is set up with "
        f"the bulk enqueue; {s.scale_claims} claims of C jobs timed one after the other "
        "through the repository (PostgreSQL: after the VACUUM ANALYZE autovacuum would run; "
        "also timed before it), then one worker drains "
        f"{s.scale_drained:,} more. Worker "
        f"processes: {s.workers_jobs:,} due jobs, the processes started together. Memory: "
        f"one worker process drains {s.memory_jobs[1]:,} jobs. The code is bench/ "
        "(bench/README.md).",
    ]


PLOTS = {"latency.png": "enqueue -> start percentiles",
         "scale.png": "claim cost and drain rate vs backlog"}


def render(results: Results, settings: Settings, plots: list[str]) -> str:
    lines = ["# Benchmark results", "",
             "Written by `python -m bench` (bench/README.md); numbers only, no test asserts "
             "them. Do not edit by hand: run it again.", ""]
    if settings.quick:
        lines += ["**Quick smoke run (`--quick`): the sizes are far too small to judge the "
                  "goals; run without `--quick` for the figures to compare.**", ""]
    lines += ["## Machine and versions", "",
              *table(["", ""], ([k, v] for k, v in results.info.items())), "",
              "## Method", "", *method(settings), ""]
    lines += ["## Side by side", "", "agenda-decl / Agenda: above 1 is better for jobs/s, "
              "below 1 is better for ms.", ""]
    for backend in settings.backends:
        lines += headline(results, backend)
    xproc = [[cut, number(results.get(OURS, "sqlite", f"xproc_{cut}_ms"), "_ms")]
             for cut in ("p50", "p95", "p99")]
    lines += ["### SQLite, enqueue -> start between two processes", "",
              *table(["", "ms"], xproc), ""]
    lines += ["## Claims against the backlog", ""]
    for backend in settings.backends:
        lines += scale_table(results, settings, backend)
    lines += ["## Worker processes on one store", "", *workers_table(results, settings), "",
              "## Worker memory", "", *memory_table(results, settings), ""]
    lines += ["## Goals of issue 14", "",
              *table(["item", "goal", "observed", ""],
                     ([g.item, g.text, g.observed, g.status]
                      for g in goals.every(results, settings))), ""]
    if results.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in results.notes), ""]
    if plots:
        lines += ["## Plots", "", *(f"![{PLOTS[name]}]({name})\n" for name in plots)]
    return "\n".join(lines)
