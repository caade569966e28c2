"""The figures of one bench run: every run's value of every metric, by system and backend;
the report shows their medians. Saved as JSON beside the report."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path

import attrs

#: The systems measured side by side.
OURS, NODE, PROCRASTINATE = "agenda-decl", "Agenda 6.2.6 (Node)", "procrastinate"
#: Not a job system: the drivers alone on the latency workload (bench/floor.py).
FLOOR = "drivers alone (floor)"


@attrs.define
class Results:
    """``runs[system][backend][metric]``: one value per run. ``notes``: how a figure was made
    when that differs from the workload's description (say, the bulk enqueue's fallback)."""

    runs: dict[str, dict[str, dict[str, list[float]]]] = attrs.field(factory=dict)
    notes: list[str] = attrs.field(factory=list)
    info: dict[str, str] = attrs.field(factory=dict)

    def add(self, system: str, backend: str, values: Mapping[str, float]) -> None:
        metrics = self.runs.setdefault(system, {}).setdefault(backend, {})
        for metric, value in values.items():
            metrics.setdefault(metric, []).append(float(value))

    def get(self, system: str, backend: str, metric: str) -> float | None:
        """The median over the runs, or None when it was not measured."""
        values = self.runs.get(system, {}).get(backend, {}).get(metric)
        return statistics.median(values) if values else None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(attrs.asdict(self), indent=1) + "\n", encoding="utf-8")
