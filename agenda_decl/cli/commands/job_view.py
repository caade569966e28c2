"""How times and failures are cut to fit the table of ``agenda-decl jobs`` (what a job shows
is :mod:`agenda_decl.operations.view`'s)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["FAILURE_CHARS", "short_time"]

#: How much of a failure's reason the jobs table shows.
FAILURE_CHARS = 60


def short_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
