"""``python -m bench``: every workload of every system, then bench/RESULTS.md, results.json
and the plots. Runs are interleaved (round 1 of everything, then round 2, ...) so that a
drift in the machine's load touches every system alike."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import attrs

from agenda_decl import Agenda

from . import environment, floor, goals, node, ours, plots, report, rival, scale, workers
from .results import FLOOR, NODE, OURS, PROCRASTINATE, Results
from .settings import BACKENDS, CACHE, PARTS, Settings, Sizes, override
from .stores import checkpoint


@attrs.frozen
class Task:
    """One measurement: its values go to ``results.runs[system][backend]``."""

    part: str
    system: str
    backend: str
    title: str
    run: Callable[[], Awaitable[dict[str, float]]]
    repeats: bool = True  # False: once, whatever --repeat (memory: slow and not noisy)


def tasks(settings: Settings, node_folder: Path | None) -> list[Task]:
    s, found = settings.sizes, []
    for b in settings.backends:
        found += [
            Task("headline", OURS, b, "drain", partial(ours.drain, b, s)),
            Task("headline", OURS, b, "enqueue calls", partial(ours.enqueue, b, s)),
            Task("headline", OURS, b, "enqueue -> start",
                 partial(ours.latency, b, s, cross_process=b != "sqlite")),
            Task("bulk", OURS, b, "bulk enqueue", partial(ours.bulk, b, s)),
            *(Task("scale", OURS, b, f"scale {p.label}", partial(scale.measure, b, s, p))
              for p in scale.points(s)),
            *(Task("workers", OURS, b, f"{n} worker processes", partial(workers.many, b, s, n))
              for n in s.workers),
            Task("memory", OURS, b, "worker RSS", partial(workers.memory, b, s), repeats=False),
        ]
    if "sqlite" in settings.backends:
        found.append(Task("xproc", OURS, "sqlite", "enqueue -> start, two processes",
                          partial(ours.latency, "sqlite", s, cross_process=True,
                                  prefix="xproc")))
    for b in settings.backends:
        if b != "sqlite" and node_folder is not None:
            found += [Task("node", NODE, b, "drain", partial(node.drain, node_folder, b, s)),
                      Task("node", NODE, b, "enqueue calls",
                           partial(node.enqueue, node_folder, b, s)),
                      Task("node", NODE, b, "enqueue -> start",
                           partial(node.latency, node_folder, b, s))]
    if "postgres" in settings.backends:
        found += [Task("procrastinate", PROCRASTINATE, "postgres", "drain",
                       partial(rival.drain, s)),
                  Task("procrastinate", PROCRASTINATE, "postgres", "enqueue calls",
                       partial(rival.enqueue, s)),
                  Task("procrastinate", PROCRASTINATE, "postgres", "bulk enqueue",
                       partial(rival.bulk, s)),
                  Task("procrastinate", PROCRASTINATE, "postgres", "enqueue -> start",
                       partial(rival.latency, s))]
    found += [Task("floor", FLOOR, b, "enqueue -> claimed", partial(floor.latency, b, s))
              for b in settings.backends if b != "sqlite"]
    return sorted((task for task in found if task.part in settings.parts),
                  key=lambda task: PARTS.index(task.part))


async def measure(settings: Settings, results: Results, node_folder: Path | None) -> int:
    """Every task, ``repeat`` rounds; the number that failed (each is noted and skipped)."""
    failures, checkpoints = 0, "postgres" in settings.backends
    todo = tasks(settings, node_folder)
    for round_ in range(1, settings.repeat + 1):
        for task in todo:
            if round_ > 1 and not task.repeats:
                continue
            label = f"[{round_}/{settings.repeat}] {task.system} {task.backend}: {task.title}"
            try:
                if checkpoints and not await checkpoint():  # a quiet server for every part
                    checkpoints = False
                    results.note("The PostgreSQL role may not CHECKPOINT: each part may pay "
                                 "for the writes of the one before.")
                began = time.monotonic()
                values = await task.run()
            except Exception as error:
                failures += 1
                traceback.print_exc()
                results.note(f"FAILED: {task.system} {task.backend} {task.title}: {error!r}")
                continue
            results.add(task.system, task.backend, values)
            print(f"{label} ({time.monotonic() - began:.1f} s) "
                  + ", ".join(f"{k} {v:,.2f}" for k, v in values.items()), flush=True)
    return failures


def describe(settings: Settings, results: Results, node_folder: Path | None) -> None:
    results.info.update(environment.machine())
    results.info.update(environment.python_versions())
    results.info.update(asyncio.run(environment.server_versions()))
    if node_folder is not None:
        results.info.update(node.versions(node_folder))
    if environment.busy():
        results.note(f"The machine was busy when the run began (load average "
                     f"{environment.load()} on {os.cpu_count()} cores): the figures are noisy.")
    if not hasattr(Agenda, "now_many"):
        results.note("This agenda-decl has no `now_many`: bulk enqueue and the backlogs use "
                     f"batches of {settings.sizes.batch:,} concurrent `now()` calls instead.")
    if "sqlite" in settings.backends:
        results.note("SQLite's headline enqueue -> start has its producer in the worker's "
                     "process; the two-process figure is its own table.")


def parse(argv: list[str] | None) -> tuple[Settings, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one round: a smoke run (report under the cache)")
    parser.add_argument("--repeat", type=int, help="rounds; figures are medians (default 3, "
                        "1 with --quick)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument("--skip", nargs="+", choices=PARTS, default=[])
    parser.add_argument("--set", nargs="+", default=[], metavar="SIZE=N[,N...]",
                        help="change sizes, e.g. --set drain_jobs=10000 backlogs=10000,100000 "
                        "(names: bench/settings.py, Sizes)")
    parser.add_argument("--out", type=Path, help="folder for RESULTS.md, results.json and "
                        f"the plots (default bench/, or {CACHE}/quick with --quick)")
    args = parser.parse_args(argv)
    parts = tuple(p for p in (args.only or PARTS) if p not in args.skip)
    repeat = args.repeat or (1 if args.quick else 3)
    try:
        sizes = override(Sizes.quick() if args.quick else Sizes.full(), args.set)
    except ValueError as error:
        parser.error(str(error))
    settings = Settings(sizes=sizes, quick=args.quick,
                        repeat=repeat, backends=tuple(args.backends), parts=parts)
    out = args.out or (Path(CACHE) / "quick" if args.quick else Path(__file__).parent)
    return settings, out


def main(argv: list[str] | None = None) -> int:
    settings, out = parse(argv)
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    results = Results()
    node_folder = node.install() if "node" in settings.parts else None
    describe(settings, results, node_folder)
    failures = asyncio.run(measure(settings, results, node_folder))
    results.info["load average at end"] = environment.load()
    results.info["bench run took"] = f"{(time.monotonic() - began) / 60:.1f} min"
    results.save(out / "results.json")
    drawn = plots.draw(results, settings, out)
    (out / "RESULTS.md").write_text(report.render(results, settings, drawn), encoding="utf-8")
    for backend in settings.backends:
        print("\n".join(report.headline(results, backend)))
    for goal in goals.every(results, settings):
        print(f"item {goal.item}: {goal.text}: {goal.observed}: {goal.status}")
    print(f"\nwrote {out / 'RESULTS.md'} in {(time.monotonic() - began) / 60:.1f} min"
          + (f"; {failures} measurement(s) FAILED (see Notes)" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
