"""What one bench run measures: the sizes of every workload (full or ``--quick``), the stores'
addresses and which parts run. The command line (``bench/cli.py``) builds it."""

from __future__ import annotations

import os
from typing import Any

import attrs

POSTGRES_URL = os.environ.get("AGENDA_BENCH_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AGENDA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Where the pinned Node packages are installed (``npm ci``), outside the work tree.
CACHE = os.path.expanduser(os.environ.get("AGENDA_BENCH_CACHE", "~/.cache/agenda-decl-bench"))

BACKENDS = ("postgres", "redis", "sqlite")
LABELS = {"postgres": "PostgreSQL", "redis": "Redis", "sqlite": "SQLite"}
#: The parts of a run, in the order they run within a round (``--only`` picks some); the
#: three systems' headline workloads and the drivers' floor close together, so the same load
#: touches them alike.
PARTS = ("headline", "node", "procrastinate", "floor", "xproc", "bulk", "scale", "workers",
         "memory")


@attrs.frozen
class Sizes:
    """Every size a run uses. ``full()`` is the issue's workload; ``quick()`` a smoke run."""

    drain_jobs: int  # N no-op jobs drained by one worker
    concurrency: int  # C: producers while enqueuing, and the worker's concurrency
    calls: int  # sequential now() awaits for the enqueue call p50
    samples: int  # enqueue -> start probes, `gap_ms` apart
    gap_ms: int
    bulk_jobs: int  # jobs per bulk-enqueue measurement
    batch: int  # jobs per now_many call
    backlogs: tuple[int, ...]  # due jobs for the claim-cost-vs-backlog curve
    completed: int  # completed jobs beside the smallest backlog
    other: int  # due jobs of another name beside the smallest backlog
    scale_claims: int  # claims of C jobs timed one by one per scale measurement
    scale_drained: int  # jobs then drained per scale measurement
    workers: tuple[int, ...]  # worker processes on one store
    workers_jobs: int
    memory_jobs: tuple[int, int]  # RSS read after this many jobs, then after this many

    @classmethod
    def full(cls) -> Sizes:
        return cls(drain_jobs=5_000, concurrency=50, calls=1_000, samples=200, gap_ms=20,
                   bulk_jobs=100_000, batch=1_000,
                   backlogs=(10_000, 100_000, 1_000_000), completed=1_000_000, other=100_000,
                   scale_claims=20, scale_drained=5_000, workers=(1, 2, 4, 8), workers_jobs=20_000,
                   memory_jobs=(100_000, 1_000_000))

    @classmethod
    def quick(cls) -> Sizes:
        return cls(drain_jobs=500, concurrency=50, calls=100, samples=30, gap_ms=20,
                   bulk_jobs=2_000, batch=500,
                   backlogs=(1_000, 3_000, 6_000), completed=5_000, other=2_000,
                   scale_claims=5, scale_drained=200, workers=(1, 2), workers_jobs=600,
                   memory_jobs=(500, 2_000))


def override(sizes: Sizes, assignments: list[str]) -> Sizes:
    """``sizes`` with ``field=value`` assignments applied (``backlogs=10000,100000``): a
    ValueError naming the field for an unknown field or a value that is not whole numbers."""
    changes: dict[str, Any] = {}
    fields = attrs.fields_dict(Sizes)
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        if name not in fields:
            raise ValueError(f"--set {assignment!r}: no size {name!r} (sizes: "
                             f"{', '.join(fields)})")
        try:
            numbers = tuple(int(part.replace("_", "")) for part in value.split(","))
        except ValueError:
            raise ValueError(f"--set {assignment!r}: {name} takes whole numbers") from None
        many = isinstance(getattr(sizes, name), tuple)
        if not many and len(numbers) != 1:
            raise ValueError(f"--set {assignment!r}: {name} takes one number")
        if name == "memory_jobs" and len(numbers) != 2:
            raise ValueError(f"--set {assignment!r}: memory_jobs takes two numbers")
        changes[name] = numbers if many else numbers[0]
    return attrs.evolve(sizes, **changes)


@attrs.frozen
class Settings:
    sizes: Sizes
    quick: bool
    repeat: int  # runs per figure; the report shows their median
    backends: tuple[str, ...]
    parts: tuple[str, ...]
