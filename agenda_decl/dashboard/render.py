"""How values print on the dashboard's pages: the template filters. Every page is rendered
with autoescape on, so job data, names and failures print as text, never as markup."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2

from agenda_decl.operations.view import short_time

__all__ = ["ago", "duration", "install", "json_line", "pretty_json", "utc"]


def install(environment: jinja2.Environment) -> None:
    environment.filters.update(utc=utc, ago=ago, pretty_json=pretty_json, json_line=json_line,
                               duration=duration)


def utc(value: datetime | None) -> str:
    """``2026-12-06 10:00:00`` (UTC), or ``-``: as the ``jobs`` table prints it."""
    return short_time(value)


def ago(value: datetime | None, now: datetime) -> str:
    """How far ``value`` is from ``now``: ``in 5 min``, ``3 h ago``, ``now``."""
    if value is None:
        return ""
    seconds = (value - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    text = _span(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def duration(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    return f"{milliseconds} ms" if milliseconds < 1_000 else f"{milliseconds / 1_000:.1f} s"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


def json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
