"""The report's PNG plots (matplotlib, the bench extra): enqueue -> start percentiles per
backend and system, and claim cost and drain rate against the backlog."""

from __future__ import annotations

from pathlib import Path

from .results import OURS, Results
from .scale import key, points
from .settings import LABELS, Settings

CUTS = ("p50", "p95", "p99")


def draw(results: Results, settings: Settings, folder: Path) -> list[str]:
    """The plots that this run has figures for: their file names in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    drawn = [_latency(results, settings, folder), _scale(results, settings, folder)]
    return [path.name for path in drawn if path is not None]


def _latency(results: Results, settings: Settings, folder: Path) -> Path | None:
    import matplotlib.pyplot as plt

    panels = [(backend, "e2s", LABELS[backend]) for backend in settings.backends]
    if "sqlite" in settings.backends:
        panels.append(("sqlite", "xproc", "SQLite, two processes"))
    panels = [(backend, prefix, title) for backend, prefix, title in panels
              if any(results.get(system, backend, f"{prefix}_p50_ms") is not None
                     for system in results.runs)]
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for axis, (backend, prefix, title) in zip(axes[0], panels, strict=True):
        systems = [system for system in results.runs
                   if results.get(system, backend, f"{prefix}_p50_ms") is not None]
        width = 0.8 / max(len(systems), 1)
        for index, system in enumerate(systems):
            values = [results.get(system, backend, f"{prefix}_{cut}_ms") or 0 for cut in CUTS]
            axis.bar([i + index * width for i in range(len(CUTS))], values, width,
                     label=system)
        axis.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(CUTS))], CUTS)
        axis.set_title(title)
        axis.set_ylabel("enqueue -> handler start, ms")
        axis.legend(fontsize="small")
    figure.tight_layout()
    path = folder / "latency.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _scale(results: Results, settings: Settings, folder: Path) -> Path | None:
    import matplotlib.pyplot as plt

    backlogs = [point for point in points(settings.sizes) if not point.completed
                and not point.other]
    curves = {}
    for backend in settings.backends:
        found = [(point.due, results.get(OURS, backend, key(point, "claim_ms")),
                  results.get(OURS, backend, key(point, "drain_jobs_s"))) for point in backlogs]
        found = [row for row in found if row[1] is not None and row[2] is not None]
        if found:
            curves[backend] = found
    if not curves:
        return None
    figure, (claims, rates) = plt.subplots(1, 2, figsize=(10, 4))
    for backend, found in curves.items():
        sizes = [row[0] for row in found]
        claims.plot(sizes, [row[1] for row in found], marker="o", label=LABELS[backend])
        rates.plot(sizes, [row[2] for row in found], marker="o", label=LABELS[backend])
    for axis, label in ((claims, f"claim of {settings.sizes.concurrency} jobs, p50 ms"),
                        (rates, "drain, jobs/s")):
        axis.set_xscale("log")
        axis.set_xticks([point.due for point in backlogs],
                        [f"{point.due:,}" for point in backlogs])
        axis.minorticks_off()
        axis.set_xlabel("due jobs in the store")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize="small")
    figure.suptitle(f"{OURS}: claims against the backlog")
    figure.tight_layout()
    path = folder / "scale.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
