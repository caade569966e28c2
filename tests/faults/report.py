"""The results table of docs/reliability.md, from the JSON lines a run with
``AGENDA_FAULTS_REPORT=FILE`` wrote:

    python -m tests.faults.report FILE
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

COLUMNS = [
    ("scenario", "scenario"), ("backend", "backend"), ("jobs", "jobs"),
    ("lost", "lost"), ("started_more_than_once", "started >1"),
    ("unexplained_restarts", "of which without a cause"),
    ("handler_overlaps", "two handlers at once"), ("lease_overlaps", "two lock holders"),
    ("completed_reruns", "re-run after completion"), ("lost_locks", "lost locks"),
    ("unstored", "ends not stored"), ("stored_failed_attempts", "failed attempts left"),
    ("kill_restart", "kill→restart p50 / max (n)"),
    ("start_latency", "enqueue→start p50 / max"), ("producer_errors", "producer exceptions"),
    ("seconds", "s"),
]


def cell(row: dict[str, Any], key: str) -> str:
    if key == "kill_restart":
        if not row["kill_restart_n"]:
            return "-"
        return (f"{row['kill_restart_p50']:.2f} / {row['kill_restart_max']:.2f} s "
                f"({row['kill_restart_n']})")
    if key == "start_latency":
        if row["start_latency_p50"] is None:
            return "-"
        return f"{row['start_latency_p50'] * 1000:.0f} / {row['start_latency_max'] * 1000:.0f} ms"
    return str(row[key])


def table(rows: Iterable[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row, key) for key, _ in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    print(table(rows))
    errors: dict[str, int] = {}
    for row in rows:
        for kind, number in row["errors"].items():
            errors[kind] = errors.get(kind, 0) + number
    print("\nerror events the workers reported, all scenarios:\n")
    for kind, number in sorted(errors.items(), key=lambda item: -item[1]):
        print(f"- {number} x {kind}")


if __name__ == "__main__":
    main(sys.argv[1])
