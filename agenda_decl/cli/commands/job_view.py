"""How failures are cut to fit the table of ``agenda-decl jobs`` (what a job shows is
:mod:`agenda_decl.operations.view`'s, ``short_time`` included)."""

from __future__ import annotations

from agenda_decl.operations.view import short_time

__all__ = ["FAILURE_CHARS", "short_time"]

#: How much of a failure's reason the jobs table shows.
FAILURE_CHARS = 60
